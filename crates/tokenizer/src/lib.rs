//! oxformer-tokenizer: HF tokenizer folders with transformers' fast-tokenizer semantics, over the
//! `tokenizers` crate.
//!
//! [`Tokenizer::from_folder`] reads a model folder (`tokenizer.json`, or the slow files `vocab.txt`
//! / `vocab.json` + `merges.txt`, or a sentencepiece model: T5's `spiece.model`, XLM-R's
//! `sentencepiece.bpe.model`, Marian's `source.spm` + `target.spm` + `vocab.json`; with
//! tokenizer_config.json and special_tokens_map.json);
//! [`Tokenizer::encode`] and [`Tokenizer::encode_batch`] return what `tokenizer(text, ...)` returns
//! in transformers 4.57 (ids, attention mask, token types, special-tokens mask, character offsets,
//! word and sequence ids, overflowing windows); [`Tokenizer::decode`] is `tokenizer.decode`.
//! Parity with transformers is tested on the reference files in `fixtures/tokenizers/reference/`.
//!
//! ```no_run
//! use oxformer_tokenizer::{EncodeOptions, Padding, Tokenizer, Truncation};
//!
//! let tokenizer = Tokenizer::from_folder("models/distilbert-base-cased-distilled-squad")?;
//! let options = EncodeOptions {
//!     truncation: Truncation::OnlySecond,
//!     max_length: Some(384),
//!     stride: 128,
//!     return_overflowing: true,
//!     padding: Padding::MaxLength,
//!     ..EncodeOptions::default()
//! };
//! let encoding = tokenizer.encode(("Who wrote it?", "A very long context ..."), &options)?;
//! for window in encoding.windows() {
//!     println!("{:?} {:?}", window.ids(), window.offsets());
//! }
//! # Ok::<(), oxformer_tokenizer::TokenizerError>(())
//! ```

mod config;
mod encoding;
mod error;
mod marian;
mod sentencepiece;
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
