//! The model thread: it owns the pipeline, takes jobs from a channel, and batches the embedding
//! jobs of many clients together up to `--max-batch-tokens` real tokens (our forward passes
//! need no padding). No model work runs on the async runtime.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use oxformer_pipelines::sentence_embeddings::SentenceEmbeddingsOptions;
use oxformer_pipelines::{Pipeline, Task};
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
}

/// Sentence embeddings of some texts.
pub struct EmbedJob {
    pub texts: Vec<String>,
    pub tokens: usize,
    pub key: EmbedKey,
    pub enqueued: Instant,
    pub reply: oneshot::Sender<EmbedAnswer>,
}

/// The answer to an [`EmbedJob`]: one embedding per text.
pub type EmbedAnswer = Result<Computed<Vec<Vec<f32>>>, ApiError>;

/// Work that runs alone on the model thread.
pub type Work = Box<dyn FnOnce(&mut Models) -> Result<serde_json::Value, ApiError> + Send>;

/// A job for the model thread.
pub enum Job {
    /// Batched with other embedding jobs of the same [`EmbedKey`].
    Embed(EmbedJob),
    /// Run by itself (`inputs` only counts for the queue size).
    Run {
        work: Work,
        inputs: usize,
        enqueued: Instant,
        reply: oneshot::Sender<Result<Computed<serde_json::Value>, ApiError>>,
    },
}

impl Job {
    /// Whether the client went away (its receiver dropped): the job is then dropped unrun.
    fn cancelled(&self) -> bool {
        match self {
            Job::Embed(job) => job.reply.is_closed(),
            Job::Run { reply, .. } => reply.is_closed(),
        }
    }

    fn inputs(&self) -> usize {
        match self {
            Job::Embed(job) => job.texts.len(),
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
}

impl Models {
    pub fn new(pipeline: Pipeline, dir: PathBuf, threads: usize) -> Self {
        Self {
            pipeline,
            dir,
            threads,
            token_embeddings: None,
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

/// The thread's loop: until every sender is gone, take the next job (or a batch of embedding
/// jobs) and answer it.
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
                // Everything waiting joins the queue; the compatible embedding jobs that fit
                // in the token budget join the batch, in arrival order.
                while let Ok(job) = jobs.try_recv() {
                    pending.push_back(job);
                }
                let mut tokens = first.tokens;
                let mut batch = vec![first];
                let mut rest = VecDeque::with_capacity(pending.len());
                for job in pending.drain(..) {
                    match job {
                        Job::Embed(job)
                            if job.key == batch[0].key
                                && tokens + job.tokens <= max_batch_tokens =>
                        {
                            if job.reply.is_closed() {
                                metrics.queue(-(job.texts.len() as i64));
                                continue;
                            }
                            tokens += job.tokens;
                            batch.push(job);
                        }
                        other => rest.push_back(other),
                    }
                }
                pending = rest;
                embed_batch(&models, batch, tokens, &metrics);
            }
            Job::Run {
                work,
                inputs,
                enqueued,
                reply,
            } => {
                metrics.queue(-(inputs as i64));
                let started = Instant::now();
                let queue = started - enqueued;
                let result = guarded(&metrics, || work(&mut models));
                let inference = started.elapsed();
                metrics.batch(inputs, 0);
                let _ = reply.send(result.map(|value| Computed {
                    value,
                    queue,
                    inference,
                }));
            }
        }
    }
}

fn embed_batch(models: &Models, batch: Vec<EmbedJob>, tokens: usize, metrics: &Metrics) {
    let inputs: usize = batch.iter().map(|job| job.texts.len()).sum();
    metrics.queue(-(inputs as i64));
    let started = Instant::now();
    let key = batch[0].key.clone();
    let texts: Vec<&str> = batch
        .iter()
        .flat_map(|job| job.texts.iter().map(String::as_str))
        .collect();
    let options = SentenceEmbeddingsOptions {
        prompt_name: key.prompt_name,
        prompt: None,
        normalize_embeddings: key.normalize,
        truncate_dim: key.dimensions,
        batch_size: 0,
    };
    let result = guarded(metrics, || {
        let pipeline = models
            .pipeline
            .sentence_embeddings()
            .ok_or_else(|| ApiError::backend("not a sentence-embeddings pipeline"))?;
        Ok(pipeline.run(&texts, &options)?)
    });
    let inference = started.elapsed();
    metrics.batch(inputs, tokens);
    match result {
        Ok(embeddings) => {
            let mut embeddings = embeddings.into_iter();
            for job in batch {
                let value: Vec<Vec<f32>> = embeddings.by_ref().take(job.texts.len()).collect();
                let _ = job.reply.send(Ok(Computed {
                    value,
                    queue: started - job.enqueued,
                    inference,
                }));
            }
        }
        Err(error) => {
            // One input's error fails the whole batch: answer each job by itself so that only
            // the client who sent the bad input sees it.
            if batch.len() == 1 {
                let job = batch.into_iter().next().expect("one job");
                let _ = job.reply.send(Err(error));
                return;
            }
            for job in batch {
                let texts: Vec<&str> = job.texts.iter().map(String::as_str).collect();
                let started = Instant::now();
                let result = guarded(metrics, || {
                    let pipeline = models
                        .pipeline
                        .sentence_embeddings()
                        .ok_or_else(|| ApiError::backend("not a sentence-embeddings pipeline"))?;
                    Ok(pipeline.run(&texts, &options)?)
                });
                let _ = job.reply.send(result.map(|value| Computed {
                    value,
                    queue: started - job.enqueued,
                    inference: started.elapsed(),
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
            texts: texts.iter().map(|t| t.to_string()).collect(),
            tokens: 8 * texts.len(),
            key: EmbedKey {
                prompt_name: None,
                normalize: true,
                dimensions: None,
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
