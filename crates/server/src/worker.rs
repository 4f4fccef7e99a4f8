//! The model thread: it owns the pipeline, takes jobs from a channel, and batches the embedding
//! jobs of many clients together up to `--max-batch-tokens` real tokens (our forward passes
//! need no padding). No model work runs on the async runtime.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use oxformer_pipelines::feature_extraction::FeatureExtractionOptions;
use oxformer_pipelines::sentence_embeddings::{
    EmbeddingInput, SentenceEmbeddingsOptions, normalize,
};
use oxformer_pipelines::text_classification::{
    ClassificationFunction, ClassificationOutput, ClassificationTopK, TextClassificationOptions,
    TextInput,
};
use oxformer_pipelines::{Pipeline, Task};
use oxformer_tokenizer::Side;
use tokio::sync::oneshot;

use crate::error::ApiError;
use crate::metrics::Metrics;

/// A result with the time it waited and the time it ran.
#[derive(Debug)]
pub struct Computed<T> {
    pub value: T,
    pub queue: Duration,
    pub inference: Duration,
}

/// The options that must agree for embedding jobs to share a forward pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbedKey {
    pub prompt_name: Option<String>,
    pub normalize: bool,
    pub dimensions: Option<usize>,
    /// TEI's `truncation_direction` (`None`: the tokenizer's side).
    pub truncation_side: Option<Side>,
}

/// TEI's `--pooling` of a model folder without a sentence-transformers pooling, over its last
/// hidden state (every token: our batches have no padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The first token's state.
    Cls,
    /// The mean of the tokens' states.
    Mean,
    /// The last token's state.
    LastToken,
}

impl Pooling {
    /// `cls`, `mean` or `last-token` (TEI's names; `splade` needs a masked-LM head and is
    /// refused).
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "cls" => Ok(Self::Cls),
            "mean" => Ok(Self::Mean),
            "last-token" | "last_token" => Ok(Self::LastToken),
            "splade" => Err(
                "--pooling splade is not supported (it needs a masked-LM head); \
                 use cls, mean or last-token"
                    .to_string(),
            ),
            other => Err(format!(
                "--pooling `{other}`: expected cls, mean or last-token"
            )),
        }
    }

    /// The name TEI's `/info` gives it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cls => "cls",
            Self::Mean => "mean",
            Self::LastToken => "last_token",
        }
    }

    /// The pooled vector of one input's (tokens, hidden) states.
    fn pool(self, tokens: &[Vec<f32>]) -> Vec<f32> {
        match self {
            Self::Cls => tokens.first().cloned().unwrap_or_default(),
            Self::LastToken => tokens.last().cloned().unwrap_or_default(),
            Self::Mean => {
                let mut sum = vec![0f32; tokens.first().map_or(0, Vec::len)];
                for token in tokens {
                    sum.iter_mut()
                        .zip(token)
                        .for_each(|(total, value)| *total += value);
                }
                let count = tokens.len().max(1) as f32;
                sum.iter_mut().for_each(|total| *total /= count);
                sum
            }
        }
    }
}

/// `--pooling` over the feature-extraction pipeline: one embedding per text, cut to
/// `dimensions` and normalized as the sentence-embeddings pipeline does.
fn pooled_embeddings(
    pipeline: &Pipeline,
    pooling: Pooling,
    inputs: &[&EmbedInput],
    key: &EmbedKey,
    max_length: Option<usize>,
) -> Result<Vec<Vec<f32>>, ApiError> {
    let pipeline = pipeline
        .feature_extraction()
        .ok_or_else(|| ApiError::backend("not a feature-extraction pipeline"))?;
    if key.prompt_name.is_some() {
        return Err(ApiError::validation(
            "prompt_name needs a sentence-transformers folder",
        ));
    }
    let options = FeatureExtractionOptions {
        truncation: true,
        max_length,
        batch_size: 0,
    };
    let inputs = crate::routes::embedding_inputs(inputs.iter().copied());
    Ok(pipeline
        .run_inputs(&inputs, &options, key.truncation_side)?
        .iter()
        .map(|features| {
            let mut embedding = pooling.pool(&features.0[0]);
            if let Some(dimensions) = key.dimensions {
                embedding.truncate(dimensions);
            }
            if key.normalize {
                normalize(&mut embedding);
            }
            embedding
        })
        .collect())
}

