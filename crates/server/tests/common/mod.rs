//! Shared by the server's integration tests: a server on a free loopback port, run in-process
//! on its own runtime, and a blocking HTTP client.

#![allow(dead_code)]

use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use oxformer_pipelines::sentence_embeddings::{EmbeddingInput, SentenceEmbeddingsOptions};
use oxformer_pipelines::{Task, pipeline};
use oxformer_server::{ServerConfig, serve};
use serde_json::Value;

/// A fixture model folder.
pub fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/models")
        .join(name)
        .display()
        .to_string()
}

/// The real all-MiniLM-L6-v2 under `$OXFORMER_CACHE` (or `<workspace>/.cache`), when
/// `cargo xtask fetch` put it there.
pub fn minilm() -> Option<String> {
    let cache = match std::env::var_os("OXFORMER_CACHE") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache"),
    };
    let folder = cache.join("models/sentence-transformers/all-MiniLM-L6-v2");
    if folder.join("config.json").is_file() {
        Some(folder.display().to_string())
    } else {
        eprintln!(
            "skipped: no all-MiniLM-L6-v2 in {} (cargo xtask fetch)",
            cache.display()
        );
        None
    }
}

/// A running server; stopped (gracefully) when dropped.
pub struct Server {
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), String>>>,
    agent: ureq::Agent,
}

/// An answer: status, headers we look at, body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

impl Server {
    /// Starts `config` on 127.0.0.1, on a free port, and waits until `/health` is 200.
    pub fn start(config: ServerConfig) -> Self {
        let server = Self::spawn(config);
        server.wait_ready();
        server
    }

    /// Waits until `/health` is 200.
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.get("/health").status != 200 {
            assert!(Instant::now() < deadline, "the server did not become ready");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts `config` on 127.0.0.1, on a free port, without waiting for the model.
    pub fn spawn(config: ServerConfig) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                serve(config, listener, async {
                    let _ = stopped.await;
                })
                .await
            })
        });
        Self {
            base,
            stop: Some(stop),
            thread: Some(thread),
            agent: agent(),
        }
    }

    /// A server for `model` with the defaults and one model thread.
    pub fn with_model(model: &str) -> Self {
        let mut config = ServerConfig::new(model);
        config.threads = 1;
        Self::start(config)
    }

    pub fn get(&self, path: &str) -> Answer {
        let response = self.agent.get(format!("{}{path}", self.base)).call();
        answer(response)
    }

    pub fn post(&self, path: &str, body: &str) -> Answer {
        self.post_with(path, body, &[])
    }

    pub fn post_json(&self, path: &str, body: &Value) -> Answer {
        self.post(path, &body.to_string())
    }

    pub fn post_with(&self, path: &str, body: &str, headers: &[(&str, &str)]) -> Answer {
        let mut request = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        answer(request.send(body))
    }

    /// Stops the server gracefully and returns what `serve` returned.
    pub fn stop(mut self) -> Result<(), String> {
        self.stop.take().map(|stop| stop.send(()));
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn answer(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
    let mut response = response.expect("an HTTP answer");
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or("").to_string()))
        .collect();
    let body = response.body_mut().read_to_string().unwrap();
    Answer {
        status,
        headers,
        body,
    }
}

/// The `data:` payloads of a server-sent-events body, in order.
pub fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter(|event| !event.trim().is_empty())
        .map(|event| {
            event
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(|data| data.strip_prefix(' ').unwrap_or(data))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect()
}

/// Asserts two lists of vectors agree within `tolerance`, naming the first difference.
pub fn assert_close(actual: &[Vec<f32>], expected: &[Vec<f32>], tolerance: f32) {
    assert_eq!(actual.len(), expected.len(), "number of vectors");
    for (row, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert_eq!(a.len(), e.len(), "length of vector {row}");
        let worst = a
            .iter()
            .zip(e)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(
            worst <= tolerance,
            "vector {row}: max difference {worst} > {tolerance}; first values {:?} vs {:?}",
            &a[..a.len().min(4)],
            &e[..e.len().min(4)]
        );
    }
}

/// JSON as a list of float vectors.
pub fn vectors(value: &Value) -> Vec<Vec<f32>> {
    serde_json::from_value(value.clone()).unwrap_or_else(|error| panic!("{error}: {value}"))
}

/// Asserts two JSON values are equal, numbers within `tolerance` (serde_json's default parser
/// is not exact in the last bit of an f64).
pub fn assert_json_close(actual: &Value, expected: &Value, tolerance: f64) {
    fn walk(actual: &Value, expected: &Value, tolerance: f64, path: &str) {
        match (actual, expected) {
            (Value::Number(a), Value::Number(e)) => {
                let (a, e) = (a.as_f64().unwrap(), e.as_f64().unwrap());
                assert!((a - e).abs() <= tolerance, "{path}: {a} vs {e}");
            }
            (Value::Array(a), Value::Array(e)) => {
                assert_eq!(a.len(), e.len(), "{path}: lengths");
                for (index, (a, e)) in a.iter().zip(e).enumerate() {
                    walk(a, e, tolerance, &format!("{path}[{index}]"));
                }
            }
            (Value::Object(a), Value::Object(e)) => {
                let keys = |m: &serde_json::Map<String, Value>| {
                    let mut keys: Vec<String> = m.keys().cloned().collect();
                    keys.sort();
                    keys
                };
                assert_eq!(keys(a), keys(e), "{path}: keys");
                for (key, a) in a {
                    walk(a, &e[key], tolerance, &format!("{path}.{key}"));
                }
            }
            (a, e) => assert_eq!(a, e, "{path}"),
        }
    }
    walk(actual, expected, tolerance, "");
}

/// What the sentence-embeddings pipeline of `model` gives for `inputs` (texts or token ids),
/// normalized or not.
pub fn pipeline_embeddings(
    model: &str,
    inputs: &[EmbeddingInput<'_>],
    normalize: bool,
) -> Vec<Vec<f32>> {
    let pipeline = pipeline(Task::SentenceEmbeddings, model).unwrap();
    let options = SentenceEmbeddingsOptions {
        normalize_embeddings: normalize,
        ..SentenceEmbeddingsOptions::default()
    };
    pipeline
        .sentence_embeddings()
        .unwrap()
        .run_inputs(inputs, &options, None)
        .unwrap()
}

/// [`pipeline_embeddings`] of texts.
pub fn text_embeddings(model: &str, texts: &[&str], normalize: bool) -> Vec<Vec<f32>> {
    let inputs: Vec<EmbeddingInput<'_>> = texts
        .iter()
        .map(|&text| EmbeddingInput::Text(text))
        .collect();
    pipeline_embeddings(model, &inputs, normalize)
}
