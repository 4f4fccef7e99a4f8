//! The feature-extraction pipeline, as transformers/pipelines/feature_extraction.py: the last
//! hidden state of the base model of any folder, sentence-transformers folders included (their
//! sentence embeddings are the `sentence-embeddings` task,
//! [`crate::sentence_embeddings`]).

use serde::Serialize;

use oxformer_tokenizer::Side;

use crate::error::{Error, Result};
use crate::model::{HeadNeed, Loaded, RowOutput};
use crate::sentence_embeddings::EmbeddingInput;

const TASK: &str = "feature-extraction";

/// Options of [`FeatureExtractionPipeline::run`].
#[derive(Debug, Clone, Default)]
pub struct FeatureExtractionOptions {
    /// Truncate inputs longer than the model (transformers: `truncation=True`); otherwise an
    /// over-long input is an error.
    pub truncation: bool,
    /// With `truncation`, cut to this many tokens (transformers' tokenizer argument
    /// `max_length`, in `tokenize_kwargs`) instead of the model's length; the model's positions
    /// still bound it. Not used without `truncation`.
    pub max_length: Option<usize>,
    /// 0 (the default): batches of 8 inputs of similar lengths, each text's output with its
    /// own tokens only (what transformers gives one text at a time). `n` > 0: transformers'
    /// `batch_size=n`: `n` consecutive texts padded together, and, as transformers returns
    /// them, each output includes the padded positions of its batch.
    pub batch_size: usize,
}

/// The features of one input: the last hidden state as transformers' pipeline returns it,
/// (1, tokens, hidden).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Features(pub Vec<Vec<Vec<f32>>>);

/// feature-extraction over any encoder folder.
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

    /// The features of each text, in input order.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an empty text or (without truncation) one longer than the
    /// model; model errors.
    pub fn run(&self, texts: &[&str], options: &FeatureExtractionOptions) -> Result<Vec<Features>> {
        let inputs: Vec<EmbeddingInput<'_>> = texts
            .iter()
            .map(|text| EmbeddingInput::Text(text))
            .collect();
        self.run_inputs(&inputs, options, None)
    }

    /// As [`Self::run`] for texts or token ids (special tokens included, the model's input as
    /// given: TEI's token-id inputs), truncating on `side` (`None`: the tokenizer's
    /// `truncation_side`, as [`Self::run`]).
    ///
    /// # Errors
    /// As [`Self::run`]; [`Error::InvalidInput`] for empty token ids or an id the tokenizer
    /// does not know.
    pub fn run_inputs(
        &self,
        inputs: &[EmbeddingInput<'_>],
        options: &FeatureExtractionOptions,
        side: Option<Side>,
    ) -> Result<Vec<Features>> {
        let (truncation, max_length) = (options.truncation, options.max_length);
        let mut features = Vec::with_capacity(inputs.len());
        for input in inputs {
            features.push(match *input {
                EmbeddingInput::Text(text) => {
                    if text.is_empty() {
                        return Err(Error::input(TASK, "empty text"));
                    }
                    self.loaded
                        .encode_single_on(TASK, text, None, truncation, max_length, side)?
                }
                EmbeddingInput::TokenIds(ids) => self
                    .loaded
                    .feature_from_ids(TASK, ids, truncation, max_length, side)?,
            });
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
                RowOutput::Hidden(hidden) => Features(vec![
                    hidden
                        .rows()
                        .into_iter()
                        .map(|token| token.to_vec())
                        .collect(),
                ]),
                _ => unreachable!("base models give hidden states"),
            })
            .collect())
    }
}
