//! [`SentenceTransformer`]: a sentence-transformers folder (`modules.json`): the transformer,
//! its pooling (`1_Pooling/config.json`) and optional L2 normalisation, as sentence-transformers
//! 5.1 `models/Transformer.py`, `models/Pooling.py` and `models/Normalize.py`.

use std::path::Path;

use ndarray::{Array2, Array3, ArrayView3, Axis};
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
}

/// What [`SentenceTransformer::forward`] returns.
///
/// # Shapes
/// `token_embeddings`: (batch, seq, hidden); `sentence_embedding`: (batch, dim), dim being
/// hidden × the number of pooling modes.
#[derive(Debug, Clone)]
pub struct SentenceOutput {
    /// The transformer's last hidden state (0 at padded positions unless the transformer
    /// computes padding, see [`EncoderModel::set_skip_padding`]).
    pub token_embeddings: Array3<f32>,
    /// The pooled (and, with a Normalize module, unit-length) embedding of each sentence.
    pub sentence_embedding: Array2<f32>,
}

/// A sentence-transformers model: Transformer → Pooling → (Normalize).
#[derive(Debug)]
pub struct SentenceTransformer {
    transformer: EncoderModel,
    poolings: Vec<Pooling>,
    normalize: bool,
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
}

impl SentenceTransformer {
    /// Whether `dir` is a sentence-transformers folder (it has `modules.json`).
    pub fn is_sentence_transformers(dir: &Path) -> bool {
        dir.join("modules.json").is_file()
    }

    /// Loads the modules listed in `dir/modules.json`: one `Transformer` (an encoder folder,
    /// usually `dir` itself), one `Pooling`, and optionally `Normalize` (whose folder may be
    /// absent, as in all-MiniLM-L6-v2).
    ///
    /// # Errors
    /// [`Error::SentenceTransformers`] for a malformed `modules.json` or pooling config, a
    /// module type or pooling mode oxformer lacks (Dense, weighted mean, last token, ...);
    /// the errors of [`EncoderModel::from_folder_as`] for the transformer.
    pub fn from_folder(dir: &Path) -> Result<Self> {
        let modules_path = dir.join("modules.json");
        let modules: Vec<ModuleEntry> = read_json(&modules_path)?;
        let mut transformer = None;
        let mut poolings = None;
        let mut normalize = false;
        for module in &modules {
            let module_dir = dir.join(&module.path);
            match module.kind.as_str() {
                "sentence_transformers.models.Transformer" if transformer.is_none() => {
                    transformer = Some(EncoderModel::from_folder_as(&module_dir, HeadKind::Base)?);
                }
                "sentence_transformers.models.Pooling" if poolings.is_none() => {
                    poolings = Some(read_pooling(&module_dir.join("config.json"))?);
                }
                "sentence_transformers.models.Normalize" => normalize = true,
                other => {
                    return Err(Error::SentenceTransformers {
                        path: modules_path,
                        reason: format!(
                            "module `{other}` (at `{}`) is not supported; oxformer runs one \
                             Transformer, one Pooling and Normalize",
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
        Ok(Self {
            transformer: transformer.ok_or_else(|| missing("Transformer"))?,
            poolings: poolings.ok_or_else(|| missing("Pooling"))?,
            normalize,
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

    /// Runs forward passes on a pool of `num_threads` threads (0: one per logical CPU).
    ///
    /// # Errors
    /// [`Error::Threads`] when the operating system refuses the threads.
    pub fn set_num_threads(&mut self, num_threads: usize) -> Result<()> {
        self.transformer.set_num_threads(num_threads)
    }

    /// Token and sentence embeddings of a right-padded batch.
    ///
    /// # Shapes
    /// `input`: (batch, seq); see [`SentenceOutput`].
    ///
    /// # Errors
    /// As [`EncoderModel::forward`].
    pub fn forward(&self, input: &EncoderInput<'_>) -> Result<SentenceOutput> {
        let HeadOutput::Base {
            last_hidden_state, ..
        } = self.transformer.forward(input)?
        else {
            unreachable!("the transformer is loaded with the Base head")
        };
        let mut sentence_embedding = pool(
            last_hidden_state.view(),
            input.attention_mask,
            &self.poolings,
        );
        if self.normalize {
            // torch.nn.functional.normalize(p=2, dim=1, eps=1e-12)
            for mut row in sentence_embedding.rows_mut() {
                let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                row.mapv_inplace(|v| v / norm);
            }
        }
        Ok(SentenceOutput {
            token_embeddings: last_hidden_state,
            sentence_embedding,
        })
    }
}

/// Pooling.py `forward`: each mode over the attended tokens, outputs side by side.
///
/// # Shapes
/// `tokens`: (batch, seq, hidden); `mask`: (batch, seq); result: (batch, hidden · modes).
fn pool(
    tokens: ArrayView3<'_, f32>,
    mask: ndarray::ArrayView2<'_, u32>,
    poolings: &[Pooling],
) -> Array2<f32> {
    let (batch, _, hidden) = tokens.dim();
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
                    target.fill(if attended.len() < sentence.nrows() {
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

fn read_pooling(path: &Path) -> Result<Vec<Pooling>> {
    let config: PoolingConfig = read_json(path)?;
    let unsupported = [
        (
            config.pooling_mode_weightedmean_tokens,
            "weightedmean_tokens",
        ),
        (config.pooling_mode_lasttoken, "lasttoken"),
    ];
    if let Some((_, name)) = unsupported.iter().find(|(on, _)| *on) {
        return Err(Error::SentenceTransformers {
            path: path.to_path_buf(),
            reason: format!(
                "pooling_mode_{name} is not supported (cls, mean, max, mean_sqrt_len are)"
            ),
        });
    }
    // Pooling.py concatenates in this order: cls, max, mean, mean_sqrt_len.
    let poolings: Vec<Pooling> = [
        (config.pooling_mode_cls_token, Pooling::Cls),
        (config.pooling_mode_max_tokens, Pooling::Max),
        (config.pooling_mode_mean_tokens, Pooling::Mean),
        (
            config.pooling_mode_mean_sqrt_len_tokens,
            Pooling::MeanSqrtLen,
        ),
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
    Ok(poolings)
}
