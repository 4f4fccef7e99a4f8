//! TEI's routes (router/src/http/server.rs and types.rs of text-embeddings-inference v1.9:
//! the same request fields and response shapes), `/info`, and the HF Inference API's `POST /`.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use oxformer_pipelines::Task;
use oxformer_pipelines::feature_extraction::FeatureExtractionOptions;
use oxformer_pipelines::sentence_embeddings::{
    EmbeddingInput, SentenceEmbeddingsOptions, TextPreparation,
};
use oxformer_pipelines::text_classification::TextInput;
use oxformer_tokenizer::{EncodeInput, EncodeOptions, Side, Tokenizer};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::error::ApiError;
use crate::metrics::Method;
use crate::worker::{
    ClassifyJob, ClassifyKey, Computed, EmbedInput, EmbedJob, EmbedKey, Job, Models,
};
use crate::{Admission, JsonBody, ModelInfo, SharedState};

/// Where a request's time went, for the `x-*-time` headers and the metrics.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Timings {
    pub tokenization: Duration,
    pub queue: Duration,
    pub inference: Duration,
    pub tokens: usize,
}

/// Counts the request, runs it, and answers with TEI's timing headers (milliseconds) or the
/// error, counted by type.
pub(crate) async fn tracked(
    state: &SharedState,
    method: Method,
    work: impl Future<Output = Result<(Response, Timings), ApiError>>,
) -> Response {
    tracked_as(state, method, false, work).await
}

/// TEI's `method` label of a request's body: `batch` when its inputs came as a list.
pub(crate) fn method_of<T>(
    body: &Result<JsonBody<T>, ApiError>,
    batch: impl FnOnce(&T) -> bool,
) -> Method {
    match body {
        Ok(JsonBody(request)) if batch(request) => Method::Batch,
        _ => Method::Single,
    }
}

/// [`tracked`], with errors in OpenAI's shape when `openai`.
pub(crate) async fn tracked_as(
    state: &SharedState,
    method: Method,
    openai: bool,
    work: impl Future<Output = Result<(Response, Timings), ApiError>>,
) -> Response {
    let start = Instant::now();
    state.metrics.request(method);
    match work.await {
        Ok((mut response, timings)) => {
            let total = start.elapsed();
            state.metrics.success(
                method,
                total,
                timings.tokenization,
                timings.queue,
                timings.inference,
            );
            let headers = response.headers_mut();
            headers.insert("x-compute-type", HeaderValue::from_static("cpu"));
            let mut put = |name: &'static str, value: u128| {
                headers.insert(name, HeaderValue::from(value as u64));
            };
            put("x-compute-time", total.as_millis());
            put("x-total-time", total.as_millis());
            put("x-compute-tokens", timings.tokens as u128);
            put("x-tokenization-time", timings.tokenization.as_millis());
            put("x-queue-time", timings.queue.as_millis());
            put("x-inference-time", timings.inference.as_millis());
            response
        }
        Err(error) => {
            state.metrics.failure(error.metric_label());
            if openai {
                error.openai_response()
            } else {
                error.into_response()
            }
        }
    }
}

/// A string input, or token ids (TEI's `InputType`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum InputType {
    Text(String),
    Ids(Vec<u32>),
}

/// One input or a batch (TEI's `Input`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Input {
    Single(InputType),
    Batch(Vec<InputType>),
}

impl Input {
    /// The inputs, texts or token ids.
    fn items(self) -> Vec<EmbedInput> {
        let items = match self {
            // `[]` reads as an empty list of ids: no inputs.
            Input::Single(InputType::Ids(ids)) if ids.is_empty() => Vec::new(),
            Input::Single(item) => vec![item],
            Input::Batch(items) => items,
        };
        items
            .into_iter()
            .map(|item| match item {
                InputType::Text(text) => EmbedInput::Text(text),
                InputType::Ids(ids) => EmbedInput::Ids(ids),
            })
            .collect()
    }
}

fn default_true() -> bool {
    true
}

/// TEI's `truncation_direction` (`Right`, the default, or `Left`); `None` when not given.
fn truncation_side(direction: &Option<String>) -> Result<Option<Side>, ApiError> {
    match direction.as_deref() {
        None => Ok(None),
        Some("Right" | "right") => Ok(Some(Side::Right)),
        Some("Left" | "left") => Ok(Some(Side::Left)),
        Some(other) => Err(ApiError::validation(format!(
            "truncation_direction must be `Right` or `Left`, not `{other}`"
        ))),
    }
}