/// One input to embed: a text or token ids (TEI's `InputType`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmbedInput {
    Text(String),
    Ids(Vec<u32>),
}

/// Sentence embeddings of some texts or token ids.
pub struct EmbedJob {
    pub inputs: Vec<EmbedInput>,
    pub tokens: usize,
    pub key: EmbedKey,
    pub enqueued: Instant,
    pub reply: oneshot::Sender<EmbedAnswer>,
}

/// The answer to an [`EmbedJob`]: one embedding per text.
pub type EmbedAnswer = Result<Computed<Vec<Vec<f32>>>, ApiError>;

/// Work that runs alone on the model thread.
pub type Work = Box<dyn FnOnce(&mut Models) -> Result<serde_json::Value, ApiError> + Send>;

/// The options that must agree for classification jobs to share a forward pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassifyKey {
    pub raw_scores: bool,
    pub truncation: bool,
    /// TEI's `truncation_direction` (`None`: the tokenizer's side).
    pub truncation_side: Option<Side>,
}

/// Every label's `(score, label)` for some texts or pairs, best first.
pub struct ClassifyJob {
    pub pairs: Vec<TextInput>,
    pub tokens: usize,
    pub key: ClassifyKey,
    pub enqueued: Instant,
    pub reply: oneshot::Sender<ClassifyAnswer>,
}

/// The answer to a [`ClassifyJob`]: one ranked list per input.
pub type ClassifyAnswer = Result<Computed<Vec<Vec<(f64, String)>>>, ApiError>;

/// A job for the model thread.
pub enum Job {
    /// Batched with other embedding jobs of the same [`EmbedKey`].
    Embed(EmbedJob),
    /// Batched with other classification jobs of the same [`ClassifyKey`].
    Classify(ClassifyJob),
    /// Run by itself (`inputs` and `tokens` only count in the metrics).
    Run {
        work: Work,
        inputs: usize,
        tokens: usize,
        enqueued: Instant,
        reply: oneshot::Sender<Result<Computed<serde_json::Value>, ApiError>>,
    },
}

impl Job {
    /// Whether the client went away (its receiver dropped): the job is then dropped unrun.
    fn cancelled(&self) -> bool {
        match self {
            Job::Embed(job) => job.reply.is_closed(),
            Job::Classify(job) => job.reply.is_closed(),
            Job::Run { reply, .. } => reply.is_closed(),
        }
    }

    fn inputs(&self) -> usize {
        match self {
            Job::Embed(job) => job.inputs.len(),
            Job::Classify(job) => job.pairs.len(),
            Job::Run { inputs, .. } => *inputs,
        }
    }
}

/// What the model thread owns: the pipeline and, made on first use, the token-level
/// feature-extraction pipeline of the same folder (`/embed_all`).
pub struct Models {
    pub pipeline: Pipeline,
    pub dir: PathBuf,
    pub threads: usize,
    token_embeddings: Option<Pipeline>,
    /// `--pooling` over a feature-extraction pipeline.
    pub pooling: Option<Pooling>,
    /// The server's tokens per input (`--max-input-length` or the model's, as `/info` says):
    /// what truncation cuts an input to (`None`: each pipeline's own length).
    pub max_input_length: Option<usize>,
    /// The test hook [`crate::TEST_PANIC_INPUT`].
    panic_input: Option<String>,
}

impl Models {
    pub fn new(pipeline: Pipeline, dir: PathBuf, threads: usize) -> Self {
        Self {
            pipeline,
            dir,
            threads,
            token_embeddings: None,
            pooling: None,
            max_input_length: None,
            panic_input: crate::test_hook(crate::TEST_PANIC_INPUT),
        }
    }

    /// The feature-extraction pipeline of the folder (loaded on first use).
    pub fn token_embeddings(&mut self) -> Result<&Pipeline, ApiError> {
        if self.token_embeddings.is_none() {
            let dir = self.dir.to_string_lossy().into_owned();
            let mut pipeline = oxformer_pipelines::pipeline(Task::FeatureExtraction, &dir)?;
            pipeline.set_threads(self.threads)?;
            self.token_embeddings = Some(pipeline);
        }
        Ok(self.token_embeddings.as_ref().expect("made above"))
    }
}

