//! The one error type of oxformer-heads.

use std::path::PathBuf;

/// Result alias used throughout oxformer-heads.
pub type Result<T> = std::result::Result<T, Error>;

/// What can go wrong while choosing, loading or running a task head.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The config, weights or input of the body (model errors name file, tensor or field).
    #[error(transparent)]
    Model(#[from] oxformer_models::Error),

    /// Loading a head's weights or running one of its layers failed.
    #[error(transparent)]
    Weights(#[from] oxformer_nn::Error),

    /// `architectures` names a class oxformer has no head for.
    #[error(
        "{source_name}: architecture `{architecture}` is not supported; for model_type \
         `{model_type}` oxformer supports {}",
        supported.join(", ")
    )]
    UnknownArchitecture {
        /// The config file.
        source_name: String,
        /// The class named in `architectures`.
        architecture: String,
        /// The config's `model_type`.
        model_type: String,
        /// The classes oxformer implements for that model type.
        supported: Vec<String>,
    },

    /// The head asked for does not exist for this architecture (e.g. a GPT-2 encoder).
    #[error("{model_type} models have no {head} head in oxformer")]
    UnsupportedHead {
        /// The config's `model_type`.
        model_type: String,
        /// The head asked for.
        head: String,
    },

    /// A sentence-transformers folder is malformed or uses a module oxformer lacks.
    #[error("{path}: {reason}")]
    SentenceTransformers {
        /// The file or folder involved.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A thread pool could not be built.
    #[error(transparent)]
    Threads(#[from] oxformer_tensor::Error),
}
