//! `config.json` types for the supported architectures, with transformers' defaults.
//!
//! Each field defaults exactly as in the `__init__` of its transformers class (4.57.6) when the
//! key is absent; an explicit `null` means `None` where the field is optional. Unknown keys are
//! ignored, as transformers keeps them as plain attributes. Every error names the source file
//! and the field.
//!
//! References: `configuration_utils.py` (`PretrainedConfig`), `models/bert/configuration_bert.py`,
//! `models/roberta/configuration_roberta.py`, `models/xlm_roberta/configuration_xlm_roberta.py`,
//! `models/distilbert/configuration_distilbert.py`, `models/gpt2/configuration_gpt2.py`,
//! `models/t5/configuration_t5.py`, `models/bart/configuration_bart.py`,
//! `models/marian/configuration_marian.py`, `activations.py` (`ACT2CLS`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use oxformer_nn::Weights;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The most labels a config may ask for by `num_labels` alone (named `LABEL_<id>`, as
/// transformers does); larger label sets come with their `id2label`.
pub const MAX_DEFAULT_LABELS: usize = 1 << 16;

/// An activation function named in a config (`hidden_act`, `activation`, `activation_function`).
///
/// Only the activations oxformer's kernels implement; other names in transformers' `ACT2CLS`
/// are refused with an error naming the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HiddenAct {
    /// `gelu`, `gelu_python`: the exact GELU, `x · Φ(x)` with the error function.
    Gelu,
    /// `gelu_new`, `gelu_pytorch_tanh`, `gelu_python_tanh`, `gelu_fast`: the tanh approximation
    /// `0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))` (`gelu_fast` writes √(2/π) as 0.7978845608).
    GeluTanh,
    /// `relu`.
    Relu,
    /// `silu`, `swish`: `x · sigmoid(x)`.
    Silu,
    /// `tanh`.
    Tanh,
    /// `linear`: the identity.
    Linear,
}

impl HiddenAct {
    /// The config names oxformer accepts, and what each means.
    pub const NAMES: [(&'static str, HiddenAct); 11] = [
        ("gelu", HiddenAct::Gelu),
        ("gelu_python", HiddenAct::Gelu),
        ("gelu_new", HiddenAct::GeluTanh),
        ("gelu_pytorch_tanh", HiddenAct::GeluTanh),
        ("gelu_python_tanh", HiddenAct::GeluTanh),
        ("gelu_fast", HiddenAct::GeluTanh),
        ("relu", HiddenAct::Relu),
        ("silu", HiddenAct::Silu),
        ("swish", HiddenAct::Silu),
        ("tanh", HiddenAct::Tanh),
        ("linear", HiddenAct::Linear),
    ];

    /// Activations transformers knows (`ACT2CLS`) that oxformer does not implement.
    const KNOWN_UNSUPPORTED: [&'static str; 11] = [
        "gelu_10",
        "gelu_accurate",
        "laplace",
        "leaky_relu",
        "mish",
        "quick_gelu",
        "relu2",
        "relu6",
        "sigmoid",
        "prelu",
        "xielu",
    ];

    /// The kernel activation this stands for (`linear` is the identity).
    pub fn activation(self) -> oxformer_tensor::Activation {
        use oxformer_tensor::Activation;
        match self {
            HiddenAct::Gelu => Activation::Gelu,
            HiddenAct::GeluTanh => Activation::GeluTanh,
            HiddenAct::Relu => Activation::Relu,
            HiddenAct::Silu => Activation::Silu,
            HiddenAct::Tanh => Activation::Tanh,
            HiddenAct::Linear => Activation::Identity,
        }
    }

    /// The activation a config name stands for, if oxformer implements it.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::NAMES
            .iter()
            .find(|(known, _)| *known == name)
            .map(|&(_, activation)| activation)
    }
}

/// `position_embedding_type` of BERT-like models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositionEmbeddingType {
    /// `absolute`: learned position embeddings added to the token embeddings.
    Absolute,
    /// `relative_key` (Shaw et al.).
    RelativeKey,
    /// `relative_key_query` (Huang et al.).
    RelativeKeyQuery,
}

/// `problem_type` of sequence classification heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemType {
    /// `regression`: one score per output, no activation.
    Regression,
    /// `single_label_classification`: softmax over the labels.
    SingleLabelClassification,
    /// `multi_label_classification`: sigmoid per label.
    MultiLabelClassification,
}

/// `summary_type` of GPT-2's sequence summary (double-heads and classification models).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SummaryType {
    /// `last`: the last token's hidden state.
    Last,
    /// `first`: the first token's hidden state.
    First,
    /// `mean`: the mean over the sequence.
    Mean,
    /// `cls_index`: the hidden state at a given classification-token index.
    ClsIndex,
    /// `attn`: not implemented in transformers either (raises there).
    Attn,
}

/// Fields every transformers config has (`PretrainedConfig`).
#[derive(Debug, Clone, PartialEq)]
pub struct CommonConfig {
    /// `model_type`: one of [`ModelConfig::SUPPORTED_MODEL_TYPES`].
    pub model_type: String,
    /// `architectures`: the classes the checkpoint was saved from (e.g. `BertForMaskedLM`).
    pub architectures: Vec<String>,
    /// `id2label`: label of each output index of a classification head, ids `0..n`.
    /// Absent: `LABEL_0 .. LABEL_{num_labels-1}` with `num_labels` (default 2).
    pub id2label: BTreeMap<usize, String>,
    /// `label2id`; absent: the inverse of `id2label`.
    pub label2id: BTreeMap<String, usize>,
    /// `problem_type` of a sequence classification head, if set.
    pub problem_type: Option<ProblemType>,
    /// `pad_token_id`.
    pub pad_token_id: Option<u32>,
    /// `bos_token_id`.
    pub bos_token_id: Option<u32>,
    /// `eos_token_id`: one id or a list of ids in JSON; empty when null.
    pub eos_token_ids: Vec<u32>,
    /// `sep_token_id`.
    pub sep_token_id: Option<u32>,
    /// `decoder_start_token_id`.
    pub decoder_start_token_id: Option<u32>,
    /// `tie_word_embeddings` (default true): output embeddings share the input embeddings.
    pub tie_word_embeddings: bool,
    /// `dtype` (or the older `torch_dtype`) the checkpoint was saved in, e.g. `float32`.
    pub dtype: Option<String>,
    /// `is_decoder` (BERT-like models used as decoders; default false).
    pub is_decoder: bool,
    /// `add_cross_attention` (default false).
    pub add_cross_attention: bool,
    /// `is_encoder_decoder` (default false).
    pub is_encoder_decoder: bool,
    /// `chunk_size_feed_forward` (default 0: no chunking; does not change results).
    pub chunk_size_feed_forward: usize,
    /// `pruned_heads`: layer → pruned attention heads (default empty).
    pub pruned_heads: BTreeMap<usize, Vec<usize>>,
    /// `finetuning_task`.
    pub finetuning_task: Option<String>,
    /// `tokenizer_class`.
    pub tokenizer_class: Option<String>,
    /// `transformers_version` that saved the config.
    pub transformers_version: Option<String>,
    /// `prefix`: text the pipelines put before every input (e.g. `" "` for distilbart-cnn).
    pub prefix: Option<String>,
    /// `task_specific_params`: per task name (`summarization`, `translation_en_to_de`, ...), the
    /// settings pipelines apply for it (`prefix`, `max_length`, `num_beams`, ...); empty when absent.
    pub task_specific_params: BTreeMap<String, Map<String, Value>>,
}

