//! oxformer-heads: encoder models with their task heads, chosen from `config.json`
//! `architectures`, and sentence-transformers folders.
//!
//! ```no_run
//! # fn main() -> oxformer_heads::Result<()> {
//! use oxformer_heads::{EncoderInput, EncoderModel, HeadOutput};
//! use ndarray::array;
//! let model = EncoderModel::from_folder(std::path::Path::new("my-bert-sst2"))?;
//! let (ids, mask) = (array![[101u32, 7592, 102]], array![[1u32, 1, 1]]);
//! let input = EncoderInput::new(ids.view(), mask.view());
//! if let HeadOutput::SequenceClassification { logits } = model.forward(&input)? {
//!     println!("{logits}");
//! }
//! # Ok(()) }
//! ```

mod encoder;
mod error;
mod sentence;

pub use encoder::{EncoderModel, HeadKind, HeadOutput};
pub use error::{Error, Result};
pub use oxformer_models::{EncoderInput, EncoderOutput};
pub use sentence::{Pooling, SentenceOutput, SentenceTransformer, normalize_rows};