/// The pipelines' view of the inputs.
pub(crate) fn embedding_inputs<'a>(
    inputs: impl IntoIterator<Item = &'a EmbedInput>,
) -> Vec<EmbeddingInput<'a>> {
    inputs
        .into_iter()
        .map(|input| match input {
            EmbedInput::Text(text) => EmbeddingInput::Text(text),
            EmbedInput::Ids(ids) => EmbeddingInput::TokenIds(ids),
        })
        .collect()
}

/// The inputs' checks before they are admitted: not empty, not too many.
fn check_count(state: &SharedState, count: usize) -> Result<(), ApiError> {
    if count == 0 {
        return Err(ApiError::empty("`inputs` cannot be empty"));
    }
    let limit = state.config.max_client_batch_size;
    if count > limit {
        return Err(ApiError::validation(format!(
            "`inputs` must have less than {limit} elements. Given: {count}"
        )));
    }
    Ok(())
}

/// What counts an input's tokens: the tokenizer, and for a sentence-transformers model the
/// preparation its pipeline gives a text first (the prompt it chose, whitespace, case).
struct Counter {
    tokenizer: Arc<Tokenizer>,
    preparation: Option<(Arc<TextPreparation>, Option<String>)>,
}

impl Counter {
    fn length(&self, input: EncodeInput<'_>) -> Result<usize, ApiError> {
        Ok(self
            .tokenizer
            .encode(input, &EncodeOptions::default())
            .map_err(|error| ApiError::tokenizer(error.to_string()))?
            .len())
    }

    /// A text's tokens as the pipeline will feed it.
    fn text_length(&self, text: &str) -> Result<usize, ApiError> {
        match &self.preparation {
            Some((preparation, prompt)) => self.length(EncodeInput::Single(
                &preparation.text(prompt.as_deref(), text),
            )),
            None => self.length(EncodeInput::Single(text)),
        }
    }
}

/// An input whose tokens are counted before it is admitted to the model.
trait Counted: Send + 'static {
    /// Its tokens as the model will see them (before truncation), or an `Empty` error.
    fn tokens(&self, counter: &Counter) -> Result<usize, ApiError>;
}

impl Counted for EmbedInput {
    fn tokens(&self, counter: &Counter) -> Result<usize, ApiError> {
        match self {
            EmbedInput::Text(text) if text.is_empty() => {
                Err(ApiError::empty("`inputs` cannot contain an empty text"))
            }
            EmbedInput::Ids(ids) if ids.is_empty() => {
                Err(ApiError::empty("`inputs` cannot contain empty token ids"))
            }
            EmbedInput::Text(text) => counter.text_length(text),
            EmbedInput::Ids(ids) => Ok(ids.len()),
        }
    }
}

/// A text or pair to classify: a pair is counted with the tokenizer's pair template.
impl Counted for TextInput {
    fn tokens(&self, counter: &Counter) -> Result<usize, ApiError> {
        let empty = self.text.is_empty() || self.text_pair.as_ref().is_some_and(String::is_empty);
        if empty {
            return Err(ApiError::empty("`inputs` cannot contain an empty text"));
        }
        let input = match &self.text_pair {
            Some(pair) => EncodeInput::Pair(&self.text, pair),
            None => EncodeInput::Single(&self.text),
        };
        counter.length(input)
    }
}

/// Which preparation the texts get before they are counted.
#[derive(Clone, Copy, Debug)]
enum Prompting<'a> {
    /// None: counted as they are.
    Raw,
    /// A sentence-transformers model's, with the prompt named here or else the folder's default
    /// one (the pipeline's choice); as they are on other models.
    Sentence(Option<&'a str>),
}

/// Tokenizes each input on the tokenization threads: its real token count (cut to the limit when
/// truncating), or a validation error for an empty or (without truncation) over-long input. A
/// sentence-transformers model's texts are counted with the prompt the pipeline will put before
/// them, so a text the prompt makes over-long is refused rather than cut silently.
async fn count_tokens<T: Counted>(
    state: &SharedState,
    model: &ModelInfo,
    inputs: Vec<T>,
    truncate: bool,
    prompting: Prompting<'_>,
) -> Result<(Vec<T>, usize, Duration), ApiError> {
    let started = Instant::now();
    let limit = model.max_input_length;
    let preparation = match (prompting, &model.preparation) {
        (Prompting::Sentence(prompt_name), Some(preparation)) => {
            let options = SentenceEmbeddingsOptions {
                prompt_name: prompt_name.map(str::to_string),
                ..SentenceEmbeddingsOptions::default()
            };
            let prompt = preparation
                .prompt("sentence-embeddings", &options)
                .map_err(|error| ApiError::validation(error.to_string()))?
                .map(str::to_string);
            Some((Arc::clone(preparation), prompt))
        }
        _ => None,
    };
    let counter = Counter {
        tokenizer: model.tokenizer.clone(),
        preparation,
    };
    state
        .tokenization
        .run(move || {
            let mut total = 0;
            for input in &inputs {
                let length = input.tokens(&counter)?;
                if length > limit && !truncate {
                    return Err(ApiError::validation(format!(
                        "Input validation error: `inputs` must have less than {limit} tokens. \
                     Given: {length}"
                    )));
                }
                total += length.min(limit);
            }
            Ok((inputs, total, started.elapsed()))
        })
        .await
}