impl CommonConfig {
    /// Number of labels of a classification head: `len(id2label)`, as in transformers.
    pub fn num_labels(&self) -> usize {
        self.id2label.len()
    }

    /// The label of output index `id`.
    pub fn label(&self, id: usize) -> Option<&str> {
        self.id2label.get(&id).map(String::as_str)
    }

    /// The first (or only) `eos_token_id`.
    pub fn eos_token_id(&self) -> Option<u32> {
        self.eos_token_ids.first().copied()
    }
}

/// BERT's config (`BertConfig`); RoBERTa and XLM-RoBERTa use the same fields with other
/// defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct BertConfig {
    /// `vocab_size` (BERT 30522, RoBERTa 50265, XLM-R 30522).
    pub vocab_size: usize,
    /// `hidden_size` (768).
    pub hidden_size: usize,
    /// `num_hidden_layers` (12).
    pub num_hidden_layers: usize,
    /// `num_attention_heads` (12); divides `hidden_size`.
    pub num_attention_heads: usize,
    /// `intermediate_size` (3072).
    pub intermediate_size: usize,
    /// `hidden_act` (`gelu`).
    pub hidden_act: HiddenAct,
    /// `hidden_dropout_prob` (0.1; unused at inference).
    pub hidden_dropout_prob: f32,
    /// `attention_probs_dropout_prob` (0.1; unused at inference).
    pub attention_probs_dropout_prob: f32,
    /// `max_position_embeddings` (512).
    pub max_position_embeddings: usize,
    /// `type_vocab_size` (2).
    pub type_vocab_size: usize,
    /// `initializer_range` (0.02; unused at inference).
    pub initializer_range: f32,
    /// `layer_norm_eps` (1e-12).
    pub layer_norm_eps: f32,
    /// `position_embedding_type` (`absolute`).
    pub position_embedding_type: PositionEmbeddingType,
    /// `use_cache` (true).
    pub use_cache: bool,
    /// `classifier_dropout` (null; unused at inference).
    pub classifier_dropout: Option<f32>,
    /// The fields every config has; `pad_token_id` defaults to 0 for BERT, 1 for
    /// RoBERTa/XLM-R (which also default `bos_token_id` 0 and `eos_token_id` 2).
    pub common: CommonConfig,
}

impl BertConfig {
    /// Size of one attention head: `hidden_size / num_attention_heads`.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

/// DistilBERT's config (`DistilBertConfig`).
#[derive(Debug, Clone, PartialEq)]
pub struct DistilBertConfig {
    /// `vocab_size` (30522).
    pub vocab_size: usize,
    /// `max_position_embeddings` (512).
    pub max_position_embeddings: usize,
    /// `sinusoidal_pos_embds` (false).
    pub sinusoidal_pos_embds: bool,
    /// `n_layers` (6).
    pub n_layers: usize,
    /// `n_heads` (12); divides `dim`.
    pub n_heads: usize,
    /// `dim` (768).
    pub dim: usize,
    /// `hidden_dim` (3072): size of the feed-forward layer.
    pub hidden_dim: usize,
    /// `dropout` (0.1; unused at inference).
    pub dropout: f32,
    /// `attention_dropout` (0.1; unused at inference).
    pub attention_dropout: f32,
    /// `activation` (`gelu`).
    pub activation: HiddenAct,
    /// `initializer_range` (0.02; unused at inference).
    pub initializer_range: f32,
    /// `qa_dropout` (0.1; unused at inference).
    pub qa_dropout: f32,
    /// `seq_classif_dropout` (0.2; unused at inference).
    pub seq_classif_dropout: f32,
    /// The fields every config has; `pad_token_id` defaults to 0.
    pub common: CommonConfig,
}

impl DistilBertConfig {
    /// DistilBERT's LayerNorm epsilon, fixed in the model code rather than the config
    /// (`nn.LayerNorm(config.dim, eps=1e-12)` in `modeling_distilbert.py`).
    pub const LAYER_NORM_EPS: f32 = 1e-12;

    /// Size of one attention head: `dim / n_heads`.
    pub fn head_dim(&self) -> usize {
        self.dim / self.n_heads
    }
}

/// GPT-2's config (`GPT2Config`).
#[derive(Debug, Clone, PartialEq)]
pub struct Gpt2Config {
    /// `vocab_size` (50257).
    pub vocab_size: usize,
    /// `n_positions` (1024).
    pub n_positions: usize,
    /// `n_embd` (768).
    pub n_embd: usize,
    /// `n_layer` (12).
    pub n_layer: usize,
    /// `n_head` (12); divides `n_embd`.
    pub n_head: usize,
    /// `n_inner` (null: 4 × `n_embd`, see [`Gpt2Config::inner_dim`]).
    pub n_inner: Option<usize>,
    /// `activation_function` (`gelu_new`).
    pub activation_function: HiddenAct,
    /// `resid_pdrop` (0.1; unused at inference).
    pub resid_pdrop: f32,
    /// `embd_pdrop` (0.1; unused at inference).
    pub embd_pdrop: f32,
    /// `attn_pdrop` (0.1; unused at inference).
    pub attn_pdrop: f32,
    /// `layer_norm_epsilon` (1e-5).
    pub layer_norm_epsilon: f32,
    /// `initializer_range` (0.02; unused at inference).
    pub initializer_range: f32,
    /// `summary_type` (`cls_index`).
    pub summary_type: SummaryType,
    /// `summary_use_proj` (true).
    pub summary_use_proj: bool,
    /// `summary_activation` (null; `tanh` is the only other value transformers uses).
    pub summary_activation: Option<HiddenAct>,
    /// `summary_proj_to_labels` (true).
    pub summary_proj_to_labels: bool,
    /// `summary_first_dropout` (0.1; unused at inference).
    pub summary_first_dropout: f32,
    /// `scale_attn_weights` (true): divide attention scores by √head_dim.
    pub scale_attn_weights: bool,
    /// `use_cache` (true).
    pub use_cache: bool,
    /// `scale_attn_by_inverse_layer_idx` (false): also divide scores by `layer_idx + 1`.
    pub scale_attn_by_inverse_layer_idx: bool,
    /// `reorder_and_upcast_attn` (false): compute attention in f32 (same results in f32).
    pub reorder_and_upcast_attn: bool,
    /// The fields every config has; `bos_token_id` and `eos_token_id` default to 50256.
    pub common: CommonConfig,
}

impl Gpt2Config {
    /// Size of the MLP: `n_inner`, or 4 × `n_embd` when it is null (as `GPT2Block` does).
    pub fn inner_dim(&self) -> usize {
        self.n_inner.unwrap_or(4 * self.n_embd)
    }

