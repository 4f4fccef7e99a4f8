//! [`EncoderModel`]: an encoder body (BERT, RoBERTa, XLM-R, DistilBERT) and its task head.
//!
//! Each head mirrors its transformers class (4.57.6): `BertForSequenceClassification` (pooler +
//! `classifier`), `RobertaClassificationHead` (`dense` + tanh + `out_proj` on `<s>`),
//! `DistilBertForSequenceClassification` (`pre_classifier` + ReLU + `classifier`),
//! `*ForTokenClassification` (`classifier` per token), `*ForQuestionAnswering` (`qa_outputs`
//! split into start and end), and the masked-LM heads with the decoder tied to the word
//! embeddings (`BertOnlyMLMHead`, `RobertaLMHead`, DistilBERT's `vocab_*`).

use std::path::Path;

use ndarray::{Array2, Array3, ArrayView2, Axis, CowArray, Ix2, s};
use oxformer_models::bert::BertModel;
use oxformer_models::distilbert::DistilBertModel;
use oxformer_models::roberta::RobertaModel;
use oxformer_models::{DistilBertConfig, EncoderInput, EncoderOutput, ForwardOptions, ModelConfig};
use oxformer_nn::{Embedding, LayerNorm, Linear, Weights};
use oxformer_tensor::{Activation, ThreadPool};

use crate::error::{Error, Result};

/// Which task head sits on the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeadKind {
    /// No head: hidden states (and BERT's pooler output).
    Base,
    /// `*ForSequenceClassification`: one row of logits per sequence.
    SequenceClassification,
    /// `*ForTokenClassification`: logits per token.
    TokenClassification,
    /// `*ForQuestionAnswering`: start and end logits per token.
    QuestionAnswering,
    /// `*ForMaskedLM`: vocabulary logits per token.
    MaskedLm,
}

impl HeadKind {
    /// Every head, in the order used in messages.
    pub const ALL: [HeadKind; 5] = [
        HeadKind::Base,
        HeadKind::SequenceClassification,
        HeadKind::TokenClassification,
        HeadKind::QuestionAnswering,
        HeadKind::MaskedLm,
    ];

    /// The class-name suffix transformers uses (`ForSequenceClassification`, `Model` for Base).
    pub fn class_suffix(self) -> &'static str {
        match self {
            HeadKind::Base => "Model",
            HeadKind::SequenceClassification => "ForSequenceClassification",
            HeadKind::TokenClassification => "ForTokenClassification",
            HeadKind::QuestionAnswering => "ForQuestionAnswering",
            HeadKind::MaskedLm => "ForMaskedLM",
        }
    }

    /// The head of a transformers class name of the given `model_type`
    /// (`BertForMaskedLM` → MaskedLm for `bert`); `None` when oxformer has no such class.
    pub fn from_architecture(model_type: &str, architecture: &str) -> Option<Self> {
        let prefix = class_prefix(model_type)?;
        if model_type == "bert" && architecture == "BertForPreTraining" {
            // Its `cls.predictions` is the masked-LM head (the NSP part is not used).
            return Some(HeadKind::MaskedLm);
        }
        let suffix = architecture.strip_prefix(prefix)?;
        Self::ALL
            .into_iter()
            .find(|head| head.class_suffix() == suffix)
    }
}

/// transformers' class-name prefix of a model type.
fn class_prefix(model_type: &str) -> Option<&'static str> {
    match model_type {
        "bert" => Some("Bert"),
        "roberta" => Some("Roberta"),
        "xlm-roberta" => Some("XLMRoberta"),
        "distilbert" => Some("DistilBert"),
        _ => None,
    }
}

/// What [`EncoderModel::forward`] returns, by head.
///
/// Per-token outputs at padded positions are 0 unless padding is computed
/// ([`EncoderModel::set_skip_padding`]); slice each row to its length.
///
/// # Shapes
/// As in each variant; `batch` and `seq` are the input's.
#[derive(Debug, Clone)]
pub enum HeadOutput {
    /// The body's outputs.
    Base {
        /// (batch, seq, hidden).
        last_hidden_state: Array3<f32>,
        /// (batch, hidden), for BERT-like models whose checkpoint has a pooler.
        pooler_output: Option<Array2<f32>>,
    },
    /// (batch, num_labels). Raw scores: `problem_type` in the config says whether a softmax,
    /// a sigmoid or nothing applies.
    SequenceClassification {
        /// Raw scores.
        logits: Array2<f32>,
    },
    /// (batch, seq, num_labels).
    TokenClassification {
        /// Raw scores.
        logits: Array3<f32>,
    },
    /// (batch, seq) each.
    QuestionAnswering {
        /// Score of each token starting the answer.
        start_logits: Array2<f32>,
        /// Score of each token ending the answer.
        end_logits: Array2<f32>,
    },
    /// (batch, seq, vocab).
    MaskedLm {
        /// Raw scores over the vocabulary.
        logits: Array3<f32>,
    },
}

