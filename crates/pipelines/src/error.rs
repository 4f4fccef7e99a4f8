//! The one error type of oxformer-pipelines.

use std::path::PathBuf;

/// Result alias used throughout oxformer-pipelines.
pub type Result<T> = std::result::Result<T, Error>;

/// What can go wrong while building or running a pipeline.
///
/// [`Error::is_user_error`] separates bad input (texts, options, a model path that is not
/// there) from failures of the model files or the machine; the CLI maps them to exit codes 2
/// and 1.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A task name that is not one of [`crate::Task::NAMES`].
    #[error("unknown task `{name}`; known tasks: {}", crate::Task::NAMES.join(", "))]
    UnknownTask {
        /// The name given.
        name: String,
    },

    /// An input the task cannot take: empty text, no mask token, a sequence longer than the
    /// model without truncation, ...
    #[error("{task}: {reason}")]
    InvalidInput {
        /// The task (`fill-mask`, ...).
        task: &'static str,
        /// What is wrong with the input.
        reason: String,
    },

    /// An option with an invalid value, or one the task does not have.
    #[error("{task}: option `{option}`: {reason}")]
    InvalidOption {
        /// The task (`question-answering`, ...).
        task: &'static str,
        /// The option, as transformers names it (`doc_stride`).
        option: &'static str,
        /// What is wrong and what is accepted.
        reason: String,
    },

    /// The model folder holds a model with the wrong head for the task.
    #[error("{task} needs a model with {expected}, but {dir} holds {found}")]
    WrongHead {
        /// The task.
        task: &'static str,
        /// The model folder.
        dir: PathBuf,
        /// The head the task needs (`a *ForQuestionAnswering head`).
        expected: &'static str,
        /// What the folder holds (its `architectures`).
        found: String,
    },

    /// The model folder (or id) could not be found or resolved.
    #[error(transparent)]
    Model(oxformer_nn::Error),

    /// Loading or running the model failed.
    #[error(transparent)]
    Heads(#[from] oxformer_heads::Error),

    /// The configuration is missing or malformed.
    #[error(transparent)]
    Config(#[from] oxformer_models::Error),

    /// A thread pool could not be made.
    #[error(transparent)]
    Tensor(#[from] oxformer_tensor::Error),

    /// Loading the tokenizer or encoding a text failed.
    #[error(transparent)]
    Tokenizer(#[from] oxformer_tokenizer::TokenizerError),
}

impl Error {
    /// Whether the error is the caller's: bad input, a bad option, an unknown task, the wrong
    /// model for the task, or a model that is not there. Everything else (corrupt files, the
    /// operating system) is not.
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::UnknownTask { .. }
            | Self::InvalidInput { .. }
            | Self::InvalidOption { .. }
            | Self::WrongHead { .. } => true,
            // Options the tokenizer cannot honour (a stride too large for the windows) and
            // texts it cannot fit come from the caller's input.
            Self::Tokenizer(error) => matches!(
                error,
                oxformer_tokenizer::TokenizerError::InvalidOptions(_)
                    | oxformer_tokenizer::TokenizerError::Encode(_)
            ),
            // A model's input it cannot take (an empty batch, ids or positions out of range).
            Self::Config(oxformer_models::Error::Input { .. })
            | Self::Heads(oxformer_heads::Error::Model(oxformer_models::Error::Input { .. })) => {
                true
            }
            Self::Model(error) => matches!(
                error,
                oxformer_nn::Error::ModelNotFound { .. }
                    | oxformer_nn::Error::InvalidModelId { .. }
                    | oxformer_nn::Error::OfflineNotCached { .. }
                    | oxformer_nn::Error::RemoteNotFound { .. }
            ),
            _ => false,
        }
    }

    pub(crate) fn input(task: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidInput {
            task,
            reason: reason.into(),
        }
    }

    pub(crate) fn option(
        task: &'static str,
        option: &'static str,
        reason: impl Into<String>,
    ) -> Self {
        Self::InvalidOption {
            task,
            option,
            reason: reason.into(),
        }
    }
}