/// Queues the job that `job` builds around its reply channel, for `inputs` inputs, and waits
/// for the answer (the job is dropped, with its work, if the client goes away).
async fn submit_and_wait<T>(
    state: &SharedState,
    inputs: usize,
    job: impl FnOnce(oneshot::Sender<T>) -> Job,
) -> Result<T, ApiError> {
    let (reply, answer) = oneshot::channel();
    state.submit(job(reply), inputs)?;
    answer
        .await
        .map_err(|_| ApiError::backend("the model thread dropped the request"))
}

/// Sends work to the model thread and waits for it (dropped, with its job, if the client
/// goes away).
pub(crate) async fn run_on_model(
    state: &SharedState,
    inputs: usize,
    tokens: usize,
    work: impl FnOnce(&mut Models) -> Result<serde_json::Value, ApiError> + Send + 'static,
) -> Result<Computed<serde_json::Value>, ApiError> {
    submit_and_wait(state, inputs, |reply| Job::Run {
        work: Box::new(work),
        inputs,
        tokens,
        enqueued: Instant::now(),
        reply,
    })
    .await?
}

fn is_embedding(model: &ModelInfo) -> bool {
    matches!(
        model.task,
        Task::SentenceEmbeddings | Task::SentenceSimilarity
    )
}

/// Validates, admits, tokenizes and embeds texts or token ids in the shared batches.
async fn embed_texts(
    state: &SharedState,
    route: &str,
    texts: Vec<EmbedInput>,
    truncate: Option<bool>,
    key: EmbedKey,
) -> Result<(Vec<Vec<f32>>, Timings, Admission), ApiError> {
    let model = state.ready()?;
    if model.task == Task::FeatureExtraction && model.pooling.is_none() {
        let mut error = ApiError::unsupported(route, &model.task_name);
        error.message = format!(
            "`{route}` needs a pooling: this folder has no sentence-transformers pooling \
             (modules.json, 1_Pooling/config.json); start the server with --pooling cls, mean \
             or last-token"
        );
        return Err(error);
    }
    if !is_embedding(model) && model.pooling.is_none() {
        return Err(ApiError::unsupported(route, &model.task_name));
    }
    check_count(state, texts.len())?;
    let admission = state.admit(texts.len())?;
    let truncate = truncate.unwrap_or(state.config.auto_truncate);
    let prompting = Prompting::Sentence(key.prompt_name.as_deref());
    let (texts, tokens, tokenization) =
        count_tokens(state, model, texts, truncate, prompting).await?;
    let inputs = texts.len();
    let computed = submit_and_wait(state, inputs, |reply| {
        Job::Embed(EmbedJob {
            inputs: texts,
            tokens,
            key,
            enqueued: Instant::now(),
            reply,
        })
    })
    .await??;
    let timings = Timings {
        tokenization,
        queue: computed.queue,
        inference: computed.inference,
        tokens,
    };
    Ok((computed.value, timings, admission))
}

/// `/embed`'s body.
#[derive(Debug, Deserialize)]
pub(crate) struct EmbedRequest {
    inputs: Input,
    #[serde(default)]
    truncate: Option<bool>,
    #[serde(default)]
    truncation_direction: Option<String>,
    #[serde(default)]
    prompt_name: Option<String>,
    #[serde(default = "default_true")]
    normalize: bool,
    #[serde(default)]
    dimensions: Option<usize>,
}

/// `POST /embed`: `[[f32]]`, one embedding per input.
pub(crate) async fn embed(
    State(state): State<SharedState>,
    body: Result<JsonBody<EmbedRequest>, ApiError>,
) -> Response {
    let method = method_of(&body, |request| matches!(request.inputs, Input::Batch(_)));
    tracked(&state, method, async {
        let JsonBody(request) = body?;
        let key = EmbedKey {
            prompt_name: request.prompt_name,
            normalize: request.normalize,
            dimensions: request.dimensions,
            truncation_side: truncation_side(&request.truncation_direction)?,
        };
        let texts = request.inputs.items();
        let (embeddings, timings, _admission) =
            embed_texts(&state, "/embed", texts, request.truncate, key).await?;
        Ok((Json(embeddings).into_response(), timings))
    })
    .await
}

