//! The one error type of oxformer-nn.

use std::path::PathBuf;

/// Result alias used throughout oxformer-nn.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong while opening checkpoints, looking up weights,
/// resolving model ids or running a layer.
///
/// Every message names the file, the tensor or the model id involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // --- files and folders -------------------------------------------------
    /// Reading or mapping a file failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// A model folder holds no safetensors weights.
    #[error("no weights in {dir}: expected model.safetensors or model.safetensors.index.json")]
    NoWeights {
        /// The folder that was searched.
        dir: PathBuf,
    },

    /// A model folder holds only PyTorch pickle weights, which oxformer never loads.
    #[error(
        "{file} is a PyTorch pickle checkpoint; oxformer does not load pickle files (they can run \
         arbitrary code). Convert it once with Python: `from transformers import AutoModel; \
         AutoModel.from_pretrained(\"{dir}\").save_pretrained(\"{dir}\", safe_serialization=True)` \
         which writes model.safetensors next to it",
        file = file.display(),
        dir = file.parent().unwrap_or(std::path::Path::new(".")).display()
    )]
    PickleOnly {
        /// The pickle file that was found.
        file: PathBuf,
    },

    // --- the safetensors format --------------------------------------------
    /// The file is not a valid safetensors file as a whole (header length, JSON, data size).
    #[error("{path} is not a valid safetensors file: {reason}")]
    InvalidFile {
        /// The file involved.
        path: PathBuf,
        /// What is wrong, with the numbers involved.
        reason: String,
    },

    /// One entry of the safetensors header is wrong (dtype, shape, offsets).
    #[error("{path}: tensor `{tensor}`: {reason}")]
    InvalidTensorEntry {
        /// The file involved.
        path: PathBuf,
        /// The tensor whose header entry is wrong.
        tensor: String,
        /// What is wrong, with the numbers involved.
        reason: String,
    },

    /// The shard index `model.safetensors.index.json` is malformed or does not match its shards.
    #[error("{path}: {reason}")]
    InvalidShardIndex {
        /// The index file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    // --- looking tensors up ------------------------------------------------
    /// A tensor the model needs is not in the checkpoint.
    #[error(
        "tensor `{name}` not found in {files}{}",
        if suggestions.is_empty() { String::new() } else { format!("; closest names: {}", suggestions.join(", ")) }
    )]
    TensorNotFound {
        /// Full dotted name that was looked up.
        name: String,
        /// The checkpoint file(s) searched.
        files: String,
        /// Names in the checkpoint that look closest to `name`.
        suggestions: Vec<String>,
    },

    /// A tensor exists but its shape is not what the model expects.
    #[error("tensor `{name}` in {file}: expected shape {expected:?}, found {found:?}")]
    ShapeMismatch {
        /// Full dotted name.
        name: String,
        /// The checkpoint file holding it.
        file: PathBuf,
        /// Shape the model asked for.
        expected: Vec<usize>,
        /// Shape stored in the file.
        found: Vec<usize>,
    },

    /// A tensor has a dtype that cannot be turned into f32 weights.
    #[error(
        "tensor `{name}` in {file} has dtype {dtype}, which oxformer cannot use as f32 weights"
    )]
    UnsupportedDtype {
        /// Full dotted name.
        name: String,
        /// The checkpoint file holding it.
        file: PathBuf,
        /// The stored dtype, as written in the header.
        dtype: String,
    },

    /// A tensor was viewed with a number of dimensions it does not have.
    #[error("tensor `{name}` has shape {shape:?}, expected {expected} dimensions")]
    Rank {
        /// Name of the tensor.
        name: String,
        /// Its shape.
        shape: Vec<usize>,
        /// The number of dimensions asked for.
        expected: usize,
    },

    // --- model ids ---------------------------------------------------------
    /// A model id could neither be found as a folder nor in the Hugging Face cache.
    #[error("{}", not_found_message(id, searched))]
    ModelNotFound {
        /// The id or path that was asked for.
        id: String,
        /// Every place that was checked.
        searched: Vec<PathBuf>,
    },

    /// `HF_HUB_OFFLINE` is set and the model is not complete in the local cache.
    #[error(
        "model `{id}` (revision {revision}) is not in the local cache and HF_HUB_OFFLINE is set; \
         looked in: {}. Unset HF_HUB_OFFLINE to download it, or pass a local folder",
        searched.iter().map(|path| path.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    OfflineNotCached {
        /// The model id.
        id: String,
        /// The revision asked for.
        revision: String,
        /// Every place that was checked.
        searched: Vec<PathBuf>,
    },

    /// The hub does not know the model id, the revision or a file of it (HTTP 404), or refuses
    /// access (401/403: private or gated).
    #[error(
        "model `{id}` (revision {revision}): {what} on {endpoint} (HTTP {status}); check the id \
         and revision{}",
        if matches!(status, 401 | 403) { "; a private or gated model needs a token in HF_TOKEN" } else { "" }
    )]
    RemoteNotFound {
        /// The model id.
        id: String,
        /// The revision asked for.
        revision: String,
        /// What was not found (the repository, or one of its files).
        what: String,
        /// The hub's address (`HF_ENDPOINT`).
        endpoint: String,
        /// The HTTP status the hub answered.
        status: u16,
    },

    /// Downloading a model from the hub failed (network, server, disk); nothing incomplete was
    /// left where a later run would take it for complete.
    #[error("model `{id}`: downloading {file} from {endpoint} failed: {reason}")]
    Download {
        /// The model id.
        id: String,
        /// The file of the repository (or the listing) being fetched.
        file: String,
        /// The hub's address (`HF_ENDPOINT`).
        endpoint: String,
        /// What went wrong.
        reason: String,
    },

    /// A model id is malformed, or a cache entry for it is broken.
    #[error("model `{id}`: {reason}")]
    InvalidModelId {
        /// The id or path that was asked for.
        id: String,
        /// What is wrong.
        reason: String,
    },

    // --- layers ------------------------------------------------------------
    /// A layer got an input of the wrong shape, or a part of the wrong size.
    #[error("{layer}: {reason}")]
    Layer {
        /// The layer involved (with the weight prefix when known).
        layer: String,
        /// What is wrong, with the numbers involved.
        reason: String,
    },
}

fn not_found_message(id: &str, searched: &[PathBuf]) -> String {
    let places = searched
        .iter()
        .map(|path| path.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let is_path = id.starts_with(['/', '.', '~']) || id.contains('\\') || id.split('/').count() > 2;
    if is_path {
        format!("model folder `{id}` does not exist")
    } else if cfg!(feature = "hub") {
        format!("model `{id}` not found; looked in: {places}")
    } else {
        format!(
            "model `{id}` not found; looked in: {places}. This build does not download models \
             (oxformer-nn's `hub` feature is off): fetch it with `huggingface-cli download {id}` \
             or pass a local folder"
        )
    }
}