/// The encoder bodies.
#[derive(Debug, Clone)]
enum Body {
    Bert(BertModel),
    Roberta(RobertaModel),
    DistilBert(DistilBertModel),
}

impl Body {
    fn forward(&self, input: &EncoderInput<'_>, skip_padding: bool) -> Result<EncoderOutput> {
        Ok(match self {
            Body::Bert(model) => model.forward(
                input,
                &ForwardOptions {
                    output_hidden_states: false,
                    skip_padding,
                },
            )?,
            Body::Roberta(model) => model.forward(
                input,
                &ForwardOptions {
                    output_hidden_states: false,
                    skip_padding,
                },
            )?,
            Body::DistilBert(model) => model.forward(
                input,
                &ForwardOptions {
                    output_hidden_states: false,
                    skip_padding,
                },
            )?,
        })
    }

    fn max_sequence_length(&self) -> usize {
        match self {
            Body::Bert(model) => model.config().max_position_embeddings,
            Body::Roberta(model) => model.max_sequence_length(),
            Body::DistilBert(model) => model.config().max_position_embeddings,
        }
    }

    fn word_embeddings(&self) -> &Embedding {
        match self {
            Body::Bert(model) => model.embeddings().word_embeddings(),
            Body::Roberta(model) => model.embeddings().bert_embeddings().word_embeddings(),
            Body::DistilBert(model) => model.embeddings().word_embeddings(),
        }
    }
}

/// The task heads, each with the tensors of its transformers class.
#[derive(Debug, Clone)]
enum Head {
    Base,
    /// BertForSequenceClassification: `classifier(pooler_output)`.
    BertSequence {
        classifier: Linear,
    },
    /// RobertaClassificationHead: `out_proj(tanh(dense(h[:, 0])))`.
    RobertaSequence {
        dense: Linear,
        out_proj: Linear,
    },
    /// DistilBertForSequenceClassification: `classifier(relu(pre_classifier(h[:, 0])))`.
    DistilBertSequence {
        pre_classifier: Linear,
        classifier: Linear,
    },
    /// `*ForTokenClassification`: `classifier(h)`.
    Token {
        classifier: Linear,
    },
    /// `*ForQuestionAnswering`: `qa_outputs(h)` split into start and end.
    QuestionAnswering {
        qa_outputs: Linear,
    },
    /// Masked LM: `decoder(norm(activation(dense(h))))`, the decoder tied to the word embeddings.
    MaskedLm {
        dense: Linear,
        activation: Activation,
        layer_norm: LayerNorm,
        decoder: Linear,
    },
}

/// An encoder with its task head, loaded from a model folder.
///
/// Forward passes run on the calling thread's rayon pool, or on the model's own pool after
/// [`EncoderModel::set_num_threads`].
///
/// By default no work is spent on padding: in a batch with padded positions (mask 0), every
/// token-wise computation runs on the real tokens only and only attention sees the sequence
/// boundaries. Real positions come out as transformers computes them; per-token outputs at padded
/// positions are 0 (transformers computes values there that nothing should use). With
/// [`EncoderModel::set_skip_padding`]`(false)` padded positions are computed too and every output
/// matches transformers'.
#[derive(Debug)]
pub struct EncoderModel {
    config: ModelConfig,
    head_kind: HeadKind,
    body: Body,
    head: Head,
    pool: Option<ThreadPool>,
    skip_padding: bool,
}

impl EncoderModel {
    /// Loads `dir` (config.json + safetensors) with the head its `architectures` names (the
    /// first entry; none means [`HeadKind::Base`]).
    ///
    /// # Errors
    /// [`Error::UnknownArchitecture`] for a class oxformer lacks; config and weight errors
    /// naming the file, field or full tensor path.
    pub fn from_folder(dir: &Path) -> Result<Self> {
        let config = ModelConfig::from_folder(dir)?;
        let head = head_from_config(&config, &dir.join("config.json"))?;
        Self::load(dir, config, head)
    }

    /// Loads `dir` with the given head, whatever `architectures` says (e.g. [`HeadKind::Base`]
    /// for the hidden states of a fine-tuned model).
    ///
    /// # Errors
    /// [`Error::UnsupportedHead`] for a non-encoder config; as [`EncoderModel::from_folder`].
    pub fn from_folder_as(dir: &Path, head: HeadKind) -> Result<Self> {
        let config = ModelConfig::from_folder(dir)?;
        Self::load(dir, config, head)
    }

