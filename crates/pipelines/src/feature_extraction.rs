//! The feature-extraction pipeline, as transformers/pipelines/feature_extraction.py; for
//! sentence-transformers folders, the pooled (and normalised, if the folder says so) sentence
//! embedding, as `SentenceTransformer.encode`.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::model::{HeadNeed, Loaded, RowOutput};

const TASK: &str = "feature-extraction";

/// Options of [`FeatureExtractionPipeline::run`].
#[derive(Debug, Clone, Default)]
pub struct FeatureExtractionOptions {
    /// Truncate inputs longer than the model (transformers: `truncation=True`); otherwise an
    /// over-long input is an error. Sentence-transformers folders always truncate, as
    /// sentence-transformers does.
    pub truncation: bool,
    /// 0 (the default): batches of 8 inputs of similar lengths, each text's output with its
    /// own tokens only (what transformers gives one text at a time). `n` > 0: transformers'
    /// `batch_size=n`: `n` consecutive texts padded together, and, as transformers returns
    /// them, each output includes the padded positions of its batch.
    pub batch_size: usize,
}

/// The features of one input.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Features {
    /// The last hidden state as transformers' pipeline returns it: (1, tokens, hidden).
    Tokens(Vec<Vec<Vec<f32>>>),
    /// A sentence-transformers embedding, (dim,).
    Sentence(Vec<f32>),
}

/// feature-extraction over a base model folder or a sentence-transformers folder.
pub struct FeatureExtractionPipeline {
    loaded: Loaded,
}

impl FeatureExtractionPipeline {
    /// Loads a model folder (or id) and its tokenizer.
    ///
    /// # Errors
    /// When the folder cannot be loaded.
    pub fn new(model: &str) -> Result<Self> {
        Self::from_loaded(Loaded::load(model, Some(oxformer_heads::HeadKind::Base))?)
    }

    pub(crate) fn from_loaded(mut loaded: Loaded) -> Result<Self> {
        loaded.expect_head(TASK, HeadNeed::Base)?;
        // transformers' batches return the hidden states of padded positions too.
        loaded.compute_padding();
        Ok(Self { loaded })
    }

    /// The loaded model, tokenizer and threads.
    pub fn model(&mut self) -> &mut Loaded {
        &mut self.loaded
    }

    /// Whether [`FeatureExtractionPipeline::run`] gives sentence embeddings.
    pub fn gives_sentence_embeddings(&self) -> bool {
        self.loaded.is_sentence_transformers()
    }

    /// The features of each text, in input order.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an empty text or (without truncation) one longer than the
    /// model; model errors.
    pub fn run(&self, texts: &[&str], options: &FeatureExtractionOptions) -> Result<Vec<Features>> {
        let truncation = options.truncation || self.loaded.is_sentence_transformers();
        let mut features = Vec::with_capacity(texts.len());
        for text in texts {
            if text.is_empty() {
                return Err(Error::input(TASK, "empty text"));
            }
            features.push(self.loaded.encode_single(TASK, text, None, truncation)?);
        }
        let rows = if options.batch_size == 0 {
            self.loaded.forward(&features, 0)?
        } else {
            self.loaded
                .forward_in_order_padded(&features, options.batch_size)?
        };
        Ok(rows
            .into_iter()
            .map(|row| match row {
                RowOutput::Hidden(hidden) => Features::Tokens(vec![
                    hidden
                        .rows()
                        .into_iter()
                        .map(|token| token.to_vec())
                        .collect(),
                ]),
                RowOutput::Sentence(embedding) => Features::Sentence(embedding),
                _ => unreachable!("base models give hidden states"),
            })
            .collect())
    }
}
