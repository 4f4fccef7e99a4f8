//! The one error type of this crate.

use std::path::PathBuf;

/// `Result` with this crate's [`TokenizerError`].
pub type Result<T> = std::result::Result<T, TokenizerError>;

/// Everything that can go wrong while loading a tokenizer folder, encoding or decoding.
///
/// Grouped by cause: the folder and its files, the options of a call, and failures reported by the
/// `tokenizers` library while it encodes or decodes.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    // ---- the folder and its files ----
    /// The folder holds none of the files a tokenizer can be built from.
    #[error(
        "no tokenizer files in {folder}: looked for tokenizer.json, vocab.txt (WordPiece), \
         vocab.json + merges.txt (byte-level BPE), spiece.model (T5), sentencepiece.bpe.model \
         (XLM-R) and source.spm (Marian)"
    )]
    NoTokenizerFiles {
        /// The folder that was searched.
        folder: PathBuf,
    },
    /// The folder has some of a tokenizer's files but lacks one it needs (a Marian folder without
    /// target.spm, a T5 configuration without spiece.model, ...).
    #[error("{folder} has no {file}: {reason}")]
    MissingTokenizerFile {
        /// The folder.
        folder: PathBuf,
        /// The file it lacks.
        file: String,
        /// Why it is needed.
        reason: String,
    },
    /// A file exists but could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A JSON file (tokenizer_config.json, special_tokens_map.json, ...) is not valid JSON.
    #[error("{path} is not valid JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        source: serde_json::Error,
    },
    /// The `tokenizers` library could not build a tokenizer from a file (tokenizer.json, vocab.txt,
    /// vocab.json, merges.txt).
    #[error("cannot build a tokenizer from {path}: {message}")]
    InvalidTokenizerFile {
        /// The file.
        path: PathBuf,
        /// The library's message.
        message: String,
    },
    /// A field of tokenizer_config.json / special_tokens_map.json has the wrong type or value, or a
    /// special token the configuration names is not in the vocabulary.
    #[error("{path}: field `{field}`: {message}")]
    InvalidConfig {
        /// The file.
        path: PathBuf,
        /// The field.
        field: String,
        /// What was expected.
        message: String,
    },

    // ---- the options of a call ----
    /// The [`EncodeOptions`](crate::EncodeOptions) cannot be honoured by this tokenizer (padding
    /// without a pad token, a stride not below the room left by `max_length`, ...).
    #[error("invalid encode options: {0}")]
    InvalidOptions(String),
    /// A token id that is not in the vocabulary (nor among the added tokens).
    #[error("token id {id} is not in the vocabulary (size {size}, added tokens included)")]
    UnknownTokenId {
        /// The id.
        id: u32,
        /// The size of the vocabulary with the added tokens.
        size: usize,
    },

    // ---- failures inside the tokenizers library ----
    /// Encoding failed inside the `tokenizers` library (for example a truncation strategy that
    /// cannot reach `max_length`: `only_second` with a second sequence too short).
    #[error("encoding failed: {0}")]
    Encode(String),
    /// Decoding failed inside the `tokenizers` library.
    #[error("decoding failed: {0}")]
    Decode(String),
}
