//! The one error type of oxformer-models.

use std::path::PathBuf;

/// Result alias used throughout oxformer-models.
pub type Result<T> = std::result::Result<T, Error>;

/// What can go wrong while reading a model's configuration or building the model.
///
/// `source` fields name where a configuration came from (usually the path of `config.json`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// `config.json` is not valid JSON, or not a JSON object.
    #[error("{source_name}: {reason}")]
    ConfigSyntax {
        /// Where the configuration came from.
        source_name: String,
        /// What is wrong, with line and column for JSON syntax errors.
        reason: String,
    },

    /// `model_type` is missing or names an architecture oxformer does not implement.
    #[error(
        "{source_name}: {}; oxformer supports {}",
        match model_type {
            Some(model_type) => format!("unsupported model_type `{model_type}`"),
            None => "no `model_type` field".to_string(),
        },
        supported.join(", ")
    )]
    UnsupportedModelType {
        /// Where the configuration came from.
        source_name: String,
        /// The model type found, if any.
        model_type: Option<String>,
        /// The model types oxformer supports.
        supported: Vec<&'static str>,
    },

    /// A configuration field has the wrong type or an invalid value.
    #[error("{source_name}: field `{field}`: {reason}")]
    ConfigField {
        /// Where the configuration came from.
        source_name: String,
        /// The field (JSON key) involved.
        field: String,
        /// What is wrong and what was expected.
        reason: String,
    },

    /// The input of a forward pass is malformed (shapes, mask, sequence too long, ids).
    #[error("{model}: {reason}")]
    Input {
        /// The model (architecture) that was called.
        model: String,
        /// What is wrong, with the numbers involved.
        reason: String,
    },

    /// The configuration asks for something oxformer does not implement.
    #[error("{model}: {reason}")]
    Unsupported {
        /// The model (architecture) involved.
        model: String,
        /// What is not supported.
        reason: String,
    },

    /// Loading weights failed (missing or mis-shaped tensor, bad file).
    #[error(transparent)]
    Weights(#[from] oxformer_nn::Error),
}