    /// Size of one attention head: `n_embd / n_head`.
    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }
}

/// T5's config (`T5Config`): T5 v1.0, v1.1, FLAN-T5, mT5's layout.
#[derive(Debug, Clone, PartialEq)]
pub struct T5Config {
    /// `vocab_size` (32128).
    pub vocab_size: usize,
    /// `d_model` (512).
    pub d_model: usize,
    /// `d_kv` (64): size of one attention head (not necessarily `d_model / num_heads`).
    pub d_kv: usize,
    /// `d_ff` (2048).
    pub d_ff: usize,
    /// `num_layers` (6): encoder layers.
    pub num_layers: usize,
    /// `num_decoder_layers` (null: `num_layers`).
    pub num_decoder_layers: usize,
    /// `num_heads` (8).
    pub num_heads: usize,
    /// `relative_attention_num_buckets` (32).
    pub relative_attention_num_buckets: usize,
    /// `relative_attention_max_distance` (128).
    pub relative_attention_max_distance: usize,
    /// `dropout_rate` (0.1; unused at inference).
    pub dropout_rate: f32,
    /// `classifier_dropout` (0.0; unused at inference).
    pub classifier_dropout: f32,
    /// `layer_norm_epsilon` (1e-6).
    pub layer_norm_epsilon: f32,
    /// `initializer_factor` (1.0; unused at inference).
    pub initializer_factor: f32,
    /// `feed_forward_proj` (`relu`): `{act}` or `gated-{act}`.
    pub feed_forward_proj: String,
    /// `dense_act_fn`: the activation of `feed_forward_proj` (`gated-gelu` means `gelu_new`);
    /// a `dense_act_fn` written in the file wins, as transformers sets saved keys last.
    pub dense_act_fn: HiddenAct,
    /// `is_gated_act`: whether `feed_forward_proj` starts with `gated-` (a saved key wins).
    pub is_gated_act: bool,
    /// `use_cache` (true).
    pub use_cache: bool,
    /// The fields every config has; `pad_token_id` defaults to 0, `eos_token_id` to 1,
    /// `is_encoder_decoder` to true.
    pub common: CommonConfig,
}

impl T5Config {
    /// Width of the attention's inner projections: `num_heads × d_kv`.
    pub fn inner_dim(&self) -> usize {
        self.num_heads * self.d_kv
    }
}

/// BART's config (`BartConfig`).
#[derive(Debug, Clone, PartialEq)]
pub struct BartConfig {
    /// `vocab_size` (50265).
    pub vocab_size: usize,
    /// `max_position_embeddings` (1024); the learned table has 2 more rows (the offset).
    pub max_position_embeddings: usize,
    /// `d_model` (1024).
    pub d_model: usize,
    /// `encoder_layers` (12).
    pub encoder_layers: usize,
    /// `encoder_ffn_dim` (4096).
    pub encoder_ffn_dim: usize,
    /// `encoder_attention_heads` (16); divides `d_model`.
    pub encoder_attention_heads: usize,
    /// `decoder_layers` (12).
    pub decoder_layers: usize,
    /// `decoder_ffn_dim` (4096).
    pub decoder_ffn_dim: usize,
    /// `decoder_attention_heads` (16); divides `d_model`.
    pub decoder_attention_heads: usize,
    /// `encoder_layerdrop` (0.0; unused at inference).
    pub encoder_layerdrop: f32,
    /// `decoder_layerdrop` (0.0; unused at inference).
    pub decoder_layerdrop: f32,
    /// `activation_function` (`gelu`).
    pub activation_function: HiddenAct,
    /// `dropout` (0.1; unused at inference).
    pub dropout: f32,
    /// `attention_dropout` (0.0; unused at inference).
    pub attention_dropout: f32,
    /// `activation_dropout` (0.0; unused at inference).
    pub activation_dropout: f32,
    /// `init_std` (0.02; unused at inference).
    pub init_std: f32,
    /// `classifier_dropout` (0.0; unused at inference).
    pub classifier_dropout: f32,
    /// `scale_embedding` (false): multiply token embeddings by √d_model.
    pub scale_embedding: bool,
    /// `use_cache` (true).
    pub use_cache: bool,
    /// The fields every config has; `pad_token_id` 1, `bos_token_id` 0, `eos_token_id` 2,
    /// `decoder_start_token_id` 2, 3 labels, `is_encoder_decoder` true by default.
    pub common: CommonConfig,
}

/// Marian's config (`MarianConfig`, opus-mt): BART's layout with sinusoidal positions and no
/// embedding LayerNorm.
#[derive(Debug, Clone, PartialEq)]
pub struct MarianConfig {
    /// `vocab_size` (58101).
    pub vocab_size: usize,
    /// `decoder_vocab_size` (null: `vocab_size`); the decoder's own vocabulary when the
    /// embeddings are not shared.
    pub decoder_vocab_size: usize,
    /// `max_position_embeddings` (1024): rows of the sinusoidal tables.
    pub max_position_embeddings: usize,
    /// `d_model` (1024).
    pub d_model: usize,
    /// `encoder_layers` (12).
    pub encoder_layers: usize,
    /// `encoder_ffn_dim` (4096).
    pub encoder_ffn_dim: usize,
    /// `encoder_attention_heads` (16); divides `d_model`.
    pub encoder_attention_heads: usize,
    /// `decoder_layers` (12).
    pub decoder_layers: usize,
    /// `decoder_ffn_dim` (4096).
    pub decoder_ffn_dim: usize,
    /// `decoder_attention_heads` (16); divides `d_model`.
    pub decoder_attention_heads: usize,
    /// `encoder_layerdrop` (0.0; unused at inference).
    pub encoder_layerdrop: f32,
    /// `decoder_layerdrop` (0.0; unused at inference).
    pub decoder_layerdrop: f32,
    /// `activation_function` (`gelu`; opus-mt uses `swish`).
    pub activation_function: HiddenAct,
    /// `dropout` (0.1; unused at inference).
    pub dropout: f32,
    /// `attention_dropout` (0.0; unused at inference).
    pub attention_dropout: f32,
    /// `activation_dropout` (0.0; unused at inference).
    pub activation_dropout: f32,
    /// `init_std` (0.02; unused at inference).
    pub init_std: f32,
    /// `scale_embedding` (false; opus-mt: true): multiply token embeddings by √d_model.
    pub scale_embedding: bool,
    /// `share_encoder_decoder_embeddings` (true).
    pub share_encoder_decoder_embeddings: bool,
    /// `use_cache` (true).
    pub use_cache: bool,
    /// The fields every config has; `pad_token_id` and `decoder_start_token_id` 58100,
    /// `eos_token_id` 0, `is_encoder_decoder` true by default.
    pub common: CommonConfig,
}

impl MarianConfig {
    /// The vocabulary of the decoder and the LM head.
    pub fn target_vocab_size(&self) -> usize {
        if self.share_encoder_decoder_embeddings {
            self.vocab_size
        } else {
            self.decoder_vocab_size
        }
    }
}

