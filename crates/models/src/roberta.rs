//! RoBERTa and XLM-RoBERTa, as transformers' `models/roberta/modeling_roberta.py` and
//! `models/xlm_roberta/modeling_xlm_roberta.py` (4.57.6).
//!
//! Both are BERT's encoder and pooler (`bert.rs`) behind embeddings whose position ids start at
//! `padding_idx + 1` and skip padding; XLM-R is the same code with its own config.

use ndarray::Array2;
use oxformer_nn::Weights;

use crate::bert::{BertEmbeddings, BertEncoder, BertPooler, check_supported, run_encoder};
use crate::config::BertConfig;
use crate::error::{Error, Result};
use crate::input::{EncoderInput, EncoderOutput, ForwardOptions, TokenLayout};

/// modeling_roberta.py `RobertaEmbeddings`: BERT's embeddings with fairseq's position ids.
#[derive(Debug, Clone)]
pub struct RobertaEmbeddings {
    inner: BertEmbeddings,
    padding_idx: u32,
}

impl RobertaEmbeddings {
    /// Loads the same tensors as [`BertEmbeddings`]; `padding_idx` is `pad_token_id`.
    ///
    /// # Errors
    /// [`Error::ConfigField`] when `pad_token_id` is null; a missing or mis-shaped tensor.
    pub fn load(weights: &Weights, config: &BertConfig) -> Result<Self> {
        let padding_idx = config
            .common
            .pad_token_id
            .ok_or_else(|| Error::ConfigField {
                source_name: "config.json".to_string(),
                field: "pad_token_id".to_string(),
                reason: "RoBERTa's position ids need a pad_token_id".to_string(),
            })?;
        Ok(Self {
            inner: BertEmbeddings::load(weights, config)?,
            padding_idx,
        })
    }

    /// The inner BERT embeddings (word table for tied heads).
    pub fn bert_embeddings(&self) -> &BertEmbeddings {
        &self.inner
    }

    /// modeling_roberta.py `create_position_ids_from_input_ids`: real tokens are numbered
    /// `padding_idx + 1, padding_idx + 2, …`; padding tokens get `padding_idx`.
    ///
    /// # Shapes
    /// `input.input_ids`: (batch, seq); result: (batch, seq).
    pub fn position_ids(&self, input: &EncoderInput<'_>) -> Array2<u32> {
        let mut positions = Array2::<u32>::zeros(input.input_ids.dim());
        for (ids, mut out) in input.input_ids.rows().into_iter().zip(positions.rows_mut()) {
            let mut count = 0;
            for (&id, position) in ids.iter().zip(out.iter_mut()) {
                if id != self.padding_idx {
                    count += 1;
                    *position = count + self.padding_idx;
                } else {
                    *position = self.padding_idx;
                }
            }
        }
        positions
    }

    /// # Shapes
    /// `input`: (batch, seq); result: (batch · seq, hidden).
    ///
    /// # Errors
    /// An id or token type beyond its table.
    pub fn forward(&self, input: &EncoderInput<'_>) -> Result<Array2<f32>> {
        let positions = self.position_ids(input);
        self.inner.forward(input, positions.view())
    }
}

/// modeling_roberta.py `RobertaModel` (and `XLMRobertaModel`): embeddings, BERT's encoder and
/// pooler.
#[derive(Debug, Clone)]
pub struct RobertaModel {
    config: BertConfig,
    embeddings: RobertaEmbeddings,
    encoder: BertEncoder,
    pooler: Option<BertPooler>,
}

/// XLM-RoBERTa is RoBERTa's code with its own config (modeling_xlm_roberta.py is a copy).
pub type XlmRobertaModel = RobertaModel;

impl RobertaModel {
    /// Loads a RoBERTa body from the checkpoint root: under `roberta.` (task models, XLM-R's
    /// too) or at the root (base checkpoints). With `add_pooling_layer` the pooler must be there.
    ///
    /// # Errors
    /// As [`crate::bert::BertModel::load`].
    pub fn load(weights: &Weights, config: &BertConfig, add_pooling_layer: bool) -> Result<Self> {
        check_supported(config, "RobertaModel")?;
        let weights = weights.sub_if_present("roberta");
        Ok(Self {
            config: config.clone(),
            embeddings: RobertaEmbeddings::load(&weights.sub("embeddings"), config)?,
            encoder: BertEncoder::load(&weights.sub("encoder"), config)?,
            pooler: add_pooling_layer
                .then(|| BertPooler::load(&weights.sub("pooler"), config))
                .transpose()?,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// The embeddings.
    pub fn embeddings(&self) -> &RobertaEmbeddings {
        &self.embeddings
    }

    /// Whether the pooler was loaded.
    pub fn has_pooler(&self) -> bool {
        self.pooler.is_some()
    }

    /// The longest sequence: positions run up to `seq + padding_idx`, which must be below
    /// `max_position_embeddings` (514 positions give 512 tokens).
    pub fn max_sequence_length(&self) -> usize {
        self.config
            .max_position_embeddings
            .saturating_sub(self.embeddings.padding_idx as usize + 1)
    }

    /// Runs the model; `output_hidden_states` also returns every layer's output.
    ///
    /// # Shapes
    /// `input`: (batch, seq); see [`EncoderOutput`].
    ///
    /// # Errors
    /// As [`crate::bert::BertModel::forward`], the length limit being
    /// [`RobertaModel::max_sequence_length`].
    pub fn forward(
        &self,
        input: &EncoderInput<'_>,
        options: &ForwardOptions,
    ) -> Result<EncoderOutput> {
        let ForwardOptions {
            output_hidden_states,
            skip_padding,
        } = *options;
        input.validate("RobertaModel", self.max_sequence_length())?;
        let layout = TokenLayout::new(input, skip_padding);
        let positions = self.embeddings.position_ids(input);
        let hidden = self
            .embeddings
            .inner
            .forward_rows(input, positions.view(), &layout)?;
        run_encoder(
            &self.encoder,
            self.pooler.as_ref(),
            hidden,
            input,
            &layout,
            output_hidden_states,
        )
    }
}
