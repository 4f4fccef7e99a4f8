//! Errors of the tensor core.

/// What can go wrong in a kernel call given bad input (shapes are checked by the callers that own
/// them; these are the cases a user's data can reach).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An embedding lookup asked for a row the table does not have.
    #[error("index {index} is out of range for a table of {rows} rows")]
    IndexOutOfRange { index: usize, rows: usize },
    /// A key padding given as transformers' `attention_mask` or as row lengths that is not one.
    #[error("attention mask: {reason}")]
    AttentionMask { reason: String },
    /// A thread pool could not be built.
    #[error("could not build a thread pool of {threads} threads: {reason}")]
    ThreadPool { threads: usize, reason: String },
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