/// A parsed, validated `config.json` of one of the supported architectures.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelConfig {
    /// `model_type` `bert`.
    Bert(BertConfig),
    /// `model_type` `roberta`.
    Roberta(BertConfig),
    /// `model_type` `xlm-roberta`.
    XlmRoberta(BertConfig),
    /// `model_type` `distilbert`.
    DistilBert(DistilBertConfig),
    /// `model_type` `gpt2`.
    Gpt2(Gpt2Config),
    /// `model_type` `t5` (T5 v1.0, v1.1, FLAN-T5) or `mt5` (the same model, other defaults).
    T5(T5Config),
    /// `model_type` `bart`.
    Bart(BartConfig),
    /// `model_type` `marian` (opus-mt).
    Marian(MarianConfig),
}

impl ModelConfig {
    /// The `model_type` values oxformer implements.
    pub const SUPPORTED_MODEL_TYPES: [&'static str; 9] = [
        "bert",
        "roberta",
        "xlm-roberta",
        "distilbert",
        "gpt2",
        "t5",
        "mt5",
        "bart",
        "marian",
    ];

    /// Reads and validates a `config.json` file.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read; otherwise as [`ModelConfig::from_json_str`],
    /// with the file's path as the source.
    pub fn from_file(path: &Path) -> Result<Self> {
        let json = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json_str(&json, &path.display().to_string())
    }

    /// Reads and validates `dir/config.json`.
    ///
    /// # Errors
    /// As [`ModelConfig::from_file`].
    pub fn from_folder(dir: &Path) -> Result<Self> {
        Self::from_file(&dir.join("config.json"))
    }

    /// Parses and validates a config from JSON text; `source` names it in errors.
    ///
    /// # Errors
    /// [`Error::ConfigSyntax`] for malformed JSON (with line and column) or a non-object;
    /// [`Error::UnsupportedModelType`] when `model_type` is missing or not supported;
    /// [`Error::ConfigField`] for a field of the wrong type or with an invalid value: a size
    /// that is zero, `hidden_size` not divisible by `num_attention_heads`, an unknown
    /// activation, `id2label` keys that are not the integers `0..n`, a negative token id, ...
    pub fn from_json_str(json: &str, source: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(json).map_err(|error| Error::ConfigSyntax {
            source_name: source.to_string(),
            reason: format!("not valid JSON: {error}"),
        })?;
        let Value::Object(map) = value else {
            return Err(Error::ConfigSyntax {
                source_name: source.to_string(),
                reason: "the JSON is not an object".to_string(),
            });
        };
        Self::from_json_map(&map, source)
    }

    /// Builds and validates a config from an already parsed JSON object.
    ///
    /// # Errors
    /// As [`ModelConfig::from_json_str`], except the syntax errors.
    pub fn from_json_map(map: &Map<String, Value>, source: &str) -> Result<Self> {
        let fields = Fields { map, source };
        let unsupported = |model_type: Option<String>| Error::UnsupportedModelType {
            source_name: source.to_string(),
            model_type,
            supported: Self::SUPPORTED_MODEL_TYPES.to_vec(),
        };
        let model_type = match map.get("model_type") {
            None | Some(Value::Null) => return Err(unsupported(None)),
            Some(Value::String(model_type)) => model_type.as_str(),
            Some(other) => return Err(fields.wrong_type("model_type", "a string", other)),
        };
        Ok(match model_type {
            "bert" => Self::Bert(BertConfig::parse(&fields, BertDefaults::BERT)?),
            "roberta" => Self::Roberta(BertConfig::parse(&fields, BertDefaults::ROBERTA)?),
            "xlm-roberta" => {
                Self::XlmRoberta(BertConfig::parse(&fields, BertDefaults::XLM_ROBERTA)?)
            }
            "distilbert" => Self::DistilBert(DistilBertConfig::parse(&fields)?),
            "gpt2" => Self::Gpt2(Gpt2Config::parse(&fields)?),
            "t5" => Self::T5(T5Config::parse(&fields, T5Defaults::T5)?),
            // MT5ForConditionalGeneration is T5's code with other defaults (modeling_mt5.py)
            "mt5" => Self::T5(T5Config::parse(&fields, T5Defaults::MT5)?),
            "bart" => Self::Bart(BartConfig::parse(&fields)?),
            "marian" => Self::Marian(MarianConfig::parse(&fields)?),
            other => return Err(unsupported(Some(other.to_string()))),
        })
    }

    /// The fields every config has.
    pub fn common(&self) -> &CommonConfig {
        match self {
            Self::Bert(config) | Self::Roberta(config) | Self::XlmRoberta(config) => &config.common,
            Self::DistilBert(config) => &config.common,
            Self::Gpt2(config) => &config.common,
            Self::T5(config) => &config.common,
            Self::Bart(config) => &config.common,
            Self::Marian(config) => &config.common,
        }
    }

    /// The `model_type`.
    pub fn model_type(&self) -> &'static str {
        match self {
            Self::Bert(_) => "bert",
            Self::Roberta(_) => "roberta",
            Self::XlmRoberta(_) => "xlm-roberta",
            Self::DistilBert(_) => "distilbert",
            Self::Gpt2(_) => "gpt2",
            Self::T5(config) if config.common.model_type == "mt5" => "mt5",
            Self::T5(_) => "t5",
            Self::Bart(_) => "bart",
            Self::Marian(_) => "marian",
        }
    }

    /// Width of the hidden states (`hidden_size`, `dim` or `n_embd`).
    pub fn hidden_size(&self) -> usize {
        match self {
            Self::Bert(config) | Self::Roberta(config) | Self::XlmRoberta(config) => {
                config.hidden_size
            }
            Self::DistilBert(config) => config.dim,
            Self::Gpt2(config) => config.n_embd,
            Self::T5(config) => config.d_model,
            Self::Bart(config) => config.d_model,
            Self::Marian(config) => config.d_model,
        }
    }

    /// Whether the output embeddings (LM head) are tied to the input embeddings.
    pub fn tie_word_embeddings(&self) -> bool {
        self.common().tie_word_embeddings
    }

    /// Ties output to input embeddings when the config says so, as transformers'
    /// `tie_weights` does: afterwards `output` (e.g. `lm_head.weight`) reads `input`
    /// (e.g. `transformer.wte.weight`), both relative to `weights`' prefix. Returns whether it
    /// tied them; when it did not, the checkpoint must hold `output` itself.
    pub fn tie_weights(&self, weights: &mut Weights, output: &str, input: &str) -> bool {
        if self.tie_word_embeddings() {
            weights.alias(output, input);
        }
        self.tie_word_embeddings()
    }
}

/// Per-architecture defaults of the BERT-like configs that differ.
struct BertDefaults {
    vocab_size: usize,
    pad_token_id: Option<u32>,
    bos_token_id: Option<u32>,
    eos_token_id: Option<u32>,
}

impl BertDefaults {
    const BERT: Self = Self {
        vocab_size: 30522,
        pad_token_id: Some(0),
        bos_token_id: None,
        eos_token_id: None,
    };
    const ROBERTA: Self = Self {
        vocab_size: 50265,
        pad_token_id: Some(1),
        bos_token_id: Some(0),
        eos_token_id: Some(2),
    };
    const XLM_ROBERTA: Self = Self {
        vocab_size: 30522,
        ..Self::ROBERTA
    };
}

