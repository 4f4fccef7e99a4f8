//! oxformer-heads: encoder models with their task heads, chosen from `config.json`
//! `architectures`, and sentence-transformers folders.
//!
//! ```
//! # fn main() -> oxformer_heads::Result<()> {
//! use oxformer_heads::{EncoderInput, EncoderModel, HeadOutput, SentenceTransformer};
//! use ndarray::array;
//! let fixtures = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/models"));
//! // The head comes from config.json's `architectures`.
//! let model = EncoderModel::from_folder(&fixtures.join("bert-seqcls-single"))?;
//! let (ids, mask) = (array![[2u32, 40, 41, 3]], array![[1u32, 1, 1, 1]]);
//! let input = EncoderInput::new(ids.view(), mask.view());
//! let HeadOutput::SequenceClassification { logits } = model.forward(&input)? else {
//!     unreachable!("a *ForSequenceClassification checkpoint");
//! };
//! assert_eq!(logits.dim(), (1, 2));
//! // A sentence-transformers folder: transformer, pooling, Dense, Normalize.
//! let sentence = SentenceTransformer::from_folder(&fixtures.join("st-dense-prompts"))?;
//! let embedding = sentence.forward(&input)?.sentence_embedding;
//! assert_eq!(embedding.dim(), (1, sentence.embedding_dimension()));
//! # Ok(()) }
//! ```

mod encoder;
mod error;
mod sentence;

pub use encoder::{EncoderModel, HeadKind, HeadOutput};
pub use error::{Error, Result};
pub use oxformer_models::{EncoderInput, EncoderOutput};
pub use sentence::{Pooling, SentenceOutput, SentenceTransformer, normalize, normalize_rows};
