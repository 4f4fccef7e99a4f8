//! oxformer-tokenizer: HF tokenizer folders with transformers' fast-tokenizer semantics, over the
//! `tokenizers` crate.
//!
//! [`Tokenizer::from_folder`] reads a model folder (`tokenizer.json`, or the slow files `vocab.txt`
//! / `vocab.json` + `merges.txt`, with tokenizer_config.json and special_tokens_map.json);
//! [`Tokenizer::encode`] and [`Tokenizer::encode_batch`] return what `tokenizer(text, ...)` returns
//! in transformers 4.57 (ids, attention mask, token types, special-tokens mask, character offsets,
//! word and sequence ids, overflowing windows); [`Tokenizer::decode`] is `tokenizer.decode`.
//! Parity with transformers is tested on the reference files in `fixtures/tokenizers/reference/`.
//!
//! ```
//! use oxformer_tokenizer::{EncodeOptions, Padding, Tokenizer, Truncation};
//!
//! let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/models/bert-qa");
//! let tokenizer = Tokenizer::from_folder(dir)?;
//! let options = EncodeOptions {
//!     truncation: Truncation::OnlySecond,
//!     max_length: Some(16),
//!     stride: 4,
//!     return_overflowing: true,
//!     padding: Padding::MaxLength,
//!     ..EncodeOptions::default()
//! };
//! let context = "A context long enough to need more than one window of sixteen tokens.";
//! let encoding = tokenizer.encode(("Who wrote it?", context), &options)?;
//! assert!(encoding.windows().count() > 1);
//! for window in encoding.windows() {
//!     assert_eq!(window.ids().len(), 16);
//!     println!("{:?} {:?}", window.ids(), window.offsets());
//! }
//! assert_eq!(tokenizer.decode(&[tokenizer.cls_token_id().unwrap()], false, None)?, "[CLS]");
//! # Ok::<(), oxformer_tokenizer::TokenizerError>(())
//! ```

mod config;
mod encoding;
mod error;
mod slow;
mod tokenizer;

pub use config::SpecialTokens;
pub use encoding::{
    EncodeInput, EncodeOptions, Encoding, Padding, Side, Truncation, overflow_to_sample_mapping,
};
pub use error::{Result, TokenizerError};
pub use tokenizer::{ModelKind, Tokenizer, clean_up_tokenization};

/// A `Tokenizer` is shared between threads (pipelines encode from several at once).
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Tokenizer>();
};