/// Token id defaults a model class passes to `PretrainedConfig.__init__`.
#[derive(Clone, Copy)]
struct TokenDefaults {
    pad: Option<u32>,
    bos: Option<u32>,
    eos: Option<u32>,
}

/// What an encoder-decoder class passes to `PretrainedConfig.__init__` besides token ids.
#[derive(Clone, Copy)]
struct Seq2SeqDefaults {
    tokens: TokenDefaults,
    decoder_start: Option<u32>,
    num_labels: usize,
    tie_word_embeddings: bool,
    tokenizer_class: Option<&'static str>,
}

impl Seq2SeqDefaults {
    /// `PretrainedConfig`'s own defaults for what the class does not set.
    const PRETRAINED: Self = Self {
        tokens: TokenDefaults {
            pad: None,
            bos: None,
            eos: None,
        },
        decoder_start: None,
        num_labels: 2,
        tie_word_embeddings: true,
        tokenizer_class: None,
    };
}

/// The class defaults of `T5Config` and `MT5Config` (configuration_mt5.py), which share the
/// fields.
struct T5Defaults {
    vocab_size: usize,
    d_ff: usize,
    num_layers: usize,
    num_heads: usize,
    feed_forward_proj: &'static str,
    common: Seq2SeqDefaults,
}

impl T5Defaults {
    const T5: Self = Self {
        vocab_size: 32128,
        d_ff: 2048,
        num_layers: 6,
        num_heads: 8,
        feed_forward_proj: "relu",
        common: Seq2SeqDefaults {
            tokens: TokenDefaults {
                pad: Some(0),
                bos: None,
                eos: Some(1),
            },
            ..Seq2SeqDefaults::PRETRAINED
        },
    };
    const MT5: Self = Self {
        vocab_size: 250112,
        d_ff: 1024,
        num_layers: 8,
        num_heads: 6,
        feed_forward_proj: "gated-gelu",
        common: Seq2SeqDefaults {
            decoder_start: Some(0),
            tie_word_embeddings: false,
            tokenizer_class: Some("T5Tokenizer"),
            ..Self::T5.common
        },
    };
}

impl BertConfig {
    fn parse(fields: &Fields<'_>, defaults: BertDefaults) -> Result<Self> {
        let config = Self {
            vocab_size: fields.size("vocab_size", defaults.vocab_size)?,
            hidden_size: fields.size("hidden_size", 768)?,
            num_hidden_layers: fields.size("num_hidden_layers", 12)?,
            num_attention_heads: fields.size("num_attention_heads", 12)?,
            intermediate_size: fields.size("intermediate_size", 3072)?,
            hidden_act: fields.activation("hidden_act", HiddenAct::Gelu)?,
            hidden_dropout_prob: fields.value("hidden_dropout_prob", 0.1, "a number")?,
            attention_probs_dropout_prob: fields.value(
                "attention_probs_dropout_prob",
                0.1,
                "a number",
            )?,
            max_position_embeddings: fields.size("max_position_embeddings", 512)?,
            type_vocab_size: fields.size("type_vocab_size", 2)?,
            initializer_range: fields.value("initializer_range", 0.02, "a number")?,
            layer_norm_eps: fields.epsilon("layer_norm_eps", 1e-12)?,
            position_embedding_type: fields.position_embedding_type()?,
            use_cache: fields.value("use_cache", true, "true or false")?,
            classifier_dropout: fields.nullable("classifier_dropout", None, "a number or null")?,
            common: fields.common(TokenDefaults {
                pad: defaults.pad_token_id,
                bos: defaults.bos_token_id,
                eos: defaults.eos_token_id,
            })?,
        };
        fields.divisible(
            ("hidden_size", config.hidden_size),
            ("num_attention_heads", config.num_attention_heads),
        )?;
        Ok(config)
    }
}

impl DistilBertConfig {
    fn parse(fields: &Fields<'_>) -> Result<Self> {
        let config = Self {
            vocab_size: fields.size("vocab_size", 30522)?,
            max_position_embeddings: fields.size("max_position_embeddings", 512)?,
            sinusoidal_pos_embds: fields.value("sinusoidal_pos_embds", false, "true or false")?,
            n_layers: fields.size("n_layers", 6)?,
            n_heads: fields.size("n_heads", 12)?,
            dim: fields.size("dim", 768)?,
            hidden_dim: fields.size("hidden_dim", 4 * 768)?,
            dropout: fields.value("dropout", 0.1, "a number")?,
            attention_dropout: fields.value("attention_dropout", 0.1, "a number")?,
            activation: fields.activation("activation", HiddenAct::Gelu)?,
            initializer_range: fields.value("initializer_range", 0.02, "a number")?,
            qa_dropout: fields.value("qa_dropout", 0.1, "a number")?,
            seq_classif_dropout: fields.value("seq_classif_dropout", 0.2, "a number")?,
            common: fields.common(TokenDefaults {
                pad: Some(0),
                bos: None,
                eos: None,
            })?,
        };
        fields.divisible(("dim", config.dim), ("n_heads", config.n_heads))?;
        Ok(config)
    }
}

impl Gpt2Config {
    fn parse(fields: &Fields<'_>) -> Result<Self> {
        let n_inner: Option<usize> = fields.nullable("n_inner", None, "an integer or null")?;
        if n_inner == Some(0) {
            return Err(fields.invalid("n_inner", "must be positive (or null for 4 × n_embd)"));
        }
        let summary_activation =
            match fields.nullable::<String>("summary_activation", None, "a string or null")? {
                None => None,
                Some(name) => Some(HiddenAct::from_name(&name).ok_or_else(|| {
                    fields.invalid("summary_activation", &unknown_activation(&name))
                })?),
            };
        let config = Self {
            vocab_size: fields.size("vocab_size", 50257)?,
            n_positions: fields.size("n_positions", 1024)?,
            n_embd: fields.size("n_embd", 768)?,
            n_layer: fields.size("n_layer", 12)?,
            n_head: fields.size("n_head", 12)?,
            n_inner,
            activation_function: fields.activation("activation_function", HiddenAct::GeluTanh)?,
            resid_pdrop: fields.value("resid_pdrop", 0.1, "a number")?,
            embd_pdrop: fields.value("embd_pdrop", 0.1, "a number")?,
            attn_pdrop: fields.value("attn_pdrop", 0.1, "a number")?,
            layer_norm_epsilon: fields.epsilon("layer_norm_epsilon", 1e-5)?,
            initializer_range: fields.value("initializer_range", 0.02, "a number")?,
            summary_type: fields.summary_type()?,
            summary_use_proj: fields.value("summary_use_proj", true, "true or false")?,
            summary_activation,
            summary_proj_to_labels: fields.value(
                "summary_proj_to_labels",
                true,
                "true or false",
            )?,
            summary_first_dropout: fields.value("summary_first_dropout", 0.1, "a number")?,
            scale_attn_weights: fields.value("scale_attn_weights", true, "true or false")?,
            use_cache: fields.value("use_cache", true, "true or false")?,
            scale_attn_by_inverse_layer_idx: fields.value(
                "scale_attn_by_inverse_layer_idx",
                false,
                "true or false",
            )?,
            reorder_and_upcast_attn: fields.value(
                "reorder_and_upcast_attn",
                false,
                "true or false",
            )?,
            common: fields.common(TokenDefaults {
                pad: None,
                bos: Some(50256),
                eos: Some(50256),
            })?,
        };
        fields.divisible(("n_embd", config.n_embd), ("n_head", config.n_head))?;
        Ok(config)
    }
}

