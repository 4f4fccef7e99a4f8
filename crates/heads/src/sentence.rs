//! [`SentenceTransformer`]: a sentence-transformers folder (`modules.json`): the transformer,
//! its pooling (`1_Pooling/config.json`), optional `Dense` layers and L2 normalisation, as
//! sentence-transformers 5.1 `models/Transformer.py`, `models/Pooling.py`, `models/Dense.py`
//! and `models/Normalize.py`; prompts and limits from `config_sentence_transformers.json` and
//! `sentence_bert_config.json`.

use std::collections::BTreeMap;
use std::path::Path;

use ndarray::{Array2, Array3, ArrayView2, ArrayView3, Axis};
use oxformer_nn::{Linear, Weights};
use oxformer_tensor::Activation;
use serde::Deserialize;

use crate::encoder::{EncoderModel, HeadKind, HeadOutput};
use crate::error::{Error, Result};
use oxformer_models::EncoderInput;

/// One pooling of token embeddings into a sentence embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// `pooling_mode_cls_token`: the first token's embedding.
    Cls,
    /// `pooling_mode_max_tokens`: the element-wise maximum over attended tokens.
    Max,
    /// `pooling_mode_mean_tokens`: the mean over attended tokens.
    Mean,
    /// `pooling_mode_mean_sqrt_len_tokens`: the sum over attended tokens / √count.
    MeanSqrtLen,
    /// `pooling_mode_weightedmean_tokens`: the mean over attended tokens weighted by their
    /// position (1, 2, 3, ...).
    WeightedMean,
    /// `pooling_mode_lasttoken`: the last attended token's embedding.
    LastToken,
}

/// What [`SentenceTransformer::forward`] returns.
///
/// # Shapes
/// `token_embeddings`: (batch, seq, hidden); `sentence_embedding`: (batch, dim), dim being
/// hidden × the number of pooling modes, or the last `Dense` layer's width.
#[derive(Debug, Clone)]
pub struct SentenceOutput {
    /// The transformer's last hidden state (0 at padded positions unless the transformer
    /// computes padding, see [`EncoderModel::set_skip_padding`]).
    pub token_embeddings: Array3<f32>,
    /// The pooled (then `Dense`, then, with a Normalize module, unit-length) embedding of each
    /// sentence.
    pub sentence_embedding: Array2<f32>,
}

/// A `Dense` module: `activation(linear(x))`.
#[derive(Debug)]
struct Dense {
    linear: Linear,
    activation: Activation,
}

/// A sentence-transformers model: Transformer → Pooling → Dense* → (Normalize).
#[derive(Debug)]
pub struct SentenceTransformer {
    transformer: EncoderModel,
    poolings: Vec<Pooling>,
    include_prompt: bool,
    dense: Vec<Dense>,
    normalize: bool,
    max_seq_length: Option<usize>,
    do_lower_case: bool,
    prompts: BTreeMap<String, String>,
    default_prompt_name: Option<String>,
}

#[derive(Deserialize)]
struct ModuleEntry {
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
    #[serde(default = "default_true")]
    include_prompt: bool,
}

fn default_true() -> bool {
    true
}

/// `Dense/config.json`.
#[derive(Deserialize)]
struct DenseConfig {
    in_features: usize,
    out_features: usize,
    #[serde(default = "default_true")]
    bias: bool,
    #[serde(default = "default_dense_activation")]
    activation_function: String,
}

fn default_dense_activation() -> String {
    "torch.nn.modules.activation.Tanh".to_string()
}

/// `sentence_bert_config.json` (the Transformer module's).
#[derive(Deserialize, Default)]
struct TransformerConfig {
    #[serde(default)]
    max_seq_length: Option<usize>,
    #[serde(default)]
    do_lower_case: bool,
}

/// `config_sentence_transformers.json`.
#[derive(Deserialize, Default)]
struct ModelLevelConfig {
    #[serde(default)]
    prompts: BTreeMap<String, String>,
    #[serde(default)]
    default_prompt_name: Option<String>,
}

impl SentenceTransformer {
    /// Whether `dir` is a sentence-transformers folder (it has `modules.json`).
    pub fn is_sentence_transformers(dir: &Path) -> bool {
        dir.join("modules.json").is_file()
    }