    fn load(dir: &Path, config: ModelConfig, head_kind: HeadKind) -> Result<Self> {
        let mut weights = Weights::from_folder(dir)?;
        let (body, head) = load_body_and_head(&mut weights, &config, head_kind)?;
        Ok(Self {
            config,
            head_kind,
            body,
            head,
            pool: None,
            skip_padding: true,
        })
    }

    /// The model's config (labels, `problem_type`, special token ids, ...).
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The head in use.
    pub fn head(&self) -> HeadKind {
        self.head_kind
    }

    /// The longest sequence [`EncoderModel::forward`] accepts: `max_position_embeddings`, less
    /// RoBERTa's and XLM-R's position offset (`padding_idx + 1`; 514 positions give 512 tokens).
    pub fn max_sequence_length(&self) -> usize {
        self.body.max_sequence_length()
    }

    /// Runs forward passes on a pool of `num_threads` threads (0: one per logical CPU).
    ///
    /// # Errors
    /// [`Error::Threads`] when the operating system refuses the threads.
    pub fn set_num_threads(&mut self, num_threads: usize) -> Result<()> {
        self.pool = Some(ThreadPool::new(num_threads)?);
        Ok(())
    }

    /// Whether padded positions are skipped (the default) or computed as transformers does.
    pub fn set_skip_padding(&mut self, skip_padding: bool) {
        self.skip_padding = skip_padding;
    }

    /// See [`EncoderModel::set_skip_padding`].
    pub fn skips_padding(&self) -> bool {
        self.skip_padding
    }

    /// Body and head on a right-padded batch.
    ///
    /// # Shapes
    /// `input`: (batch, seq); see [`HeadOutput`].
    ///
    /// # Errors
    /// Mismatched shapes, a bad attention mask, sequences longer than the model's positions,
    /// ids or token types beyond their tables: each an error saying which.
    pub fn forward(&self, input: &EncoderInput<'_>) -> Result<HeadOutput> {
        match &self.pool {
            Some(pool) => pool.install(|| self.forward_here(input)),
            None => self.forward_here(input),
        }
    }

    fn forward_here(&self, input: &EncoderInput<'_>) -> Result<HeadOutput> {
        let output = self.body.forward(input, self.skip_padding)?;
        if let Head::Base = self.head {
            return Ok(HeadOutput::Base {
                last_hidden_state: output.last_hidden_state,
                pooler_output: output.pooler_output,
            });
        }
        let hidden = output.last_hidden_state;
        let (batch, seq, hidden_size) = hidden.dim();
        // Per-token heads run on the real tokens only when padding is skipped.
        let real_tokens: Option<Vec<(usize, usize)>> = (self.skip_padding
            && input.attention_mask.iter().any(|&value| value == 0))
        .then(|| {
            input
                .attention_mask
                .indexed_iter()
                .filter(|&(_, &value)| value != 0)
                .map(|(position, _)| position)
                .collect()
        });
        let tokens: CowArray<'_, f32, Ix2> = match &real_tokens {
            Some(positions) => {
                let mut rows = Array2::<f32>::zeros((positions.len(), hidden_size));
                for (mut row, &(b, t)) in rows.rows_mut().into_iter().zip(positions) {
                    row.assign(&hidden.slice(s![b, t, ..]));
                }
                rows.into()
            }
            None => hidden
                .view()
                .into_shape_with_order((batch * seq, hidden_size))
                .expect("hidden states are contiguous")
                .into(),
        };
        let tokens = tokens.view();
        let first = hidden.slice(s![.., 0, ..]);
        // (rows, width) → (batch, seq, width), zeros where padding was skipped.
        let per_token = |logits: Array2<f32>| {
            let width = logits.ncols();
            match &real_tokens {
                Some(positions) => {
                    let mut out = Array3::<f32>::zeros((batch, seq, width));
                    for (row, &(b, t)) in logits.rows().into_iter().zip(positions) {
                        out.slice_mut(s![b, t, ..]).assign(&row);
                    }
                    out
                }
                None => logits
                    .into_shape_with_order((batch, seq, width))
                    .expect("logits are contiguous"),
            }
        };
        Ok(match &self.head {
            Head::Base => unreachable!("returned above"),
            Head::BertSequence { classifier } => {
                let pooled = output
                    .pooler_output
                    .expect("sequence classification loads the pooler");
                HeadOutput::SequenceClassification {
                    logits: classifier.forward(pooled.view())?,
                }
            }
            Head::RobertaSequence { dense, out_proj } => {
                let x = dense.forward_with(first, Activation::Tanh, None)?;
                HeadOutput::SequenceClassification {
                    logits: out_proj.forward(x.view())?,
                }
            }
            Head::DistilBertSequence {
                pre_classifier,
                classifier,
            } => {
                let x = pre_classifier.forward_with(first, Activation::Relu, None)?;
                HeadOutput::SequenceClassification {
                    logits: classifier.forward(x.view())?,
                }
            }
            Head::Token { classifier } => HeadOutput::TokenClassification {
                logits: per_token(classifier.forward(tokens)?),
            },
            Head::QuestionAnswering { qa_outputs } => {
                let both = per_token(qa_outputs.forward(tokens)?); // (batch, seq, 2)
                HeadOutput::QuestionAnswering {
                    start_logits: both.index_axis(Axis(2), 0).to_owned(),
                    end_logits: both.index_axis(Axis(2), 1).to_owned(),
                }
            }
            Head::MaskedLm {
                dense,
                activation,
                layer_norm,
                decoder,
            } => {
                let mut x = dense.forward_with(tokens, *activation, None)?;
                layer_norm.forward_in_place(x.view_mut(), None)?;
                HeadOutput::MaskedLm {
                    logits: per_token(decoder.forward(x.view())?),
                }
            }
        })
    }
}