impl T5Config {
    fn parse(fields: &Fields<'_>, defaults: T5Defaults) -> Result<Self> {
        let key = "feed_forward_proj";
        let feed_forward_proj: String =
            fields.value(key, defaults.feed_forward_proj.to_string(), "a string")?;
        // configuration_t5.py: `{act}` or `gated-{act}`
        let parts: Vec<&str> = feed_forward_proj.split('-').collect();
        if (parts.len() > 1 && parts[0] != "gated") || parts.len() > 2 {
            return Err(fields.invalid(
                key,
                &format!(
                    "`{feed_forward_proj}` is not `{{activation}}` or `gated-{{activation}}` \
                     (e.g. `relu`, `gated-gelu`)"
                ),
            ));
        }
        let derived_activation = if feed_forward_proj == "gated-gelu" {
            HiddenAct::GeluTanh // "for backwards compatibility": gelu_new
        } else {
            let name = parts[parts.len() - 1];
            HiddenAct::from_name(name)
                .ok_or_else(|| fields.invalid(key, &unknown_activation(name)))?
        };
        let num_layers = fields.size("num_layers", defaults.num_layers)?;
        let config = Self {
            vocab_size: fields.size("vocab_size", defaults.vocab_size)?,
            d_model: fields.size("d_model", 512)?,
            d_kv: fields.size("d_kv", 64)?,
            d_ff: fields.size("d_ff", defaults.d_ff)?,
            num_layers,
            num_decoder_layers: fields
                .nullable("num_decoder_layers", None, "a positive integer or null")?
                .unwrap_or(num_layers),
            num_heads: fields.size("num_heads", defaults.num_heads)?,
            relative_attention_num_buckets: fields.size("relative_attention_num_buckets", 32)?,
            relative_attention_max_distance: fields.size("relative_attention_max_distance", 128)?,
            dropout_rate: fields.value("dropout_rate", 0.1, "a number")?,
            classifier_dropout: fields.value("classifier_dropout", 0.0, "a number")?,
            layer_norm_epsilon: fields.epsilon("layer_norm_epsilon", 1e-6)?,
            initializer_factor: fields.value("initializer_factor", 1.0, "a number")?,
            is_gated_act: fields.value("is_gated_act", parts[0] == "gated", "true or false")?,
            dense_act_fn: fields.activation("dense_act_fn", derived_activation)?,
            feed_forward_proj,
            use_cache: fields.value("use_cache", true, "true or false")?,
            common: fields.common_seq2seq(defaults.common)?,
        };
        if config.num_decoder_layers == 0 {
            return Err(fields.invalid("num_decoder_layers", "must be positive, found 0"));
        }
        if config.relative_attention_num_buckets < 4 {
            return Err(fields.invalid(
                "relative_attention_num_buckets",
                &format!(
                    "{} buckets: T5 needs at least 4 (half per direction, half of those exact)",
                    config.relative_attention_num_buckets
                ),
            ));
        }
        Ok(config)
    }
}

/// The layer sizes BART and Marian share, each checked.
struct BartLayout {
    d_model: usize,
    encoder_layers: usize,
    encoder_ffn_dim: usize,
    encoder_attention_heads: usize,
    decoder_layers: usize,
    decoder_ffn_dim: usize,
    decoder_attention_heads: usize,
}

impl BartLayout {
    fn parse(fields: &Fields<'_>) -> Result<Self> {
        let layout = Self {
            d_model: fields.size("d_model", 1024)?,
            encoder_layers: fields.size("encoder_layers", 12)?,
            encoder_ffn_dim: fields.size("encoder_ffn_dim", 4096)?,
            encoder_attention_heads: fields.size("encoder_attention_heads", 16)?,
            decoder_layers: fields.size("decoder_layers", 12)?,
            decoder_ffn_dim: fields.size("decoder_ffn_dim", 4096)?,
            decoder_attention_heads: fields.size("decoder_attention_heads", 16)?,
        };
        fields.divisible(
            ("d_model", layout.d_model),
            ("encoder_attention_heads", layout.encoder_attention_heads),
        )?;
        fields.divisible(
            ("d_model", layout.d_model),
            ("decoder_attention_heads", layout.decoder_attention_heads),
        )?;
        Ok(layout)
    }
}

impl BartConfig {
    fn parse(fields: &Fields<'_>) -> Result<Self> {
        let layout = BartLayout::parse(fields)?;
        Ok(Self {
            vocab_size: fields.size("vocab_size", 50265)?,
            max_position_embeddings: fields.size("max_position_embeddings", 1024)?,
            d_model: layout.d_model,
            encoder_layers: layout.encoder_layers,
            encoder_ffn_dim: layout.encoder_ffn_dim,
            encoder_attention_heads: layout.encoder_attention_heads,
            decoder_layers: layout.decoder_layers,
            decoder_ffn_dim: layout.decoder_ffn_dim,
            decoder_attention_heads: layout.decoder_attention_heads,
            encoder_layerdrop: fields.value("encoder_layerdrop", 0.0, "a number")?,
            decoder_layerdrop: fields.value("decoder_layerdrop", 0.0, "a number")?,
            activation_function: fields.activation("activation_function", HiddenAct::Gelu)?,
            dropout: fields.value("dropout", 0.1, "a number")?,
            attention_dropout: fields.value("attention_dropout", 0.0, "a number")?,
            activation_dropout: fields.value("activation_dropout", 0.0, "a number")?,
            init_std: fields.value("init_std", 0.02, "a number")?,
            classifier_dropout: fields.value("classifier_dropout", 0.0, "a number")?,
            scale_embedding: fields.value("scale_embedding", false, "true or false")?,
            use_cache: fields.value("use_cache", true, "true or false")?,
            common: fields.common_seq2seq(Seq2SeqDefaults {
                tokens: TokenDefaults {
                    pad: Some(1),
                    bos: Some(0),
                    eos: Some(2),
                },
                decoder_start: Some(2),
                num_labels: 3,
                ..Seq2SeqDefaults::PRETRAINED
            })?,
        })
    }
}