    /// Loads the modules listed in `dir/modules.json`: one `Transformer` (an encoder folder,
    /// usually `dir` itself), one `Pooling`, any `Dense` layers and optionally `Normalize`
    /// (whose folder may be absent, as in all-MiniLM-L6-v2), with the prompts of
    /// `config_sentence_transformers.json`.
    ///
    /// # Errors
    /// [`Error::SentenceTransformers`] for a folder without `modules.json`, a malformed
    /// module config, a module type or activation oxformer lacks, or a default prompt name
    /// that names no prompt; the errors of [`EncoderModel::from_folder_as`] for the
    /// transformer and of the weights for a `Dense` layer.
    pub fn from_folder(dir: &Path) -> Result<Self> {
        let modules_path = dir.join("modules.json");
        if !modules_path.is_file() {
            return Err(Error::SentenceTransformers {
                path: modules_path,
                reason: "missing: not a sentence-transformers folder (sentence embeddings need \
                         its modules.json; token embeddings come from feature-extraction)"
                    .to_string(),
            });
        }
        let modules: Vec<ModuleEntry> = read_json(&modules_path)?;
        let mut transformer = None;
        let mut transformer_config = TransformerConfig::default();
        let mut pooling = None;
        let mut dense = Vec::new();
        let mut normalize = false;
        for module in &modules {
            let module_dir = dir.join(&module.path);
            let out_of_order = |what: &str| Error::SentenceTransformers {
                path: modules_path.clone(),
                reason: format!(
                    "module `{}` ({what}) comes before the Transformer and Pooling it follows",
                    module.path
                ),
            };
            match module.kind.as_str() {
                "sentence_transformers.models.Transformer" if transformer.is_none() => {
                    transformer = Some(EncoderModel::from_folder_as(&module_dir, HeadKind::Base)?);
                    let path = module_dir.join("sentence_bert_config.json");
                    if path.is_file() {
                        transformer_config = read_json(&path)?;
                    }
                }
                "sentence_transformers.models.Pooling" if pooling.is_none() => {
                    if transformer.is_none() {
                        return Err(out_of_order("Pooling"));
                    }
                    pooling = Some(read_pooling(&module_dir.join("config.json"))?);
                }
                "sentence_transformers.models.Dense" if !normalize => {
                    if pooling.is_none() {
                        return Err(out_of_order("Dense"));
                    }
                    dense.push(read_dense(&module_dir)?);
                }
                "sentence_transformers.models.Normalize" if !normalize => normalize = true,
                other => {
                    return Err(Error::SentenceTransformers {
                        path: modules_path,
                        reason: format!(
                            "module `{other}` (at `{}`) is not supported here; oxformer runs one \
                             Transformer, one Pooling, Dense layers and Normalize, in that order",
                            module.path
                        ),
                    });
                }
            }
        }
        let missing = |what: &str| Error::SentenceTransformers {
            path: modules_path.clone(),
            reason: format!("no {what} module"),
        };
        let transformer = transformer.ok_or_else(|| missing("Transformer"))?;
        let (poolings, include_prompt) = pooling.ok_or_else(|| missing("Pooling"))?;
        let model_config_path = dir.join("config_sentence_transformers.json");
        let model_config: ModelLevelConfig = if model_config_path.is_file() {
            read_json(&model_config_path)?
        } else {
            ModelLevelConfig::default()
        };
        if let Some(name) = &model_config.default_prompt_name
            && !model_config.prompts.contains_key(name)
        {
            return Err(Error::SentenceTransformers {
                path: model_config_path,
                reason: format!("default_prompt_name `{name}` names none of the prompts"),
            });
        }
        let pooled_width = transformer.config().hidden_size() * poolings.len();
        let mut width = pooled_width;
        for layer in &dense {
            if layer.linear.in_features() != width {
                return Err(Error::SentenceTransformers {
                    path: dir.join(layer.linear.name()),
                    reason: format!(
                        "Dense in_features is {} but the embedding before it has {width} values",
                        layer.linear.in_features()
                    ),
                });
            }
            width = layer.linear.out_features();
        }
        Ok(Self {
            transformer,
            poolings,
            include_prompt,
            dense,
            normalize,
            max_seq_length: transformer_config.max_seq_length,
            do_lower_case: transformer_config.do_lower_case,
            prompts: model_config.prompts,
            default_prompt_name: model_config.default_prompt_name,
        })
    }

    /// The transformer (its config, threads).
    pub fn transformer(&self) -> &EncoderModel {
        &self.transformer
    }

    /// The transformer, to set threads or padding handling.
    pub fn transformer_mut(&mut self) -> &mut EncoderModel {
        &mut self.transformer
    }

    /// The pooling modes, in the order their outputs are concatenated.
    pub fn poolings(&self) -> &[Pooling] {
        &self.poolings
    }

    /// Whether sentence embeddings are L2-normalised.
    pub fn normalizes(&self) -> bool {
        self.normalize
    }

    /// Whether the prompt's tokens are pooled (`include_prompt` of the Pooling config).
    pub fn includes_prompt(&self) -> bool {
        self.include_prompt
    }