/// `/embed_all`'s body.
#[derive(Debug, Deserialize)]
pub(crate) struct EmbedAllRequest {
    inputs: Input,
    #[serde(default)]
    truncate: Option<bool>,
    #[serde(default)]
    truncation_direction: Option<String>,
    #[serde(default)]
    prompt_name: Option<String>,
}

/// Validation, admission and tokenization shared by the routes that run alone on the model.
async fn prepare(
    state: &SharedState,
    texts: Vec<String>,
    truncate: Option<bool>,
    prompting: Prompting<'_>,
) -> Result<(Vec<String>, bool, Timings, Admission), ApiError> {
    let inputs = texts.into_iter().map(EmbedInput::Text).collect();
    let (inputs, truncate, timings, admission) =
        prepare_inputs(state, inputs, truncate, prompting).await?;
    let texts = inputs
        .into_iter()
        .filter_map(|input| match input {
            EmbedInput::Text(text) => Some(text),
            EmbedInput::Ids(_) => None,
        })
        .collect();
    Ok((texts, truncate, timings, admission))
}

/// [`prepare`] for texts or token ids.
async fn prepare_inputs(
    state: &SharedState,
    texts: Vec<EmbedInput>,
    truncate: Option<bool>,
    prompting: Prompting<'_>,
) -> Result<(Vec<EmbedInput>, bool, Timings, Admission), ApiError> {
    let model = state.ready()?;
    check_count(state, texts.len())?;
    let admission = state.admit(texts.len())?;
    let truncate = truncate.unwrap_or(state.config.auto_truncate);
    let (texts, tokens, tokenization) =
        count_tokens(state, model, texts, truncate, prompting).await?;
    let timings = Timings {
        tokenization,
        tokens,
        ..Timings::default()
    };
    Ok((texts, truncate, timings, admission))
}

fn with_computed(mut timings: Timings, computed: &Computed<serde_json::Value>) -> Timings {
    timings.queue = computed.queue;
    timings.inference = computed.inference;
    timings
}

/// `POST /embed_all`: `[[[f32]]]`, the last hidden state of each input's tokens.
pub(crate) async fn embed_all(
    State(state): State<SharedState>,
    body: Result<JsonBody<EmbedAllRequest>, ApiError>,
) -> Response {
    let method = method_of(&body, |request| matches!(request.inputs, Input::Batch(_)));
    tracked(&state, method, async {
        let JsonBody(request) = body?;
        let side = truncation_side(&request.truncation_direction)?;
        let model = state.ready()?;
        if !is_embedding(model) && model.task != Task::FeatureExtraction {
            return Err(ApiError::unsupported("/embed_all", &model.task_name));
        }
        if request.prompt_name.is_some() {
            return Err(ApiError::validation(
                "prompt_name is not supported on /embed_all",
            ));
        }
        let (inputs, truncation, timings, _admission) = prepare_inputs(
            &state,
            request.inputs.items(),
            request.truncate,
            Prompting::Raw,
        )
        .await?;
        let count = inputs.len();
        let computed = run_on_model(&state, count, timings.tokens, move |models| {
            let max_length = models.max_input_length;
            let pipeline = if models.pipeline.feature_extraction().is_some() {
                &models.pipeline
            } else {
                models.token_embeddings()?
            };
            let pipeline = pipeline
                .feature_extraction()
                .expect("a feature-extraction pipeline");
            let options = FeatureExtractionOptions {
                truncation,
                max_length,
                batch_size: 0,
            };
            let features = pipeline.run_inputs(&embedding_inputs(&inputs), &options, side)?;
            let tokens: Vec<&Vec<Vec<f32>>> = features.iter().map(|f| &f.0[0]).collect();
            serde_json::to_value(tokens).map_err(|error| ApiError::backend(error.to_string()))
        })
        .await?;
        let timings = with_computed(timings, &computed);
        Ok((Json(computed.value).into_response(), timings))
    })
    .await
}

/// One text or a pair (TEI's `Sequence`).
#[derive(Debug)]
pub(crate) enum Sequence {
    Single(String),
    Pair(String, String),
}

/// TEI's `PredictInput`: a string, a list of one or two strings (one text or a pair), or a
/// batch of such lists (`[["a"], ["b", "c"]]`).
#[derive(Debug)]
pub(crate) enum PredictInput {
    Single(Sequence),
    Batch(Vec<Sequence>),
}