impl MarianConfig {
    fn parse(fields: &Fields<'_>) -> Result<Self> {
        let layout = BartLayout::parse(fields)?;
        let vocab_size = fields.size("vocab_size", 58101)?;
        Ok(Self {
            vocab_size,
            decoder_vocab_size: fields
                .nullable("decoder_vocab_size", None, "a positive integer or null")?
                .filter(|&size: &usize| size > 0)
                .unwrap_or(vocab_size),
            max_position_embeddings: fields.size("max_position_embeddings", 1024)?,
            d_model: layout.d_model,
            encoder_layers: layout.encoder_layers,
            encoder_ffn_dim: layout.encoder_ffn_dim,
            encoder_attention_heads: layout.encoder_attention_heads,
            decoder_layers: layout.decoder_layers,
            decoder_ffn_dim: layout.decoder_ffn_dim,
            decoder_attention_heads: layout.decoder_attention_heads,
            encoder_layerdrop: fields.value("encoder_layerdrop", 0.0, "a number")?,
            decoder_layerdrop: fields.value("decoder_layerdrop", 0.0, "a number")?,
            activation_function: fields.activation("activation_function", HiddenAct::Gelu)?,
            dropout: fields.value("dropout", 0.1, "a number")?,
            attention_dropout: fields.value("attention_dropout", 0.0, "a number")?,
            activation_dropout: fields.value("activation_dropout", 0.0, "a number")?,
            init_std: fields.value("init_std", 0.02, "a number")?,
            scale_embedding: fields.value("scale_embedding", false, "true or false")?,
            share_encoder_decoder_embeddings: fields.value(
                "share_encoder_decoder_embeddings",
                true,
                "true or false",
            )?,
            use_cache: fields.value("use_cache", true, "true or false")?,
            common: fields.common_seq2seq(Seq2SeqDefaults {
                tokens: TokenDefaults {
                    pad: Some(58100),
                    bos: None,
                    eos: Some(0),
                },
                decoder_start: Some(58100),
                ..Seq2SeqDefaults::PRETRAINED
            })?,
        })
    }
}

/// The message for an activation name oxformer does not accept.
fn unknown_activation(name: &str) -> String {
    let accepted: Vec<&str> = HiddenAct::NAMES.iter().map(|(name, _)| *name).collect();
    let what = if HiddenAct::KNOWN_UNSUPPORTED.contains(&name) {
        "is a transformers activation that oxformer does not implement"
    } else {
        "is not a known activation"
    };
    format!("`{name}` {what}; oxformer accepts {}", accepted.join(", "))
}

/// Typed access to the keys of a config object, with errors naming the source and the key.
struct Fields<'a> {
    map: &'a Map<String, Value>,
    source: &'a str,
}