/// The head `architectures` names (first entry), checked against `model_type`.
fn head_from_config(config: &ModelConfig, path: &Path) -> Result<HeadKind> {
    let model_type = config.model_type();
    if class_prefix(model_type).is_none() {
        return Err(Error::UnsupportedHead {
            model_type: model_type.to_string(),
            head: "encoder".to_string(),
        });
    }
    let Some(architecture) = config.common().architectures.first() else {
        return Ok(HeadKind::Base);
    };
    HeadKind::from_architecture(model_type, architecture).ok_or_else(|| {
        let prefix = class_prefix(model_type).unwrap_or_default();
        let supported = HeadKind::ALL
            .iter()
            .map(|head| format!("{prefix}{}", head.class_suffix()))
            .collect();
        Error::UnknownArchitecture {
            source_name: path.display().to_string(),
            architecture: architecture.clone(),
            model_type: model_type.to_string(),
            supported,
        }
    })
}

/// The body (with BERT's pooler where the head uses it) and the head's layers.
fn load_body_and_head(
    weights: &mut Weights,
    config: &ModelConfig,
    head_kind: HeadKind,
) -> Result<(Body, Head)> {
    let num_labels = config.common().num_labels();
    let hidden = config.hidden_size();
    // The body's prefix inside task checkpoints, and the word table a tied decoder reads.
    let body_prefix = match config {
        ModelConfig::Bert(_) => "bert",
        ModelConfig::Roberta(_) | ModelConfig::XlmRoberta(_) => "roberta",
        ModelConfig::DistilBert(_) => "distilbert",
        ModelConfig::Gpt2(_)
        | ModelConfig::T5(_)
        | ModelConfig::Bart(_)
        | ModelConfig::Marian(_) => {
            return Err(Error::UnsupportedHead {
                model_type: config.model_type().to_string(),
                head: format!("{head_kind:?}"),
            });
        }
    };
    let word_table = weights
        .sub_if_present(body_prefix)
        .full_name("embeddings.word_embeddings.weight");
    let body = match config {
        ModelConfig::Bert(bert) => {
            let pooler = match head_kind {
                HeadKind::SequenceClassification => true,
                HeadKind::Base => weights.sub_if_present("bert").has_sub("pooler"),
                _ => false,
            };
            Body::Bert(BertModel::load(weights, bert, pooler)?)
        }
        ModelConfig::Roberta(roberta) | ModelConfig::XlmRoberta(roberta) => {
            let pooler =
                head_kind == HeadKind::Base && weights.sub_if_present("roberta").has_sub("pooler");
            Body::Roberta(RobertaModel::load(weights, roberta, pooler)?)
        }
        ModelConfig::DistilBert(distilbert) => {
            Body::DistilBert(DistilBertModel::load(weights, distilbert)?)
        }
        ModelConfig::Gpt2(_)
        | ModelConfig::T5(_)
        | ModelConfig::Bart(_)
        | ModelConfig::Marian(_) => unreachable!("refused above"),
    };
    let vocab_size = body.word_embeddings().num_embeddings();
    let head = match (head_kind, config) {
        (HeadKind::Base, _) => Head::Base,
        (HeadKind::SequenceClassification, ModelConfig::Bert(_)) => Head::BertSequence {
            classifier: Linear::load(&weights.sub("classifier"), hidden, num_labels)?,
        },
        (HeadKind::SequenceClassification, ModelConfig::DistilBert(_)) => {
            Head::DistilBertSequence {
                pre_classifier: Linear::load(&weights.sub("pre_classifier"), hidden, hidden)?,
                classifier: Linear::load(&weights.sub("classifier"), hidden, num_labels)?,
            }
        }
        (HeadKind::SequenceClassification, _) => {
            let classifier = weights.sub("classifier");
            Head::RobertaSequence {
                dense: Linear::load(&classifier.sub("dense"), hidden, hidden)?,
                out_proj: Linear::load(&classifier.sub("out_proj"), hidden, num_labels)?,
            }
        }
        (HeadKind::TokenClassification, _) => Head::Token {
            classifier: Linear::load(&weights.sub("classifier"), hidden, num_labels)?,
        },
        (HeadKind::QuestionAnswering, _) => Head::QuestionAnswering {
            qa_outputs: Linear::load(&weights.sub("qa_outputs"), hidden, 2)?,
        },
        (HeadKind::MaskedLm, ModelConfig::Bert(bert)) => {
            // BertOnlyMLMHead: cls.predictions.{transform.{dense, LayerNorm}, decoder, bias}.
            let predictions = weights.sub("cls").sub("predictions");
            let decoder_name = predictions.full_name("decoder.weight");
            config.tie_weights(weights, &decoder_name, &word_table);
            let predictions = weights.sub("cls").sub("predictions");
            let transform = predictions.sub("transform");
            Head::MaskedLm {
                dense: Linear::load(&transform.sub("dense"), hidden, hidden)?,
                activation: bert.hidden_act.activation(),
                layer_norm: LayerNorm::load(
                    &transform.sub("LayerNorm"),
                    hidden,
                    bert.layer_norm_eps,
                )?,
                decoder: tied_decoder(&predictions, hidden, vocab_size)?,
            }
        }
        (HeadKind::MaskedLm, ModelConfig::DistilBert(distilbert)) => {
            // DistilBertForMaskedLM: vocab_transform → activation → vocab_layer_norm →
            // vocab_projector (tied to the word embeddings).
            let projector_name = weights.full_name("vocab_projector.weight");
            config.tie_weights(weights, &projector_name, &word_table);
            let projector = weights.sub("vocab_projector");
            Head::MaskedLm {
                dense: Linear::load(&weights.sub("vocab_transform"), hidden, hidden)?,
                activation: distilbert.activation.activation(),
                layer_norm: LayerNorm::load(
                    &weights.sub("vocab_layer_norm"),
                    hidden,
                    DistilBertConfig::LAYER_NORM_EPS,
                )?,
                decoder: Linear::load(&projector, hidden, vocab_size)?,
            }
        }
        (HeadKind::MaskedLm, ModelConfig::Roberta(roberta) | ModelConfig::XlmRoberta(roberta)) => {
            // RobertaLMHead: dense → exact GELU → layer_norm → decoder (+ lm_head.bias).
            let decoder_name = weights.full_name("lm_head.decoder.weight");
            config.tie_weights(weights, &decoder_name, &word_table);
            let lm_head = weights.sub("lm_head");
            Head::MaskedLm {
                dense: Linear::load(&lm_head.sub("dense"), hidden, hidden)?,
                activation: Activation::Gelu,
                layer_norm: LayerNorm::load(
                    &lm_head.sub("layer_norm"),
                    hidden,
                    roberta.layer_norm_eps,
                )?,
                decoder: tied_decoder(&lm_head, hidden, vocab_size)?,
            }
        }
        (
            HeadKind::MaskedLm,
            ModelConfig::Gpt2(_)
            | ModelConfig::T5(_)
            | ModelConfig::Bart(_)
            | ModelConfig::Marian(_),
        ) => unreachable!("refused above"),
    };
    Ok((body, head))
}

/// `decoder.weight` `[vocab, hidden]` (tied or stored) with the head's own `bias` `[vocab]`
/// (transformers ties `decoder.bias` to it and saves it once, under either name).
fn tied_decoder(head: &Weights, hidden: usize, vocab_size: usize) -> Result<Linear> {
    let weight = head.get("decoder.weight", &[vocab_size, hidden])?;
    let bias = head.get_any(&["bias", "decoder.bias"], &[vocab_size])?;
    let weight: ArrayView2<'_, f32> = weight.view2()?;
    Ok(Linear::from_weight(
        &head.full_name("decoder"),
        weight,
        Some(bias.as_slice()),
    )?)
}
