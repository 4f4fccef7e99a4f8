//! oxformer-server: `oxformer serve`, an HTTP server over one oxformer pipeline that speaks
//! the APIs clients already call: text-embeddings-inference (TEI v1.9) for embeddings,
//! classifiers and rerankers, the HF Inference API's `{"inputs", "parameters"}` for every
//! pipeline task, and TGI's and OpenAI's completion routes for generation.
//!
//! The model runs on its own thread ([`worker`]); the async runtime only parses, validates,
//! tokenizes (on a fixed set of tokenization threads) and answers. Embedding requests from many clients are
//! batched together up to `max_batch_tokens` real tokens.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use oxformer_server::{ServerConfig, serve};
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! let config = ServerConfig::new("fixtures/models/st-mean");
//! serve(config, listener, std::future::pending()).await?;
//! # Ok(())
//! # }
//! ```

mod error;
mod generate;
mod metrics;
mod routes;
mod tokenization;
pub mod worker;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, mpsc};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use oxformer_pipelines::{Pipeline, Task};
use oxformer_tokenizer::Tokenizer;
use serde::de::DeserializeOwned;

pub use error::{ApiError, ErrorType};
pub use metrics::Metrics;

use worker::{Job, Models};

/// The server's settings: `oxformer serve`'s flags.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// A model folder, or a model id in the local Hugging Face cache.
    pub model: String,
    /// `auto` (from the folder) or a pipeline task name.
    pub task: String,
    /// Real tokens per embedding batch, across clients.
    pub max_batch_tokens: usize,
    /// Inputs in flight at once; past it, 429 `Overloaded`.
    pub max_concurrent_requests: usize,
    /// Inputs per request.
    pub max_client_batch_size: usize,
    /// Tokens per input (default, as TEI: the sentence-transformers `max_seq_length`, else the
    /// model's positions, at most `max_batch_tokens`); never more than the model's positions.
    pub max_input_length: Option<usize>,
    /// Truncate over-long inputs instead of refusing them.
    pub auto_truncate: bool,
    /// Request body bytes.
    pub payload_limit: usize,
    /// Model threads (0: one per core).
    pub threads: usize,
    /// With a key, every route but `/health` and `/metrics` needs `Authorization: Bearer KEY`.
    pub api_key: Option<String>,
    /// TEI's `--pooling` for a folder without a sentence-transformers pooling: `cls`, `mean`
    /// or `last-token` over the model's last hidden state serves `/embed`.
    pub pooling: Option<String>,
}

impl ServerConfig {
    /// The defaults of `oxformer serve` for `model`.
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            task: "auto".to_string(),
            max_batch_tokens: 16384,
            max_concurrent_requests: 512,
            max_client_batch_size: 32,
            max_input_length: None,
            auto_truncate: false,
            payload_limit: 2_000_000,
            threads: 0,
            api_key: None,
            pooling: None,
        }
    }
}

/// What the HTTP side knows of the loaded model.
pub(crate) struct ModelInfo {
    pub task: Task,
    /// `--pooling` over a feature-extraction model (then `/embed` serves it).
    pub pooling: Option<worker::Pooling>,
    pub task_name: String,
    pub model_id: String,
    pub tokenizer: Arc<Tokenizer>,
    pub max_input_length: usize,
    /// `id2label` of a classifier, in id order.
    pub labels: Vec<String>,
    /// A sentence-transformers model's preparation of a text (prompt, whitespace, case), so that
    /// an input's tokens are counted as the pipeline will feed them.
    pub preparation: Option<Arc<oxformer_pipelines::sentence_embeddings::TextPreparation>>,
    /// TEI's `/info` body.
    pub info: serde_json::Value,
}

/// Shared by every request.
pub(crate) struct AppState {
    pub config: ServerConfig,
    pub model: OnceLock<ModelInfo>,
    pub jobs: mpsc::Sender<Job>,
    pub in_flight: AtomicUsize,
    pub accepting: AtomicBool,
    pub metrics: Arc<Metrics>,
    pub tokenization: tokenization::Tokenization,
}

pub(crate) type SharedState = Arc<AppState>;

impl AppState {
    /// The loaded model, or 503 while loading or shutting down.
    pub fn ready(&self) -> Result<&ModelInfo, ApiError> {
        if !self.accepting.load(Ordering::SeqCst) {
            return Err(ApiError::unhealthy("the server is shutting down"));
        }
        self.model
            .get()
            .ok_or_else(|| ApiError::unhealthy("the model is loading"))
    }