impl Fields<'_> {
    fn invalid(&self, field: &str, reason: &str) -> Error {
        Error::ConfigField {
            source_name: self.source.to_string(),
            field: field.to_string(),
            reason: reason.to_string(),
        }
    }

    fn wrong_type(&self, field: &str, expected: &str, found: &Value) -> Error {
        self.invalid(
            field,
            &format!("expected {expected}, found {}", Shown(found)),
        )
    }

    /// `key` as a `T`; `default` when absent. An explicit `null` is an error.
    fn value<T: DeserializeOwned>(&self, key: &str, default: T, expected: &str) -> Result<T> {
        match self.map.get(key) {
            None => Ok(default),
            Some(value) => T::deserialize(value).map_err(|_| self.wrong_type(key, expected, value)),
        }
    }

    /// `key` as an optional `T`: `default` when absent, `None` when `null`.
    fn nullable<T: DeserializeOwned>(
        &self,
        key: &str,
        default: Option<T>,
        expected: &str,
    ) -> Result<Option<T>> {
        match self.map.get(key) {
            None => Ok(default),
            Some(Value::Null) => Ok(None),
            Some(value) => T::deserialize(value)
                .map(Some)
                .map_err(|_| self.wrong_type(key, expected, value)),
        }
    }

    /// A size that must be a positive integer.
    fn size(&self, key: &str, default: usize) -> Result<usize> {
        let size: usize = self.value(key, default, "a positive integer")?;
        if size == 0 {
            return Err(self.invalid(key, "must be positive, found 0"));
        }
        Ok(size)
    }

    /// A LayerNorm epsilon: finite and not negative.
    fn epsilon(&self, key: &str, default: f32) -> Result<f32> {
        let epsilon: f32 = self.value(key, default, "a number")?;
        if !epsilon.is_finite() || epsilon < 0.0 {
            return Err(self.invalid(
                key,
                &format!("must be a small non-negative number, found {epsilon}"),
            ));
        }
        Ok(epsilon)
    }

    fn activation(&self, key: &str, default: HiddenAct) -> Result<HiddenAct> {
        match self.map.get(key) {
            None => Ok(default),
            Some(Value::String(name)) => HiddenAct::from_name(name)
                .ok_or_else(|| self.invalid(key, &unknown_activation(name))),
            Some(other) => Err(self.wrong_type(key, "an activation name", other)),
        }
    }

    /// Checks that `whole` divides into `parts` evenly (hidden size by attention heads).
    fn divisible(
        &self,
        (whole_key, whole): (&str, usize),
        (parts_key, parts): (&str, usize),
    ) -> Result<()> {
        if whole % parts != 0 {
            return Err(self.invalid(
                whole_key,
                &format!("{whole_key} {whole} is not a multiple of {parts_key} {parts}"),
            ));
        }
        Ok(())
    }

    fn position_embedding_type(&self) -> Result<PositionEmbeddingType> {
        let key = "position_embedding_type";
        let name: String = self.value(key, "absolute".to_string(), "a string")?;
        match name.as_str() {
            "absolute" => Ok(PositionEmbeddingType::Absolute),
            "relative_key" => Ok(PositionEmbeddingType::RelativeKey),
            "relative_key_query" => Ok(PositionEmbeddingType::RelativeKeyQuery),
            other => Err(self.invalid(
                key,
                &format!("`{other}` is not one of absolute, relative_key, relative_key_query"),
            )),
        }
    }

    fn summary_type(&self) -> Result<SummaryType> {
        let key = "summary_type";
        let name: String = self.value(key, "cls_index".to_string(), "a string")?;
        match name.as_str() {
            "last" => Ok(SummaryType::Last),
            "first" => Ok(SummaryType::First),
            "mean" => Ok(SummaryType::Mean),
            "cls_index" => Ok(SummaryType::ClsIndex),
            "attn" => Ok(SummaryType::Attn),
            other => Err(self.invalid(
                key,
                &format!("`{other}` is not one of last, first, mean, cls_index, attn"),
            )),
        }
    }

    fn problem_type(&self) -> Result<Option<ProblemType>> {
        let key = "problem_type";
        let name: Option<String> = self.nullable(key, None, "a string or null")?;
        match name.as_deref() {
            None => Ok(None),
            Some("regression") => Ok(Some(ProblemType::Regression)),
            Some("single_label_classification") => Ok(Some(ProblemType::SingleLabelClassification)),
            Some("multi_label_classification") => Ok(Some(ProblemType::MultiLabelClassification)),
            Some(other) => Err(self.invalid(
                key,
                &format!(
                    "`{other}` is not one of regression, single_label_classification, \
                     multi_label_classification"
                ),
            )),
        }
    }

    /// A token id: a non-negative integer below 2³², or null.
    fn token_id(&self, key: &str, default: Option<u32>) -> Result<Option<u32>> {
        self.nullable(key, default, "a token id (a non-negative integer) or null")
    }

    /// `eos_token_id`: null, one id, or a list of ids.
    fn eos_token_ids(&self, default: Option<u32>) -> Result<Vec<u32>> {
        let key = "eos_token_id";
        let expected = "a token id, a list of token ids, or null";
        match self.map.get(key) {
            None => Ok(default.into_iter().collect()),
            Some(Value::Null) => Ok(Vec::new()),
            Some(value @ Value::Array(_)) => {
                Vec::<u32>::deserialize(value).map_err(|_| self.wrong_type(key, expected, value))
            }
            Some(value) => u32::deserialize(value)
                .map(|id| vec![id])
                .map_err(|_| self.wrong_type(key, expected, value)),
        }
    }

    /// `id2label` (integer keys written as strings, ids `0..n`) and `label2id`.
    fn labels(
        &self,
        default_num_labels: usize,
    ) -> Result<(BTreeMap<usize, String>, BTreeMap<String, usize>)> {
        let id2label = match self.map.get("id2label") {
            None | Some(Value::Null) => {
                let num_labels: usize =
                    self.value("num_labels", default_num_labels, "a non-negative integer")?;
                // Each label is named here; a count no head could have must not allocate names.
                if num_labels > MAX_DEFAULT_LABELS {
                    return Err(self.invalid(
                        "num_labels",
                        &format!(
                            "{num_labels} labels is more than {MAX_DEFAULT_LABELS}, the most \
                             oxformer names without an id2label"
                        ),
                    ));
                }
                (0..num_labels)
                    .map(|id| (id, format!("LABEL_{id}")))
                    .collect()
            }
            Some(Value::Object(entries)) => {
                let mut id2label = BTreeMap::new();
                for (key, label) in entries {
                    let id: usize = key.trim().parse().map_err(|_| {
                        self.invalid(
                            "id2label",
                            &format!("key `{key}` is not a label id (an integer)"),
                        )
                    })?;
                    let Value::String(label) = label else {
                        return Err(self.invalid(
                            "id2label",
                            &format!("label of id {id} is {}, expected a string", Shown(label)),
                        ));
                    };
                    id2label.insert(id, label.clone());
                }
                // A head has one output per label; ids with holes would misname its outputs.
                if let Some((index, &id)) =
                    id2label.keys().enumerate().find(|(index, id)| index != *id)
                {
                    return Err(self.invalid(
                        "id2label",
                        &format!(
                            "ids must be 0..{} without gaps, but id {index} is missing (next is {id})",
                            id2label.len()
                        ),
                    ));
                }
                id2label
            }
            Some(other) => return Err(self.wrong_type("id2label", "an object", other)),
        };
        let label2id = match self.map.get("label2id") {
            None | Some(Value::Null) => id2label
                .iter()
                .map(|(&id, label)| (label.clone(), id))
                .collect(),
            Some(value) => BTreeMap::<String, usize>::deserialize(value).map_err(|_| {
                self.wrong_type("label2id", "an object of label → integer id", value)
            })?,
        };
        Ok((id2label, label2id))
    }

    /// `pruned_heads`: `{"layer": [head, ...]}`.
    fn pruned_heads(&self) -> Result<BTreeMap<usize, Vec<usize>>> {
        let key = "pruned_heads";
        let expected = "an object of layer → list of head indices";
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(BTreeMap::new()),
            Some(value @ Value::Object(entries)) => entries
                .iter()
                .map(|(layer, heads)| {
                    let layer = layer.trim().parse::<usize>().ok();
                    let heads = Vec::<usize>::deserialize(heads).ok();
                    layer
                        .zip(heads)
                        .ok_or_else(|| self.wrong_type(key, expected, value))
                })
                .collect(),
            Some(other) => Err(self.wrong_type(key, expected, other)),
        }
    }

    /// The `PretrainedConfig` fields, with the model class's token id defaults.
    fn common(&self, tokens: TokenDefaults) -> Result<CommonConfig> {
        self.common_with(
            Seq2SeqDefaults {
                tokens,
                ..Seq2SeqDefaults::PRETRAINED
            },
            false,
        )
    }

    /// [`Fields::common`] for an encoder-decoder class (`is_encoder_decoder` defaults to true).
    fn common_seq2seq(&self, defaults: Seq2SeqDefaults) -> Result<CommonConfig> {
        self.common_with(defaults, true)
    }

    fn common_with(
        &self,
        defaults: Seq2SeqDefaults,
        is_encoder_decoder: bool,
    ) -> Result<CommonConfig> {
        let tokens = defaults.tokens;
        let (id2label, label2id) = self.labels(defaults.num_labels)?;
        // `dtype` wins over the older `torch_dtype` when both are given.
        let dtype = match self.nullable::<String>("dtype", None, "a string or null")? {
            Some(dtype) => Some(dtype),
            None => self.nullable("torch_dtype", None, "a string or null")?,
        };
        Ok(CommonConfig {
            model_type: self.value("model_type", String::new(), "a string")?,
            architectures: self
                .nullable("architectures", None, "a list of class names or null")?
                .unwrap_or_default(),
            id2label,
            label2id,
            problem_type: self.problem_type()?,
            pad_token_id: self.token_id("pad_token_id", tokens.pad)?,
            bos_token_id: self.token_id("bos_token_id", tokens.bos)?,
            eos_token_ids: self.eos_token_ids(tokens.eos)?,
            sep_token_id: self.token_id("sep_token_id", None)?,
            decoder_start_token_id: self
                .token_id("decoder_start_token_id", defaults.decoder_start)?,
            tie_word_embeddings: self.value(
                "tie_word_embeddings",
                defaults.tie_word_embeddings,
                "true or false",
            )?,
            dtype,
            is_decoder: self.value("is_decoder", false, "true or false")?,
            add_cross_attention: self.value("add_cross_attention", false, "true or false")?,
            is_encoder_decoder: self.value(
                "is_encoder_decoder",
                is_encoder_decoder,
                "true or false",
            )?,
            chunk_size_feed_forward: self.value(
                "chunk_size_feed_forward",
                0,
                "a non-negative integer",
            )?,
            pruned_heads: self.pruned_heads()?,
            finetuning_task: self.nullable("finetuning_task", None, "a string or null")?,
            tokenizer_class: self.nullable(
                "tokenizer_class",
                defaults.tokenizer_class.map(str::to_string),
                "a string or null",
            )?,
            transformers_version: self.nullable(
                "transformers_version",
                None,
                "a string or null",
            )?,
            prefix: self.nullable("prefix", None, "a string or null")?,
            task_specific_params: self
                .nullable("task_specific_params", None, "an object of task → settings")?
                .unwrap_or_default(),
        })
    }
}

/// A JSON value in a message, shortened when long.
struct Shown<'a>(&'a Value);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX: usize = 60;
        let text = self.0.to_string();
        if text.chars().count() <= MAX {
            f.write_str(&text)
        } else {
            let short: String = text.chars().take(MAX).collect();
            write!(f, "{short}…")
        }
    }
}
