//! `oxformer serve`: the HTTP server of oxformer-server (TEI, HF Inference, TGI and OpenAI
//! routes) over one model, until SIGTERM or Ctrl-C; then it stops admitting, finishes what is
//! in flight and exits 0.

use anyhow::{Context, Result};
use oxformer_server::{ServerConfig, serve};

/// `oxformer serve`'s flags.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Model folder, or a Hugging Face hub id (`org/name`).
    #[arg(long)]
    pub model: String,
    /// `auto` (sentence-transformers → sentence-embeddings, a classifier →
    /// text-classification, a generator → text-generation, ...) or a pipeline task.
    #[arg(long, default_value = "auto")]
    pub task: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port, printed on stderr).
    #[arg(long, default_value_t = 3000)]
    pub port: u16,
    /// Real tokens per embedding batch, across clients.
    #[arg(long, default_value_t = 16384)]
    pub max_batch_tokens: usize,
    /// Inputs in flight at once; past it, 429 Overloaded.
    #[arg(long, default_value_t = 512)]
    pub max_concurrent_requests: usize,
    /// Inputs per request.
    #[arg(long, default_value_t = 32)]
    pub max_client_batch_size: usize,
    /// Tokens per input, also what truncation cuts to (default, as TEI: the
    /// sentence-transformers max_seq_length, else the model's position embeddings, at most
    /// --max-batch-tokens); never more than the model's position embeddings.
    #[arg(long)]
    pub max_input_length: Option<usize>,
    /// Truncate over-long inputs instead of refusing them (422).
    #[arg(long)]
    pub auto_truncate: bool,
    /// Request body bytes; larger bodies get 413.
    #[arg(long, default_value_t = 2_000_000)]
    pub payload_limit: usize,
    /// Model threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Require `Authorization: Bearer KEY` (except on /health and /metrics).
    #[arg(long)]
    pub api_key: Option<String>,
    /// For a folder without a sentence-transformers pooling (a plain BERT...): serve /embed
    /// with this pooling of the last hidden state: cls, mean or last-token (as TEI).
    #[arg(long)]
    pub pooling: Option<String>,
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
    eprintln!("oxformer serve: stopping: finishing the requests in flight");
}

/// Runs the server until a signal.
pub fn run(args: &ServeArgs) -> Result<()> {
    let config = ServerConfig {
        model: args.model.clone(),
        task: args.task.clone(),
        max_batch_tokens: args.max_batch_tokens,
        max_concurrent_requests: args.max_concurrent_requests,
        max_client_batch_size: args.max_client_batch_size,
        max_input_length: args.max_input_length,
        auto_truncate: args.auto_truncate,
        payload_limit: args.payload_limit,
        threads: args.threads.unwrap_or(0),
        api_key: args.api_key.clone(),
        pooling: args.pooling.clone(),
    };
    // The runtime only moves bytes: two threads are plenty; the model has its own.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let address = format!("{}:{}", args.host, args.port);
        let listener = tokio::net::TcpListener::bind(&address)
            .await
            .with_context(|| format!("cannot listen on {address}"))?;
        let local = listener.local_addr().context("no local address")?;
        eprintln!("oxformer serve: listening on http://{local}");
        serve(config, listener, shutdown_signal())
            .await
            .map_err(|error| anyhow::anyhow!(error))
    })
}