    /// The number of `Dense` layers after the pooling.
    pub fn dense_layers(&self) -> usize {
        self.dense.len()
    }

    /// The width of the sentence embedding.
    pub fn embedding_dimension(&self) -> usize {
        self.dense.last().map_or_else(
            || self.transformer.config().hidden_size() * self.poolings.len(),
            |layer| layer.linear.out_features(),
        )
    }

    /// `max_seq_length` of `sentence_bert_config.json`: inputs are cut to it.
    pub fn max_seq_length(&self) -> Option<usize> {
        self.max_seq_length
    }

    /// `do_lower_case` of `sentence_bert_config.json`: texts are lower-cased before tokenizing.
    pub fn do_lower_case(&self) -> bool {
        self.do_lower_case
    }

    /// The prompts of `config_sentence_transformers.json`, by name.
    pub fn prompts(&self) -> &BTreeMap<String, String> {
        &self.prompts
    }

    /// The prompt used when a call names none (`default_prompt_name`).
    pub fn default_prompt_name(&self) -> Option<&str> {
        self.default_prompt_name.as_deref()
    }

    /// Runs forward passes on a pool of `num_threads` threads (0: one per logical CPU).
    ///
    /// # Errors
    /// [`Error::Threads`] when the operating system refuses the threads.
    pub fn set_num_threads(&mut self, num_threads: usize) -> Result<()> {
        self.transformer.set_num_threads(num_threads)
    }

    /// Token and sentence embeddings of a right-padded batch, without a prompt.
    ///
    /// # Shapes
    /// `input`: (batch, seq); see [`SentenceOutput`].
    ///
    /// # Errors
    /// As [`EncoderModel::forward`].
    pub fn forward(&self, input: &EncoderInput<'_>) -> Result<SentenceOutput> {
        self.forward_with_prompt(input, 0)
    }

    /// As [`SentenceTransformer::forward`] for texts that start with a prompt of
    /// `prompt_length` tokens (the first special token included): when the folder's pooling
    /// leaves the prompt out (`include_prompt: false`), those positions are not pooled.
    ///
    /// # Errors
    /// As [`EncoderModel::forward`].
    pub fn forward_with_prompt(
        &self,
        input: &EncoderInput<'_>,
        prompt_length: usize,
    ) -> Result<SentenceOutput> {
        let HeadOutput::Base {
            last_hidden_state, ..
        } = self.transformer.forward(input)?
        else {
            unreachable!("the transformer is loaded with the Base head")
        };
        let mut mask = input.attention_mask.to_owned();
        if !self.include_prompt {
            let cut = prompt_length.min(mask.ncols());
            mask.slice_mut(ndarray::s![.., ..cut]).fill(0);
        }
        let mut sentence_embedding = pool(last_hidden_state.view(), mask.view(), &self.poolings);
        for layer in &self.dense {
            let mut output = layer.linear.forward(sentence_embedding.view())?;
            output.mapv_inplace(|value| layer.activation.apply(value));
            sentence_embedding = output;
        }
        if self.normalize {
            normalize_rows(&mut sentence_embedding);
        }
        Ok(SentenceOutput {
            token_embeddings: last_hidden_state,
            sentence_embedding,
        })
    }
}

/// `torch.nn.functional.normalize(p=2, dim=1, eps=1e-12)` on each row.
pub fn normalize_rows(embeddings: &mut Array2<f32>) {
    for mut row in embeddings.rows_mut() {
        let norm = l2_norm(row.iter());
        row.mapv_inplace(|v| v / norm);
    }
}

/// `torch.nn.functional.normalize(p=2, eps=1e-12)` on one embedding.
pub fn normalize(embedding: &mut [f32]) {
    let norm = l2_norm(embedding.iter());
    embedding.iter_mut().for_each(|v| *v /= norm);
}

/// The L2 norm, at least torch's `eps` (1e-12).
fn l2_norm<'a>(values: impl Iterator<Item = &'a f32>) -> f32 {
    values.map(|v| v * v).sum::<f32>().sqrt().max(1e-12)
}

