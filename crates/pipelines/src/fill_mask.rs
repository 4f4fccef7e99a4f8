//! The fill-mask pipeline, as transformers/pipelines/fill_mask.py.

use serde::Serialize;

use oxformer_tokenizer::{EncodeInput, EncodeOptions};

use crate::error::{Error, Result};
use crate::model::{HeadNeed, Loaded, RowOutput};
use crate::text::softmax;

const TASK: &str = "fill-mask";

/// Options of [`FillMaskPipeline::run`].
#[derive(Debug, Clone)]
pub struct FillMaskOptions {
    /// `top_k`: predictions per mask (default 5; capped by the number of targets).
    pub top_k: usize,
    /// `targets`: only score these tokens. A target that is not a vocabulary token is
    /// replaced by the first token of its encoding, as transformers does.
    pub targets: Option<Vec<String>>,
    /// Inputs per forward pass (0: the default, 8).
    pub batch_size: usize,
}

impl Default for FillMaskOptions {
    fn default() -> Self {
        Self {
            top_k: 5,
            targets: None,
            batch_size: 0,
        }
    }
}

/// One prediction for a mask: `{"score", "token", "token_str", "sequence"}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FillMaskPrediction {
    /// Probability of the token at the mask.
    pub score: f64,
    /// Its id.
    pub token: u32,
    /// The token decoded.
    pub token_str: String,
    /// The input with the mask replaced by the token, decoded.
    pub sequence: String,
}

/// The result for one input: a list of predictions for its one mask, or one list per mask.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum FillMaskOutput {
    /// One mask in the input.
    Single(Vec<FillMaskPrediction>),
    /// Several masks: predictions for each, in order.
    Multiple(Vec<Vec<FillMaskPrediction>>),
}

/// fill-mask over a `*ForMaskedLM` model folder.
pub struct FillMaskPipeline {
    loaded: Loaded,
}

impl FillMaskPipeline {
    /// Loads a model folder (or id) with a masked-LM head and its tokenizer.
    ///
    /// # Errors
    /// When the folder cannot be loaded, its head is not masked LM, or its tokenizer has no
    /// mask token.
    pub fn new(model: &str) -> Result<Self> {
        Self::from_loaded(Loaded::load(model, None)?)
    }

    pub(crate) fn from_loaded(loaded: Loaded) -> Result<Self> {
        loaded.expect_head(TASK, HeadNeed::MaskedLm)?;
        if loaded.tokenizer().mask_token_id().is_none() {
            return Err(Error::input(
                TASK,
                "the tokenizer does not define a `mask_token`",
            ));
        }
        Ok(Self { loaded })
    }

    /// The loaded model, tokenizer and threads.
    pub fn model(&mut self) -> &mut Loaded {
        &mut self.loaded
    }

    /// The tokenizer's mask token (`[MASK]`, `<mask>`).
    pub fn mask_token(&self) -> Option<&str> {
        self.loaded.tokenizer().mask_token()
    }

    /// The predictions for each text's masks, in input order.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a text without the mask token or longer than the model;
    /// [`Error::InvalidOption`] for `top_k` 0 or targets none of which can be encoded; model
    /// errors.
    pub fn run(&self, texts: &[&str], options: &FillMaskOptions) -> Result<Vec<FillMaskOutput>> {
        if options.top_k < 1 {
            return Err(Error::option(TASK, "top_k", "must be at least 1"));
        }
        let target_ids = match &options.targets {
            Some(targets) => Some(self.target_ids(targets)?),
            None => None,
        };
        let tokenizer = self.loaded.tokenizer();
        let mask_id = tokenizer.mask_token_id().expect("checked at construction");
        let mut features = Vec::with_capacity(texts.len());
        for text in texts {
            let feature = self.loaded.encode_single(TASK, text, None, false)?;
            if !feature.ids.contains(&mask_id) {
                return Err(Error::input(
                    TASK,
                    format!(
                        "no mask_token ({}) found in the input {text:?}",
                        tokenizer.mask_token().unwrap_or_default()
                    ),
                ));
            }
            features.push(feature);
        }
        let rows = self.loaded.forward(&features, options.batch_size)?;
        let pad_id = tokenizer.pad_token_id();
        let mut results = Vec::with_capacity(texts.len());
        for (feature, row) in features.iter().zip(rows) {
            let RowOutput::TokenLogits(logits) = row else {
                unreachable!("masked LM heads give token logits");
            };
            let masked: Vec<usize> = (0..feature.ids.len())
                .filter(|&index| feature.ids[index] == mask_id)
                .collect();
            let single_mask = masked.len() == 1;
            let mut per_mask = Vec::with_capacity(masked.len());
            for &position in &masked {
                let probs = softmax(logits.row(position).as_slice().expect("contiguous row"));
                // (probability, token id) of the candidates.
                let mut candidates: Vec<(f32, u32)> = match &target_ids {
                    // Ids of added tokens beyond the model's vocabulary cannot be predicted.
                    Some(ids) => ids
                        .iter()
                        .filter_map(|&id| probs.get(id as usize).map(|&p| (p, id)))
                        .collect(),
                    None => probs
                        .iter()
                        .enumerate()
                        .map(|(id, &p)| (p, id as u32))
                        .collect(),
                };
                let top_k = options.top_k.min(candidates.len());
                candidates
                    .sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
                candidates.truncate(top_k);
                let mut predictions = Vec::with_capacity(top_k);
                for (score, token) in candidates {
                    let mut ids = feature.ids.clone();
                    ids[position] = token;
                    ids.retain(|&id| Some(id) != pad_id);
                    predictions.push(FillMaskPrediction {
                        score: f64::from(score),
                        token,
                        token_str: tokenizer.decode(&[token], false, None)?,
                        sequence: tokenizer.decode(&ids, single_mask, None)?,
                    });
                }
                per_mask.push(predictions);
            }
            results.push(if single_mask {
                FillMaskOutput::Single(per_mask.remove(0))
            } else {
                FillMaskOutput::Multiple(per_mask)
            });
        }
        Ok(results)
    }

    /// `get_target_ids`: each target's vocabulary id, or the first id of its encoding; unique.
    fn target_ids(&self, targets: &[String]) -> Result<Vec<u32>> {
        let tokenizer = self.loaded.tokenizer();
        let mut ids = Vec::new();
        for target in targets {
            let id = match tokenizer.token_to_id(target) {
                Some(id) => Some(id),
                None => {
                    // transformers truncates to `max_length=1`; the first token is the same.
                    let options = EncodeOptions {
                        add_special_tokens: false,
                        ..EncodeOptions::default()
                    };
                    let encoding = tokenizer.encode(EncodeInput::Single(target), &options)?;
                    encoding.ids().first().copied()
                }
            };
            match id {
                Some(id) if !ids.contains(&id) => ids.push(id),
                _ => {}
            }
        }
        if ids.is_empty() {
            return Err(Error::option(
                TASK,
                "targets",
                "none of the targets is a token of the model's vocabulary",
            ));
        }
        Ok(ids)
    }
}