/// Runs `f`, turning a panic into a 500 `Backend` error counted in the metrics.
pub fn guarded<T>(
    metrics: &Metrics,
    f: impl FnOnce() -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(panic) => {
            metrics.panic();
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(ApiError::backend(format!("the model panicked: {message}")))
        }
    }
}

/// The thread's loop: until every sender is gone, take the next job (or a batch of
/// compatible embedding or classification jobs) and answer it.
pub fn run(
    mut models: Models,
    jobs: Receiver<Job>,
    metrics: Arc<Metrics>,
    max_batch_tokens: usize,
) {
    let mut pending: VecDeque<Job> = VecDeque::new();
    loop {
        let job = match pending.pop_front() {
            Some(job) => job,
            None => match jobs.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        if job.cancelled() {
            metrics.queue(-(job.inputs() as i64));
            continue;
        }
        match job {
            Job::Embed(first) => {
                let batch = gather(first, &mut pending, &jobs, max_batch_tokens, &metrics);
                let options = SentenceEmbeddingsOptions {
                    prompt_name: batch[0].key.prompt_name.clone(),
                    prompt: None,
                    normalize_embeddings: batch[0].key.normalize,
                    truncate_dim: batch[0].key.dimensions,
                    max_length: models.max_input_length,
                    batch_size: 0,
                };
                let side = batch[0].key.truncation_side;
                let key = batch[0].key.clone();
                answer_batch(batch, &metrics, |inputs: &[&EmbedInput]| {
                    if let Some(pooling) = models.pooling {
                        return pooled_embeddings(
                            &models.pipeline,
                            pooling,
                            inputs,
                            &key,
                            models.max_input_length,
                        );
                    }
                    let pipeline = models
                        .pipeline
                        .sentence_embeddings()
                        .ok_or_else(|| ApiError::backend("not a sentence-embeddings pipeline"))?;
                    let inputs = crate::routes::embedding_inputs(inputs.iter().copied());
                    if let Some(panic_input) = &models.panic_input {
                        let panics = EmbeddingInput::Text(panic_input);
                        assert!(!inputs.contains(&panics), "test hook: panic input");
                    }
                    Ok(pipeline.run_inputs(&inputs, &options, side)?)
                });
            }
            Job::Classify(first) => {
                let batch = gather(first, &mut pending, &jobs, max_batch_tokens, &metrics);
                let options = TextClassificationOptions {
                    top_k: ClassificationTopK::All,
                    function_to_apply: batch[0]
                        .key
                        .raw_scores
                        .then_some(ClassificationFunction::None),
                    truncation: batch[0].key.truncation,
                    max_length: models.max_input_length,
                    batch_size: 0,
                };
                let side = batch[0].key.truncation_side;
                answer_batch(batch, &metrics, |pairs: &[&TextInput]| {
                    let pipeline = models
                        .pipeline
                        .text_classification()
                        .ok_or_else(|| ApiError::backend("not a text-classification pipeline"))?;
                    let pairs: Vec<TextInput> = pairs.iter().map(|&pair| pair.clone()).collect();
                    Ok(pipeline
                        .run_on(&pairs, &options, side)?
                        .into_iter()
                        .map(|output| match output {
                            ClassificationOutput::Ranked(scores) => scores
                                .into_iter()
                                .map(|score| (score.score, score.label))
                                .collect(),
                            ClassificationOutput::Best(score) => vec![(score.score, score.label)],
                        })
                        .collect())
                });
            }
            Job::Run {
                work,
                inputs,
                tokens,
                enqueued,
                reply,
            } => {
                metrics.queue(-(inputs as i64));
                // Before the work: a generation answers its client from inside it.
                metrics.batch(inputs, tokens);
                let started = Instant::now();
                let queue = started - enqueued;
                let result = guarded(&metrics, || work(&mut models));
                let inference = started.elapsed();
                let _ = reply.send(result.map(|value| Computed {
                    value,
                    queue,
                    inference,
                }));
            }
        }
    }
}

/// A job that shares forward passes with others of the same key.
trait Batchable: Sized {
    type Key: PartialEq;
    type Input;
    type Output;
    fn key(&self) -> &Self::Key;
    fn tokens(&self) -> usize;
    fn inputs(&self) -> &[Self::Input];
    fn enqueued(&self) -> Instant;
    fn closed(&self) -> bool;
    fn answer(self, answer: Result<Computed<Vec<Self::Output>>, ApiError>);
    /// The job, if it is of this kind.
    fn from_job(job: Job) -> Result<Self, Job>;
    fn into_job(self) -> Job;
}

impl Batchable for EmbedJob {
    type Key = EmbedKey;
    type Input = EmbedInput;
    type Output = Vec<f32>;
    fn key(&self) -> &EmbedKey {
        &self.key
    }
    fn tokens(&self) -> usize {
        self.tokens
    }
    fn inputs(&self) -> &[EmbedInput] {
        &self.inputs
    }
    fn enqueued(&self) -> Instant {
        self.enqueued
    }
    fn closed(&self) -> bool {
        self.reply.is_closed()
    }
    fn answer(self, answer: EmbedAnswer) {
        let _ = self.reply.send(answer);
    }
    fn from_job(job: Job) -> Result<Self, Job> {
        match job {
            Job::Embed(job) => Ok(job),
            other => Err(other),
        }
    }
    fn into_job(self) -> Job {
        Job::Embed(self)
    }
}

impl Batchable for ClassifyJob {
    type Key = ClassifyKey;
    type Input = TextInput;
    type Output = Vec<(f64, String)>;
    fn key(&self) -> &ClassifyKey {
        &self.key
    }
    fn tokens(&self) -> usize {
        self.tokens
    }
    fn inputs(&self) -> &[TextInput] {
        &self.pairs
    }
    fn enqueued(&self) -> Instant {
        self.enqueued
    }
    fn closed(&self) -> bool {
        self.reply.is_closed()
    }
    fn answer(self, answer: ClassifyAnswer) {
        let _ = self.reply.send(answer);
    }
    fn from_job(job: Job) -> Result<Self, Job> {
        match job {
            Job::Classify(job) => Ok(job),
            other => Err(other),
        }
    }
    fn into_job(self) -> Job {
        Job::Classify(self)
    }
}

/// `first` and, in arrival order, the waiting jobs of its kind and key that fit in the token
/// budget; the others stay queued, abandoned ones are dropped.
fn gather<B: Batchable>(
    first: B,
    pending: &mut VecDeque<Job>,
    jobs: &Receiver<Job>,
    max_batch_tokens: usize,
    metrics: &Metrics,
) -> Vec<B> {
    while let Ok(job) = jobs.try_recv() {
        pending.push_back(job);
    }
    let mut tokens = first.tokens();
    let mut batch = vec![first];
    let mut rest = VecDeque::with_capacity(pending.len());
    for job in pending.drain(..) {
        match B::from_job(job) {
            Ok(job) if job.key() == batch[0].key() && tokens + job.tokens() <= max_batch_tokens => {
                if job.closed() {
                    metrics.queue(-(job.inputs().len() as i64));
                    continue;
                }
                tokens += job.tokens();
                batch.push(job);
            }
            Ok(job) => rest.push_back(job.into_job()),
            Err(other) => rest.push_back(other),
        }
    }
    *pending = rest;
    batch
}

/// Runs a batch in one call of `run` and answers each job with its part; when the batch fails,
/// each job is run by itself so that only the client who sent a bad input sees the error.
fn answer_batch<B: Batchable>(
    batch: Vec<B>,
    metrics: &Metrics,
    run: impl Fn(&[&B::Input]) -> Result<Vec<B::Output>, ApiError>,
) {
    let inputs: usize = batch.iter().map(|job| job.inputs().len()).sum();
    let tokens: usize = batch.iter().map(|job| job.tokens()).sum();
    metrics.queue(-(inputs as i64));
    metrics.batch(inputs, tokens);
    let started = Instant::now();
    let all: Vec<&B::Input> = batch.iter().flat_map(|job| job.inputs()).collect();
    let result = guarded(metrics, || run(&all));
    let inference = started.elapsed();
    match result {
        Ok(outputs) => {
            let mut outputs = outputs.into_iter();
            for job in batch {
                let value: Vec<B::Output> = outputs.by_ref().take(job.inputs().len()).collect();
                let queue = started - job.enqueued();
                job.answer(Ok(Computed {
                    value,
                    queue,
                    inference,
                }));
            }
        }
        Err(error) if batch.len() == 1 => {
            batch
                .into_iter()
                .for_each(|job| job.answer(Err(error.clone())));
        }
        Err(_) => {
            for job in batch {
                let started_alone = Instant::now();
                let own: Vec<&B::Input> = job.inputs().iter().collect();
                let result = guarded(metrics, || run(&own));
                let queue = started - job.enqueued();
                job.answer(result.map(|value| Computed {
                    value,
                    queue,
                    inference: started_alone.elapsed(),
                }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_is_a_counted_500() {
        let metrics = Metrics::default();
        let result: Result<(), ApiError> = guarded(&metrics, || panic!("boom"));
        let error = result.unwrap_err();
        assert_eq!(error.status, axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        assert!(error.message.contains("boom"), "{}", error.message);
        assert_eq!(metrics.panics(), 1);
        assert!(metrics.render().contains("oxformer_request_panic 1"));
        let fine: Result<u8, ApiError> = guarded(&metrics, || Ok(7));
        assert_eq!(fine.unwrap(), 7);
        assert_eq!(metrics.panics(), 1);
    }
}

#[cfg(test)]
mod queue_tests {
    use super::*;

    fn st_mean() -> (Pipeline, PathBuf) {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models/st-mean");
        let pipeline =
            oxformer_pipelines::pipeline(Task::SentenceEmbeddings, &dir.display().to_string())
                .unwrap();
        (pipeline, dir)
    }

    fn embed_job(texts: &[&str]) -> (Job, oneshot::Receiver<EmbedAnswer>) {
        let (reply, answer) = oneshot::channel();
        let job = Job::Embed(EmbedJob {
            inputs: texts
                .iter()
                .map(|t| EmbedInput::Text(t.to_string()))
                .collect(),
            tokens: 8 * texts.len(),
            key: EmbedKey {
                prompt_name: None,
                normalize: true,
                dimensions: None,
                truncation_side: None,
            },
            enqueued: Instant::now(),
            reply,
        });
        (job, answer)
    }

    /// Queued jobs are batched together in the token budget; a job whose client went away is
    /// dropped unrun.
    #[test]
    fn queued_jobs_batch_and_abandoned_ones_are_dropped() {
        let (pipeline, dir) = st_mean();
        let metrics = Arc::new(Metrics::default());
        let (sender, receiver) = std::sync::mpsc::channel();
        let (first, first_answer) = embed_job(&["one", "two"]);
        let (gone, gone_answer) = embed_job(&["a", "b", "c"]);
        let (second, second_answer) = embed_job(&["three"]);
        let (over_budget, over_answer) = embed_job(&["x"; 8]);
        drop(gone_answer);
        for job in [first, gone, second, over_budget] {
            metrics.queue(job.inputs() as i64);
            sender.send(job).unwrap();
        }
        drop(sender);
        // Budget 32 tokens: the first two live jobs (24) batch; the third (64) goes alone.
        run(Models::new(pipeline, dir, 1), receiver, metrics.clone(), 32);
        let first = first_answer.blocking_recv().unwrap().unwrap().value;
        let second = second_answer.blocking_recv().unwrap().unwrap().value;
        let over = over_answer.blocking_recv().unwrap().unwrap().value;
        assert_eq!((first.len(), second.len(), over.len()), (2, 1, 8));
        let rendered = metrics.render();
        // Two batches: 3 inputs (the abandoned 3 not among them), then 8.
        assert!(
            rendered.contains("te_batch_next_size_count 2\n"),
            "{rendered}"
        );
        assert!(
            rendered.contains("te_batch_next_size_sum 11\n"),
            "{rendered}"
        );
        assert!(rendered.contains("te_queue_size 0\n"), "{rendered}");
    }
}