impl<'de> Deserialize<'de> for PredictInput {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let expected = "a string, a pair of strings [string, string] or a batch of mixed \
                        strings and pairs [[string], [string, string], ...]";
        let sequence = |mut texts: Vec<String>| match texts.len() {
            1 => Ok(Sequence::Single(texts.remove(0))),
            2 => {
                let second = texts.remove(1);
                Ok(Sequence::Pair(texts.remove(0), second))
            }
            length => Err(D::Error::custom(format!(
                "invalid length {length}, expected {expected}"
            ))),
        };
        match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::String(text) => Ok(Self::Single(Sequence::Single(text))),
            serde_json::Value::Array(items) if items.first().is_some_and(|v| v.is_string()) => {
                let texts: Vec<String> = serde_json::from_value(serde_json::Value::Array(items))
                    .map_err(D::Error::custom)?;
                Ok(Self::Single(sequence(texts)?))
            }
            serde_json::Value::Array(items) if !items.is_empty() => {
                let batch: Vec<Vec<String>> =
                    serde_json::from_value(serde_json::Value::Array(items))
                        .map_err(D::Error::custom)?;
                Ok(Self::Batch(
                    batch.into_iter().map(sequence).collect::<Result<_, _>>()?,
                ))
            }
            _ => Err(D::Error::custom(format!("expected {expected}"))),
        }
    }
}

/// `/predict`'s body.
#[derive(Debug, Deserialize)]
pub(crate) struct PredictRequest {
    inputs: PredictInput,
    #[serde(default)]
    truncate: Option<bool>,
    #[serde(default)]
    truncation_direction: Option<String>,
    #[serde(default)]
    raw_scores: bool,
}

/// TEI's `Prediction`.
#[derive(Debug, Serialize)]
struct Prediction {
    score: f64,
    label: String,
}

/// Classifies pairs on the model thread: for each, every label's score, best first.
async fn classify(
    state: &SharedState,
    route: &str,
    pairs: Vec<TextInput>,
    truncate: Option<bool>,
    truncation_side: Option<Side>,
    raw_scores: bool,
) -> Result<(Vec<Vec<Prediction>>, Timings, Admission), ApiError> {
    let model = state.ready()?;
    if model.task != Task::TextClassification {
        return Err(ApiError::unsupported(route, &model.task_name));
    }
    check_count(state, pairs.len())?;
    let admission = state.admit(pairs.len())?;
    let truncation = truncate.unwrap_or(state.config.auto_truncate);
    let (pairs, tokens, tokenization) =
        count_tokens(state, model, pairs, truncation, Prompting::Raw).await?;
    let inputs = pairs.len();
    let computed = submit_and_wait(state, inputs, |reply| {
        Job::Classify(ClassifyJob {
            pairs,
            tokens,
            key: ClassifyKey {
                raw_scores,
                truncation,
                truncation_side,
            },
            enqueued: Instant::now(),
            reply,
        })
    })
    .await??;
    let timings = Timings {
        tokenization,
        queue: computed.queue,
        inference: computed.inference,
        tokens,
    };
    let predictions = computed
        .value
        .into_iter()
        .map(|scores| {
            scores
                .into_iter()
                .map(|(score, label)| Prediction { score, label })
                .collect()
        })
        .collect();
    Ok((predictions, timings, admission))
}

fn to_text_input(sequence: Sequence) -> TextInput {
    match sequence {
        Sequence::Single(text) => TextInput {
            text,
            text_pair: None,
        },
        Sequence::Pair(text, pair) => TextInput {
            text,
            text_pair: Some(pair),
        },
    }
}

/// `POST /predict`: `[{"score","label"}]` best first for one input, a list of those for a
/// batch.
pub(crate) async fn predict(
    State(state): State<SharedState>,
    body: Result<JsonBody<PredictRequest>, ApiError>,
) -> Response {
    let method = method_of(&body, |request| {
        matches!(request.inputs, PredictInput::Batch(_))
    });
    tracked(&state, method, async {
        let JsonBody(request) = body?;
        let side = truncation_side(&request.truncation_direction)?;
        let (single, sequences) = match request.inputs {
            PredictInput::Single(sequence) => (true, vec![sequence]),
            PredictInput::Batch(sequences) => (false, sequences),
        };
        let pairs: Vec<TextInput> = sequences.into_iter().map(to_text_input).collect();
        let (mut predictions, timings, _admission) = classify(
            &state,
            "/predict",
            pairs,
            request.truncate,
            side,
            request.raw_scores,
        )
        .await?;
        let response = if single {
            Json(predictions.remove(0)).into_response()
        } else {
            Json(predictions).into_response()
        };
        Ok((response, timings))
    })
    .await
}