    /// Admits `inputs` more inputs, or 429 past `max_concurrent_requests`.
    pub fn admit(self: &Arc<Self>, inputs: usize) -> Result<Admission, ApiError> {
        let limit = self.config.max_concurrent_requests;
        let mut current = self.in_flight.load(Ordering::SeqCst);
        loop {
            if current + inputs > limit {
                return Err(ApiError::overloaded(limit));
            }
            match self.in_flight.compare_exchange(
                current,
                current + inputs,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => {
                    return Ok(Admission {
                        state: self.clone(),
                        inputs,
                    });
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Sends a job to the model thread.
    pub fn submit(&self, job: Job, inputs: usize) -> Result<(), ApiError> {
        self.metrics.queue(inputs as i64);
        self.jobs.send(job).map_err(|_| {
            self.metrics.queue(-(inputs as i64));
            ApiError::unhealthy("the model thread has stopped")
        })
    }
}

/// Inputs counted in flight until dropped.
pub(crate) struct Admission {
    state: SharedState,
    inputs: usize,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.state
            .in_flight
            .fetch_sub(self.inputs, Ordering::SeqCst);
    }
}

/// A JSON body read up to `--payload-limit`, with TEI-shaped errors (413 over the limit, 400
/// for a body that is not JSON, 422 for JSON of the wrong shape).
pub(crate) struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<SharedState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &SharedState) -> Result<Self, ApiError> {
        let limit = state.config.payload_limit;
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<usize>().ok());
        if declared.is_some_and(|length| length > limit) {
            return Err(ApiError::payload_too_large(limit));
        }
        let bytes: Bytes = axum::body::to_bytes(request.into_body(), limit)
            .await
            .map_err(|_| ApiError::payload_too_large(limit))?;
        let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
        let value = T::deserialize(&mut deserializer).map_err(|error| {
            if error.is_syntax() || error.is_eof() {
                ApiError::bad_json(format!("the body is not valid JSON: {error}"))
            } else {
                ApiError::validation(format!("invalid request: {error}"))
            }
        })?;
        deserializer
            .end()
            .map_err(|error| ApiError::bad_json(format!("the body is not valid JSON: {error}")))?;
        Ok(Self(value))
    }
}

/// The task `--task auto` picks for a folder: sentence-transformers → `sentence-embeddings`,
/// else from config.json's `architectures` (a classifier → `text-classification`, a causal LM
/// → `text-generation`, ...), else `feature-extraction`.
pub fn auto_task(dir: &Path) -> String {
    if dir.join("modules.json").is_file() {
        return "sentence-embeddings".to_string();
    }
    let architectures: Vec<String> = std::fs::read_to_string(dir.join("config.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|config| config.get("architectures").cloned())
        .and_then(|value| serde_json::from_value(value).ok())
        .unwrap_or_default();
    let has = |suffix: &str| architectures.iter().any(|name| name.ends_with(suffix));
    let task = if has("ForSequenceClassification") {
        "text-classification"
    } else if has("ForTokenClassification") {
        "token-classification"
    } else if has("ForQuestionAnswering") {
        "question-answering"
    } else if has("ForMaskedLM") {
        "fill-mask"
    } else if has("LMHeadModel") || has("ForCausalLM") {
        "text-generation"
    } else if has("ForConditionalGeneration") || has("MTModel") {
        "text2text-generation"
    } else {
        "feature-extraction"
    };
    task.to_string()
}

/// The pooling of a sentence-transformers folder, as TEI names it in `/info`.
fn folder_pooling(dir: &Path) -> String {
    let modules: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("modules.json"))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default();
    let pooling_path = modules.iter().find_map(|module| {
        let kind = module.get("type")?.as_str()?;
        kind.ends_with("Pooling")
            .then(|| module.get("path")?.as_str().map(str::to_string))?
    });
    let config: serde_json::Value = pooling_path
        .and_then(|path| std::fs::read_to_string(dir.join(path).join("config.json")).ok())
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default();
    let on = |key: &str| config.get(key).and_then(|v| v.as_bool()).unwrap_or(false);
    for (key, name) in [
        ("pooling_mode_cls_token", "cls"),
        ("pooling_mode_mean_tokens", "mean"),
        ("pooling_mode_max_tokens", "max"),
        ("pooling_mode_lasttoken", "last_token"),
        ("pooling_mode_weightedmean_tokens", "weighted_mean"),
        ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len"),
    ] {
        if on(key) {
            return name.to_string();
        }
    }
    "unknown".to_string()
}

/// The model's maximum input length, as TEI v1.9 takes it (router/src/lib.rs): a
/// sentence-transformers folder's `max_seq_length`, else the model's positions.
fn model_max_input_length(dir: &Path) -> Option<usize> {
    let read = |name: &str| -> Option<serde_json::Value> {
        serde_json::from_str(&std::fs::read_to_string(dir.join(name)).ok()?).ok()
    };
    if let Some(length) =
        read("sentence_bert_config.json").and_then(|config| config.get("max_seq_length")?.as_u64())
    {
        return Some(length as usize);
    }
    model_positions(dir)
}

/// The positions the model has: config.json's `max_position_embeddings` (`n_positions` for
/// GPT-2) less the position offset of RoBERTa-like models (`pad_token_id + 1`).
fn model_positions(dir: &Path) -> Option<usize> {
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).ok()?).ok()?;
    let positions = config
        .get("max_position_embeddings")
        .or_else(|| config.get("n_positions"))?
        .as_u64()? as usize;
    let model_type = config.get("model_type").and_then(|v| v.as_str());
    let offset = match model_type {
        Some("roberta" | "xlm-roberta" | "camembert") => config
            .get("pad_token_id")
            .and_then(|v| v.as_u64())
            .map_or(0, |pad| pad as usize + 1),
        _ => 0,
    };
    Some(positions.saturating_sub(offset))
}