/// Pooling.py `forward`: each mode over the attended tokens, outputs side by side.
///
/// # Shapes
/// `tokens`: (batch, seq, hidden); `mask`: (batch, seq); result: (batch, hidden · modes).
fn pool(
    tokens: ArrayView3<'_, f32>,
    mask: ArrayView2<'_, u32>,
    poolings: &[Pooling],
) -> Array2<f32> {
    let (batch, seq, hidden) = tokens.dim();
    let mut out = Array2::<f32>::zeros((batch, hidden * poolings.len()));
    for (b, sentence) in tokens.axis_iter(Axis(0)).enumerate() {
        let attended: Vec<usize> = mask
            .row(b)
            .iter()
            .enumerate()
            .filter(|&(_, &m)| m != 0)
            .map(|(t, _)| t)
            .collect();
        for (index, pooling) in poolings.iter().enumerate() {
            let mut target = out.slice_mut(ndarray::s![b, index * hidden..(index + 1) * hidden]);
            match pooling {
                Pooling::Cls => target.assign(&sentence.row(0)),
                Pooling::Max => {
                    // Masked tokens count as -1e9, as Pooling.py sets them.
                    target.fill(if attended.len() < seq {
                        -1e9
                    } else {
                        f32::NEG_INFINITY
                    });
                    for &t in &attended {
                        target.zip_mut_with(&sentence.row(t), |m, &v| *m = m.max(v));
                    }
                }
                Pooling::Mean | Pooling::MeanSqrtLen => {
                    for &t in &attended {
                        target += &sentence.row(t);
                    }
                    // torch.clamp(sum_mask, min=1e-9)
                    let count = (attended.len() as f32).max(1e-9);
                    let divisor = if *pooling == Pooling::Mean {
                        count
                    } else {
                        count.sqrt()
                    };
                    target.mapv_inplace(|v| v / divisor);
                }
                Pooling::WeightedMean => {
                    // Position t (from 0) weighs t + 1.
                    let mut total = 0.0f32;
                    for &t in &attended {
                        let weight = (t + 1) as f32;
                        total += weight;
                        target.zip_mut_with(&sentence.row(t), |sum, &v| *sum += v * weight);
                    }
                    let total = total.max(1e-9);
                    target.mapv_inplace(|v| v / total);
                }
                Pooling::LastToken => {
                    // The last attended position; with none, the last position times its
                    // (zero) mask.
                    match attended.last() {
                        Some(&t) => target.assign(&sentence.row(t)),
                        None => target.fill(0.0),
                    }
                }
            }
        }
    }
    out
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let invalid = |reason: String| Error::SentenceTransformers {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|error| invalid(error.to_string()))?;
    serde_json::from_str(&text).map_err(|error| invalid(format!("malformed: {error}")))
}

/// The pooling modes of a Pooling config, in the order Pooling.py concatenates them, and
/// whether the prompt is pooled.
fn read_pooling(path: &Path) -> Result<(Vec<Pooling>, bool)> {
    let config: PoolingConfig = read_json(path)?;
    let poolings: Vec<Pooling> = [
        (config.pooling_mode_cls_token, Pooling::Cls),
        (config.pooling_mode_max_tokens, Pooling::Max),
        (config.pooling_mode_mean_tokens, Pooling::Mean),
        (
            config.pooling_mode_mean_sqrt_len_tokens,
            Pooling::MeanSqrtLen,
        ),
        (
            config.pooling_mode_weightedmean_tokens,
            Pooling::WeightedMean,
        ),
        (config.pooling_mode_lasttoken, Pooling::LastToken),
    ]
    .into_iter()
    .filter_map(|(on, pooling)| on.then_some(pooling))
    .collect();
    if poolings.is_empty() {
        return Err(Error::SentenceTransformers {
            path: path.to_path_buf(),
            reason: "no pooling mode is enabled".to_string(),
        });
    }
    Ok((poolings, config.include_prompt))
}

/// A Dense module folder: `config.json` and `model.safetensors` (`linear.weight`,
/// `linear.bias`).
fn read_dense(dir: &Path) -> Result<Dense> {
    let config_path = dir.join("config.json");
    let config: DenseConfig = read_json(&config_path)?;
    let activation = match config.activation_function.as_str() {
        "torch.nn.modules.linear.Identity" => Activation::Identity,
        "torch.nn.modules.activation.Tanh" => Activation::Tanh,
        "torch.nn.modules.activation.ReLU" => Activation::Relu,
        "torch.nn.modules.activation.GELU" => Activation::Gelu,
        "torch.nn.modules.activation.SiLU" => Activation::Silu,
        other => {
            return Err(Error::SentenceTransformers {
                path: config_path,
                reason: format!(
                    "activation_function `{other}` is not supported (Identity, Tanh, ReLU, GELU, \
                     SiLU are)"
                ),
            });
        }
    };
    let weights = Weights::from_folder(dir)?;
    let linear = weights.sub("linear");
    let linear = if config.bias {
        Linear::load(&linear, config.in_features, config.out_features)?
    } else {
        Linear::load_without_bias(&linear, config.in_features, config.out_features)?
    };
    Ok(Dense { linear, activation })
}
