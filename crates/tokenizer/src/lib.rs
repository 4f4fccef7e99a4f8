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
//!
//! A Marian (opus-mt) folder has no tokenizer.json: `from_folder` reads its `source.spm`,
//! `target.spm` and `vocab.json`; `encode` cuts the text with the source model into vocab.json's
//! ids (`… </s>`), `decode` turns generated ids into text with the target model, as
//! `MarianTokenizer` does:
//!
//! ```no_run
//! use oxformer_tokenizer::{EncodeOptions, Tokenizer};
//!
//! let tokenizer = Tokenizer::from_folder("models/opus-mt-en-de")?;
//! let input = tokenizer.encode("Hello, world!", &EncodeOptions::default())?;
//! # let generated: Vec<u32> = input.ids().to_vec();
//! // generated: the decoder's ids, from `<pad>` to `</s>`
//! let translation = tokenizer.decode(&generated, true, None)?;
//! # drop(translation);
//! # Ok::<(), oxformer_tokenizer::TokenizerError>(())
//! ```

mod config;
mod encoding;
mod error;
mod marian;
mod panics;
mod sentencepiece;
mod slow;
mod tokenizer;

pub use config::SpecialTokens;
pub use encoding::{
    EncodeInput, EncodeOptions, Encoding, Padding, Side, Truncation, overflow_to_sample_mapping,
};
pub use error::{Result, TokenizerError};
pub use tokenizer::{MAX_PADDED_LENGTH, ModelKind, Tokenizer, clean_up_tokenization};

/// A `Tokenizer` is shared between threads (pipelines encode from several at once).
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Tokenizer>();
};