/// `id2label` of config.json, in id order.
fn labels(dir: &Path) -> Vec<String> {
    let config: serde_json::Value = std::fs::read_to_string(dir.join("config.json"))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default();
    let Some(map) = config.get("id2label").and_then(|v| v.as_object()) else {
        return Vec::new();
    };
    let mut pairs: Vec<(usize, String)> = map
        .iter()
        .filter_map(|(id, label)| Some((id.parse().ok()?, label.as_str()?.to_string())))
        .collect();
    pairs.sort();
    pairs.into_iter().map(|(_, label)| label).collect()
}

/// Tokenization threads: TEI's default, one fewer than the cores (the model has them), from
/// 1 to 64.
fn tokenization_workers() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    cores.saturating_sub(1).clamp(1, 64)
}

/// Loads the model on the current (model) thread: the folder, the task, the pipeline and what
/// the HTTP side needs to know.
fn load(config: &ServerConfig) -> Result<(Models, ModelInfo), String> {
    let dir = if Path::new(&config.model).is_dir() {
        PathBuf::from(&config.model)
    } else {
        oxformer_nn::hub::resolve_model(&config.model).map_err(|error| error.to_string())?
    };
    let pooling = match &config.pooling {
        None => None,
        Some(name) => {
            if dir.join("modules.json").is_file() {
                return Err(format!(
                    "--pooling {name}: {} is a sentence-transformers folder with its own pooling \
                     (modules.json); --pooling is for folders without one",
                    dir.display()
                ));
            }
            Some(worker::Pooling::parse(name)?)
        }
    };
    let task_name = if pooling.is_some() && config.task == "auto" {
        // TEI: a plain model folder with --pooling is an embedding model.
        "feature-extraction".to_string()
    } else if config.task == "auto" {
        auto_task(&dir)
    } else {
        config.task.clone()
    };
    if pooling.is_some() && task_name != "feature-extraction" {
        return Err(format!(
            "--pooling needs the feature-extraction task, not `{task_name}`"
        ));
    }
    let dir_name = dir.to_string_lossy().into_owned();
    let mut pipeline: Pipeline = oxformer_pipelines::pipeline_named(&task_name, &dir_name)
        .map_err(|error| format!("cannot load `{}` for {task_name}: {error}", config.model))?;
    pipeline
        .set_threads(config.threads)
        .map_err(|error| error.to_string())?;
    let tokenizer = Tokenizer::from_folder(&dir).map_err(|error| error.to_string())?;
    let max_input_length = match config.max_input_length {
        // No input can be longer than the model's positions: past them, the limit is those.
        Some(length) => match model_positions(&dir) {
            Some(positions) if length > positions => {
                eprintln!(
                    "oxformer serve: --max-input-length {length} is past the model's \
                     {positions} positions; using {positions}"
                );
                positions
            }
            _ => length,
        },
        None => {
            let model_length = model_max_input_length(&dir)
                .or(tokenizer.model_max_length())
                .unwrap_or(512);
            // TEI: a model longer than a batch is cut to one batch, or refused.
            if model_length > config.max_batch_tokens && !config.auto_truncate {
                return Err(format!(
                    "the model's maximum input length {model_length} exceeds \
                     --max-batch-tokens {}: raise --max-batch-tokens, or set \
                     --max-input-length or --auto-truncate",
                    config.max_batch_tokens
                ));
            }
            model_length.min(config.max_batch_tokens)
        }
    };
    let task = pipeline.task();
    let preparation = pipeline
        .sentence_embeddings()
        .map(|sentence| Arc::new(sentence.preparation().clone()));
    let labels = labels(&dir);
    let model_type = match task {
        Task::SentenceEmbeddings | Task::SentenceSimilarity => {
            serde_json::json!({"embedding": {"pooling": folder_pooling(&dir)}})
        }
        Task::TextClassification => {
            let id2label: serde_json::Map<String, serde_json::Value> = labels
                .iter()
                .enumerate()
                .map(|(id, label)| (id.to_string(), label.clone().into()))
                .collect();
            let label2id: serde_json::Map<String, serde_json::Value> = labels
                .iter()
                .enumerate()
                .map(|(id, label)| (label.clone(), id.into()))
                .collect();
            let kind = if labels.len() == 1 {
                "reranker"
            } else {
                "classifier"
            };
            serde_json::json!({kind: {"id2label": id2label, "label2id": label2id}})
        }
        Task::FeatureExtraction if pooling.is_some() => {
            serde_json::json!({"embedding": {"pooling": pooling.map(worker::Pooling::name)}})
        }
        other => serde_json::json!({"pipeline": {"task": other.name()}}),
    };
    let info = serde_json::json!({
        "model_id": config.model,
        "model_sha": null,
        "model_dtype": "float32",
        "served_model_name": config.model,
        "model_type": model_type,
        "max_concurrent_requests": config.max_concurrent_requests,
        "max_input_length": max_input_length,
        "max_batch_tokens": config.max_batch_tokens,
        "max_batch_requests": null,
        "max_client_batch_size": config.max_client_batch_size,
        "auto_truncate": config.auto_truncate,
        "tokenization_workers": tokenization_workers(),
        "version": env!("CARGO_PKG_VERSION"),
        "sha": null,
        "docker_label": null,
    });
    let info = ModelInfo {
        task,
        pooling,
        task_name,
        model_id: config.model.clone(),
        tokenizer: Arc::new(tokenizer),
        max_input_length,
        labels,
        preparation,
        info,
    };
    let mut models = Models::new(pipeline, dir, config.threads);
    models.pooling = pooling;
    models.max_input_length = Some(max_input_length);
    Ok((models, info))
}