/// `/rerank`'s body.
#[derive(Debug, Deserialize)]
pub(crate) struct RerankRequest {
    query: String,
    texts: Vec<String>,
    #[serde(default)]
    truncate: Option<bool>,
    #[serde(default)]
    truncation_direction: Option<String>,
    #[serde(default)]
    raw_scores: bool,
    #[serde(default)]
    return_text: bool,
}

/// TEI's `Rank`.
#[derive(Debug, Serialize)]
struct Rank {
    index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    score: f64,
}

/// `POST /rerank`: `[{"index","score","text"?}]`, best first, for a one-label classifier.
pub(crate) async fn rerank(
    State(state): State<SharedState>,
    body: Result<JsonBody<RerankRequest>, ApiError>,
) -> Response {
    let method = method_of(&body, |_| true);
    tracked(&state, method, async {
        let JsonBody(request) = body?;
        let side = truncation_side(&request.truncation_direction)?;
        let model = state.ready()?;
        if model.task != Task::TextClassification || model.labels.len() != 1 {
            return Err(ApiError::unsupported("/rerank", &model.task_name));
        }
        if request.query.is_empty() {
            return Err(ApiError::empty("`query` cannot be empty"));
        }
        let pairs: Vec<TextInput> = request
            .texts
            .iter()
            .map(|text| TextInput {
                text: request.query.clone(),
                text_pair: Some(text.clone()),
            })
            .collect();
        let (predictions, timings, _admission) = classify(
            &state,
            "/rerank",
            pairs,
            request.truncate,
            side,
            request.raw_scores,
        )
        .await?;
        let mut ranks: Vec<Rank> = predictions
            .into_iter()
            .enumerate()
            .map(|(index, prediction)| Rank {
                index,
                text: request.return_text.then(|| request.texts[index].clone()),
                score: prediction[0].score,
            })
            .collect();
        // Stable, best first.
        ranks.sort_by(|a, b| {
            b.score
                .partial_cmp(&a.score)
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        Ok((Json(ranks).into_response(), timings))
    })
    .await
}

/// `/similarity`'s inputs.
#[derive(Debug, Deserialize)]
pub(crate) struct SimilarityInput {
    source_sentence: String,
    sentences: Vec<String>,
}

/// `/similarity`'s parameters.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct SimilarityParameters {
    #[serde(default)]
    truncate: Option<bool>,
    #[serde(default)]
    truncation_direction: Option<String>,
    #[serde(default)]
    prompt_name: Option<String>,
}

/// `/similarity`'s body.
#[derive(Debug, Deserialize)]
pub(crate) struct SimilarityRequest {
    inputs: SimilarityInput,
    #[serde(default)]
    parameters: Option<SimilarityParameters>,
}

/// `POST /similarity`: `[f32]`, the cosine of the source sentence with each sentence.
pub(crate) async fn similarity(
    State(state): State<SharedState>,
    body: Result<JsonBody<SimilarityRequest>, ApiError>,
) -> Response {
    let method = method_of(&body, |_| true);
    tracked(&state, method, async {
        let JsonBody(request) = body?;
        let parameters = request.parameters.unwrap_or_default();
        let side = truncation_side(&parameters.truncation_direction)?;
        let model = state.ready()?;
        if !is_embedding(model) {
            return Err(ApiError::unsupported("/similarity", &model.task_name));
        }
        if request.inputs.sentences.is_empty() {
            return Err(ApiError::empty("`sentences` cannot be empty"));
        }
        let mut texts = vec![request.inputs.source_sentence];
        texts.extend(request.inputs.sentences);
        let prompting = Prompting::Sentence(parameters.prompt_name.as_deref());
        let (texts, _, timings, _admission) =
            prepare(&state, texts, parameters.truncate, prompting).await?;
        let prompt_name = parameters.prompt_name;
        let computed = run_on_model(&state, texts.len(), 0, move |models| {
            let pipeline = models
                .pipeline
                .sentence_embeddings()
                .expect("a sentence-embeddings pipeline");
            let (source, sentences) = texts.split_first().expect("at least two texts");
            let sentences: Vec<&str> = sentences.iter().map(String::as_str).collect();
            let options = SentenceEmbeddingsOptions {
                prompt_name,
                max_length: models.max_input_length,
                ..SentenceEmbeddingsOptions::default()
            };
            let scores = pipeline.similarity_on(source, &sentences, &options, side)?;
            serde_json::to_value(scores).map_err(|error| ApiError::backend(error.to_string()))
        })
        .await?;
        let timings = with_computed(timings, &computed);
        Ok((Json(computed.value).into_response(), timings))
    })
    .await
}

/// TEI's `TokenizeInput`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum TokenizeInput {
    Single(String),
    Batch(Vec<String>),
}