/// Test hook: the model thread waits this many milliseconds before it loads the model, so that
/// a test can see the server answer while loading (tests/lifecycle.rs).
const TEST_LOAD_DELAY_MS: &str = "OXFORMER_SERVE_TEST_LOAD_DELAY_MS";
/// Test hook: an embedding input equal to this text panics on the model thread
/// (tests/lifecycle.rs).
pub(crate) const TEST_PANIC_INPUT: &str = "OXFORMER_SERVE_TEST_PANIC_INPUT";

/// The value of a test hook. The hooks are hidden environment variables, not flags or
/// `ServerConfig` fields, so that they stay out of the public API and `oxformer serve --help`;
/// unset (as everywhere but in the tests that set them) they change nothing.
pub(crate) fn test_hook(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// `Authorization: Bearer KEY` when the server has a key.
async fn require_key(State(state): State<SharedState>, request: Request, next: Next) -> Response {
    if let Some(key) = &state.config.api_key {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        if given != Some(key.as_str()) {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(request).await
}

async fn health(State(state): State<SharedState>) -> Response {
    match state.ready() {
        Ok(_) => axum::http::StatusCode::OK.into_response(),
        Err(error) => error.into_response(),
    }
}

async fn metrics_route(State(state): State<SharedState>) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        "text/plain; version=0.0.4".parse().expect("a valid header"),
    );
    (headers, state.metrics.render()).into_response()
}

/// A panic in a handler (outside the model thread): 500, counted.
fn panic_response(metrics: &Metrics) -> Response {
    metrics.panic();
    metrics.failure("backend");
    ApiError::backend("the request panicked").into_response()
}

/// Starts the model thread (which loads the model), then serves on `listener` until
/// `shutdown` completes; then stops admitting, lets what is in flight finish, stops the model
/// thread and returns.
///
/// # Errors
/// When the model cannot be loaded (the server then stops), or the listener fails.
pub async fn serve(
    config: ServerConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let (sender, receiver) = mpsc::channel::<Job>();
    let metrics = Arc::new(Metrics::default());
    let tokenization =
        tokenization::Tokenization::start(tokenization_workers(), metrics.clone())
            .map_err(|error| format!("cannot start the tokenization threads: {error}"))?;
    let state = Arc::new(AppState {
        config: config.clone(),
        model: OnceLock::new(),
        jobs: sender,
        in_flight: AtomicUsize::new(0),
        accepting: AtomicBool::new(true),
        metrics: metrics.clone(),
        tokenization,
    });
    let (loaded_sender, loaded) = tokio::sync::oneshot::channel::<Result<(), String>>();
    let thread_state = state.clone();
    let model_thread = std::thread::Builder::new()
        .name("oxformer-model".to_string())
        .spawn(move || {
            if let Some(delay) = test_hook(TEST_LOAD_DELAY_MS).and_then(|ms| ms.parse().ok()) {
                std::thread::sleep(std::time::Duration::from_millis(delay));
            }
            let started = Instant::now();
            let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| load(&config)))
                .unwrap_or_else(|_| Err("loading the model panicked".to_string()));
            match loaded {
                Ok((models, info)) => {
                    eprintln!(
                        "oxformer serve: {} loaded as {} in {:.0?}",
                        info.model_id,
                        info.task_name,
                        started.elapsed()
                    );
                    let _ = thread_state.model.set(info);
                    let _ = loaded_sender.send(Ok(()));
                    let max_batch_tokens = thread_state.config.max_batch_tokens;
                    let metrics = thread_state.metrics.clone();
                    drop(thread_state);
                    worker::run(models, receiver, metrics, max_batch_tokens);
                }
                Err(error) => {
                    let _ = loaded_sender.send(Err(error));
                }
            }
        })
        .map_err(|error| format!("cannot start the model thread: {error}"))?;

    let router = router(state.clone());
    let load_failure: Arc<OnceLock<String>> = Arc::new(OnceLock::new());
    let failure = load_failure.clone();
    let shutdown_state = state.clone();
    let stop = async move {
        // Stop on `shutdown`, or when the model cannot be loaded.
        let load_failed = async {
            match loaded.await {
                Ok(Ok(())) => std::future::pending::<()>().await,
                Ok(Err(error)) => {
                    let _ = failure.set(error);
                }
                Err(_) => {
                    let _ = failure.set("the model thread stopped".to_string());
                }
            }
        };
        tokio::select! {
            _ = shutdown => {}
            _ = load_failed => {}
        }
        shutdown_state.accepting.store(false, Ordering::SeqCst);
    };
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(stop)
        .await
        .map_err(|error| error.to_string());
    // Every request is answered: close the channel so the model thread ends.
    drop(state);
    let _ = tokio::task::spawn_blocking(move || model_thread.join()).await;
    if let Some(error) = load_failure.get() {
        return Err(error.clone());
    }
    served
}

/// The routes over a state.
fn router(state: SharedState) -> Router {
    let panic_metrics = state.metrics.clone();
    let guarded = Router::new()
        .route("/info", get(routes::info))
        .route("/embed", post(routes::embed))
        .route("/embed_all", post(routes::embed_all))
        .route("/predict", post(routes::predict))
        .route("/rerank", post(routes::rerank))
        .route("/similarity", post(routes::similarity))
        .route("/tokenize", post(routes::tokenize))
        .route("/decode", post(routes::decode))
        .route("/v1/embeddings", post(routes::openai_embeddings))
        .route("/", post(routes::inference))
        .route("/generate", post(generate::generate))
        .route("/generate_stream", post(generate::generate_stream))
        .route("/v1/completions", post(generate::completions))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_key));
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics_route))
        .merge(guarded)
        .fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                ErrorType::Validation,
                "no such route",
            )
        })
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            move |_: Box<dyn std::any::Any + Send>| panic_response(&panic_metrics),
        ))
        .with_state(state)
}