/// `/tokenize`'s body.
#[derive(Debug, Deserialize)]
pub(crate) struct TokenizeRequest {
    inputs: TokenizeInput,
    #[serde(default = "default_true")]
    add_special_tokens: bool,
    #[serde(default)]
    prompt_name: Option<String>,
}

/// TEI's `SimpleToken`: for a text token, the text it covers and its byte span.
#[derive(Debug, Serialize)]
struct SimpleToken {
    id: u32,
    text: String,
    special: bool,
    start: Option<usize>,
    stop: Option<usize>,
}

/// `POST /tokenize`: `[[{"id","text","special","start","stop"}]]` (a list per input, also
/// for one input). Runs on the tokenization threads, not the model thread.
pub(crate) async fn tokenize(
    State(state): State<SharedState>,
    body: Result<JsonBody<TokenizeRequest>, ApiError>,
) -> Response {
    let method = method_of(&body, |request| {
        matches!(request.inputs, TokenizeInput::Batch(_))
    });
    tracked(&state, method, async {
        let JsonBody(request) = body?;
        let model = state.ready()?;
        if request.prompt_name.is_some() {
            return Err(ApiError::validation(
                "prompt_name is not supported on /tokenize",
            ));
        }
        let texts = match request.inputs {
            TokenizeInput::Single(text) => vec![text],
            TokenizeInput::Batch(texts) => texts,
        };
        check_count(&state, texts.len())?;
        let _admission = state.admit(texts.len())?;
        let tokenizer = model.tokenizer.clone();
        let started = Instant::now();
        let options = EncodeOptions {
            add_special_tokens: request.add_special_tokens,
            ..EncodeOptions::default()
        };
        let tokens = state
            .tokenization
            .run(move || {
                texts
                    .iter()
                    .map(|text| {
                        let encoding = tokenizer
                            .encode(text.as_str(), &options)
                            .map_err(|error| ApiError::tokenizer(error.to_string()))?;
                        Ok((0..encoding.len())
                            .map(|index| {
                                let special = encoding.special_tokens_mask()[index] == 1;
                                let (start, stop) = encoding.byte_offsets()[index];
                                if special {
                                    SimpleToken {
                                        id: encoding.ids()[index],
                                        text: encoding.tokens()[index].clone(),
                                        special,
                                        start: None,
                                        stop: None,
                                    }
                                } else {
                                    SimpleToken {
                                        id: encoding.ids()[index],
                                        text: String::from_utf8_lossy(
                                            &text.as_bytes()
                                                [start.min(text.len())..stop.min(text.len())],
                                        )
                                        .into_owned(),
                                        special,
                                        start: Some(start),
                                        stop: Some(stop),
                                    }
                                }
                            })
                            .collect::<Vec<_>>())
                    })
                    .collect::<Result<Vec<_>, ApiError>>()
            })
            .await?;
        let timings = Timings {
            tokenization: started.elapsed(),
            tokens: tokens.iter().map(Vec::len).sum(),
            ..Timings::default()
        };
        Ok((Json(tokens).into_response(), timings))
    })
    .await
}

/// TEI's `InputIds`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum InputIds {
    Single(Vec<u32>),
    Batch(Vec<Vec<u32>>),
}

/// `/decode`'s body.
#[derive(Debug, Deserialize)]
pub(crate) struct DecodeRequest {
    ids: InputIds,
    #[serde(default = "default_true")]
    skip_special_tokens: bool,
}

/// `POST /decode`: `[str]`, one text per list of ids.
pub(crate) async fn decode(
    State(state): State<SharedState>,
    body: Result<JsonBody<DecodeRequest>, ApiError>,
) -> Response {
    let method = method_of(&body, |request| matches!(request.ids, InputIds::Batch(_)));
    tracked(&state, method, async {
        let JsonBody(request) = body?;
        let model = state.ready()?;
        let ids = match request.ids {
            InputIds::Single(ids) => vec![ids],
            InputIds::Batch(ids) => ids,
        };
        check_count(&state, ids.len())?;
        if ids.iter().any(Vec::is_empty) {
            return Err(ApiError::empty("`ids` cannot be empty"));
        }
        let _admission = state.admit(ids.len())?;
        let tokenizer = model.tokenizer.clone();
        let skip = request.skip_special_tokens;
        let started = Instant::now();
        let texts = state
            .tokenization
            .run(move || {
                ids.iter()
                    .map(|ids| {
                        tokenizer
                            .decode(ids, skip, None)
                            .map_err(|error| ApiError::tokenizer(error.to_string()))
                    })
                    .collect::<Result<Vec<String>, ApiError>>()
            })
            .await?;
        let timings = Timings {
            tokenization: started.elapsed(),
            ..Timings::default()
        };
        Ok((Json(texts).into_response(), timings))
    })
    .await
}

/// OpenAI's `encoding_format`.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum EncodingFormat {
    #[default]
    Float,
    Base64,
}

/// `/v1/embeddings`'s body (OpenAI's).
#[derive(Debug, Deserialize)]
pub(crate) struct OpenAiEmbeddingsRequest {
    input: Input,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    user: Option<String>,
    #[serde(default)]
    encoding_format: EncodingFormat,
    #[serde(default)]
    dimensions: Option<usize>,
}

/// `POST /v1/embeddings`: OpenAI's list of embeddings (normalized, as TEI's), as floats or
/// base64 of their little-endian bytes.
pub(crate) async fn openai_embeddings(
    State(state): State<SharedState>,
    body: Result<JsonBody<OpenAiEmbeddingsRequest>, ApiError>,
) -> Response {
    let method = method_of(&body, |request| matches!(request.input, Input::Batch(_)));
    tracked_as(&state, method, true, async {
        let JsonBody(request) = body?;
        let key = EmbedKey {
            prompt_name: None,
            normalize: true,
            dimensions: request.dimensions,
            truncation_side: None,
        };
        let texts = request.input.items();
        let (embeddings, timings, _admission) =
            embed_texts(&state, "/v1/embeddings", texts, None, key).await?;
        let data: Vec<serde_json::Value> = embeddings
            .into_iter()
            .enumerate()
            .map(|(index, embedding)| {
                let embedding = match request.encoding_format {
                    EncodingFormat::Float => serde_json::json!(embedding),
                    EncodingFormat::Base64 => {
                        let bytes: Vec<u8> = embedding
                            .iter()
                            .flat_map(|value| value.to_le_bytes())
                            .collect();
                        serde_json::json!(base64::engine::general_purpose::STANDARD.encode(bytes))
                    }
                };
                serde_json::json!({"object": "embedding", "embedding": embedding, "index": index})
            })
            .collect();
        let model_id = state
            .ready()
            .map(|model| model.model_id.clone())
            .unwrap_or_default();
        let body = serde_json::json!({
            "object": "list",
            "data": data,
            "model": request.model.unwrap_or(model_id),
            "usage": {"prompt_tokens": timings.tokens, "total_tokens": timings.tokens},
        });
        Ok((Json(body).into_response(), timings))
    })
    .await
}

/// `GET /info`: TEI's model and limits.
pub(crate) async fn info(State(state): State<SharedState>) -> Response {
    match state.ready() {
        Ok(model) => Json(model.info.clone()).into_response(),
        Err(error) => error.into_response(),
    }
}

/// The HF Inference API's body.
#[derive(Debug, Deserialize)]
pub(crate) struct InferenceRequest {
    inputs: serde_json::Value,
    #[serde(default)]
    parameters: Option<serde_json::Map<String, serde_json::Value>>,
}

/// `POST /`: `{"inputs", "parameters"}` → exactly what `Pipeline::call(inputs, parameters)`
/// returns, for every task.
pub(crate) async fn inference(
    State(state): State<SharedState>,
    body: Result<JsonBody<InferenceRequest>, ApiError>,
) -> Response {
    let method = method_of(&body, |request| request.inputs.is_array());
    tracked(&state, method, async {
        let JsonBody(request) = body?;
        let _ = state.ready()?;
        let inputs = match &request.inputs {
            serde_json::Value::Null => return Err(ApiError::empty("`inputs` cannot be empty")),
            serde_json::Value::String(text) if text.is_empty() => {
                return Err(ApiError::empty("`inputs` cannot be empty"));
            }
            serde_json::Value::Array(items) => items.len(),
            _ => 1,
        };
        check_count(&state, inputs)?;
        let _admission = state.admit(inputs)?;
        let parameters = request.parameters.unwrap_or_default();
        let inputs_json = request.inputs;
        let computed = run_on_model(&state, inputs, 0, move |models| {
            Ok(models.pipeline.call(&inputs_json, &parameters)?)
        })
        .await?;
        let timings = Timings {
            queue: computed.queue,
            inference: computed.inference,
            ..Timings::default()
        };
        Ok((Json(computed.value).into_response(), timings))
    })
    .await
}
