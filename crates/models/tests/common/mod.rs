//! Helpers shared by the config tests: our fields under transformers' keys, compared as JSON.
#![allow(dead_code)]

use std::path::PathBuf;

pub mod reference;
pub mod seq2seq;

use oxformer_models::{CommonConfig, HiddenAct, ModelConfig};
use serde_json::{Value, json};

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// Our value of every common field, under transformers' key, as JSON.
pub fn common_fields(common: &CommonConfig) -> Vec<(&'static str, Value)> {
    let eos = match common.eos_token_ids.as_slice() {
        [] => Value::Null,
        [one] => json!(one),
        many => json!(many),
    };
    let architectures = if common.architectures.is_empty() {
        Value::Null
    } else {
        json!(common.architectures)
    };
    vec![
        ("model_type", json!(common.model_type)),
        ("architectures", architectures),
        ("id2label", json!(common.id2label)),
        ("label2id", json!(common.label2id)),
        ("pad_token_id", json!(common.pad_token_id)),
        ("bos_token_id", json!(common.bos_token_id)),
        ("eos_token_id", eos),
        ("sep_token_id", json!(common.sep_token_id)),
        (
            "decoder_start_token_id",
            json!(common.decoder_start_token_id),
        ),
        ("tie_word_embeddings", json!(common.tie_word_embeddings)),
        ("dtype", json!(common.dtype)),
        ("is_decoder", json!(common.is_decoder)),
        ("add_cross_attention", json!(common.add_cross_attention)),
        ("is_encoder_decoder", json!(common.is_encoder_decoder)),
        (
            "chunk_size_feed_forward",
            json!(common.chunk_size_feed_forward),
        ),
        ("pruned_heads", json!(common.pruned_heads)),
        ("finetuning_task", json!(common.finetuning_task)),
        ("tokenizer_class", json!(common.tokenizer_class)),
        (
            "problem_type",
            json!(common.problem_type.map(|problem| format!("{problem:?}"))),
        ),
    ]
}

pub type Fields = Vec<(&'static str, Value)>;
pub type Activations = Vec<(&'static str, HiddenAct)>;

/// Our value of every model-specific field under transformers' key; activations apart, since
/// the reference holds their names.
pub fn model_fields(config: &ModelConfig) -> (Fields, Activations) {
    match config {
        ModelConfig::Bert(c) | ModelConfig::Roberta(c) | ModelConfig::XlmRoberta(c) => (
            vec![
                ("vocab_size", json!(c.vocab_size)),
                ("hidden_size", json!(c.hidden_size)),
                ("num_hidden_layers", json!(c.num_hidden_layers)),
                ("num_attention_heads", json!(c.num_attention_heads)),
                ("intermediate_size", json!(c.intermediate_size)),
                ("hidden_dropout_prob", json!(c.hidden_dropout_prob)),
                (
                    "attention_probs_dropout_prob",
                    json!(c.attention_probs_dropout_prob),
                ),
                ("max_position_embeddings", json!(c.max_position_embeddings)),
                ("type_vocab_size", json!(c.type_vocab_size)),
                ("initializer_range", json!(c.initializer_range)),
                ("layer_norm_eps", json!(c.layer_norm_eps)),
                (
                    "position_embedding_type",
                    json!(format!("{:?}", c.position_embedding_type)),
                ),
                ("use_cache", json!(c.use_cache)),
                ("classifier_dropout", json!(c.classifier_dropout)),
            ],
            vec![("hidden_act", c.hidden_act)],
        ),
        ModelConfig::DistilBert(c) => (
            vec![
                ("vocab_size", json!(c.vocab_size)),
                ("max_position_embeddings", json!(c.max_position_embeddings)),
                ("sinusoidal_pos_embds", json!(c.sinusoidal_pos_embds)),
                ("n_layers", json!(c.n_layers)),
                ("n_heads", json!(c.n_heads)),
                ("dim", json!(c.dim)),
                ("hidden_dim", json!(c.hidden_dim)),
                ("dropout", json!(c.dropout)),
                ("attention_dropout", json!(c.attention_dropout)),
                ("initializer_range", json!(c.initializer_range)),
                ("qa_dropout", json!(c.qa_dropout)),
                ("seq_classif_dropout", json!(c.seq_classif_dropout)),
            ],
            vec![("activation", c.activation)],
        ),
        ModelConfig::Gpt2(c) => {
            let mut activations = vec![("activation_function", c.activation_function)];
            activations.extend(c.summary_activation.map(|a| ("summary_activation", a)));
            let summary_activation_is_null = json!(c.summary_activation.is_none());
            (
                vec![
                    ("vocab_size", json!(c.vocab_size)),
                    ("n_positions", json!(c.n_positions)),
                    ("n_embd", json!(c.n_embd)),
                    ("n_layer", json!(c.n_layer)),
                    ("n_head", json!(c.n_head)),
                    ("n_inner", json!(c.n_inner)),
                    ("resid_pdrop", json!(c.resid_pdrop)),
                    ("embd_pdrop", json!(c.embd_pdrop)),
                    ("attn_pdrop", json!(c.attn_pdrop)),
                    ("layer_norm_epsilon", json!(c.layer_norm_epsilon)),
                    ("initializer_range", json!(c.initializer_range)),
                    ("summary_type", json!(format!("{:?}", c.summary_type))),
                    ("summary_use_proj", json!(c.summary_use_proj)),
                    ("summary_proj_to_labels", json!(c.summary_proj_to_labels)),
                    ("summary_first_dropout", json!(c.summary_first_dropout)),
                    ("scale_attn_weights", json!(c.scale_attn_weights)),
                    ("use_cache", json!(c.use_cache)),
                    (
                        "scale_attn_by_inverse_layer_idx",
                        json!(c.scale_attn_by_inverse_layer_idx),
                    ),
                    ("reorder_and_upcast_attn", json!(c.reorder_and_upcast_attn)),
                    ("summary_activation is null", summary_activation_is_null),
                ],
                activations,
            )
        }
        ModelConfig::T5(c) => (
            vec![
                ("vocab_size", json!(c.vocab_size)),
                ("d_model", json!(c.d_model)),
                ("d_kv", json!(c.d_kv)),
                ("d_ff", json!(c.d_ff)),
                ("num_layers", json!(c.num_layers)),
                ("num_decoder_layers", json!(c.num_decoder_layers)),
                ("num_heads", json!(c.num_heads)),
                (
                    "relative_attention_num_buckets",
                    json!(c.relative_attention_num_buckets),
                ),
                (
                    "relative_attention_max_distance",
                    json!(c.relative_attention_max_distance),
                ),
                ("dropout_rate", json!(c.dropout_rate)),
                ("classifier_dropout", json!(c.classifier_dropout)),
                ("layer_norm_epsilon", json!(c.layer_norm_epsilon)),
                ("initializer_factor", json!(c.initializer_factor)),
                ("feed_forward_proj", json!(c.feed_forward_proj)),
                ("is_gated_act", json!(c.is_gated_act)),
                ("use_cache", json!(c.use_cache)),
            ],
            vec![("dense_act_fn", c.dense_act_fn)],
        ),
        ModelConfig::Bart(c) => (
            vec![
                ("vocab_size", json!(c.vocab_size)),
                ("max_position_embeddings", json!(c.max_position_embeddings)),
                ("d_model", json!(c.d_model)),
                ("encoder_layers", json!(c.encoder_layers)),
                ("encoder_ffn_dim", json!(c.encoder_ffn_dim)),
                ("encoder_attention_heads", json!(c.encoder_attention_heads)),
                ("decoder_layers", json!(c.decoder_layers)),
                ("decoder_ffn_dim", json!(c.decoder_ffn_dim)),
                ("decoder_attention_heads", json!(c.decoder_attention_heads)),
                ("encoder_layerdrop", json!(c.encoder_layerdrop)),
                ("decoder_layerdrop", json!(c.decoder_layerdrop)),
                ("dropout", json!(c.dropout)),
                ("attention_dropout", json!(c.attention_dropout)),
                ("activation_dropout", json!(c.activation_dropout)),
                ("init_std", json!(c.init_std)),
                ("classifier_dropout", json!(c.classifier_dropout)),
                ("scale_embedding", json!(c.scale_embedding)),
                ("use_cache", json!(c.use_cache)),
            ],
            vec![("activation_function", c.activation_function)],
        ),
        ModelConfig::Marian(c) => (
            vec![
                ("vocab_size", json!(c.vocab_size)),
                ("decoder_vocab_size", json!(c.decoder_vocab_size)),
                ("max_position_embeddings", json!(c.max_position_embeddings)),
                ("d_model", json!(c.d_model)),
                ("encoder_layers", json!(c.encoder_layers)),
                ("encoder_ffn_dim", json!(c.encoder_ffn_dim)),
                ("encoder_attention_heads", json!(c.encoder_attention_heads)),
                ("decoder_layers", json!(c.decoder_layers)),
                ("decoder_ffn_dim", json!(c.decoder_ffn_dim)),
                ("decoder_attention_heads", json!(c.decoder_attention_heads)),
                ("encoder_layerdrop", json!(c.encoder_layerdrop)),
                ("decoder_layerdrop", json!(c.decoder_layerdrop)),
                ("dropout", json!(c.dropout)),
                ("attention_dropout", json!(c.attention_dropout)),
                ("activation_dropout", json!(c.activation_dropout)),
                ("init_std", json!(c.init_std)),
                ("scale_embedding", json!(c.scale_embedding)),
                (
                    "share_encoder_decoder_embeddings",
                    json!(c.share_encoder_decoder_embeddings),
                ),
                ("use_cache", json!(c.use_cache)),
            ],
            vec![("activation_function", c.activation_function)],
        ),
    }
}

/// The reference value of `key`; `"<field> is null"` asks whether the field is null.
pub fn reference_value(reference: &Value, key: &str) -> Value {
    match key.strip_suffix(" is null") {
        Some(field) => json!(reference[field].is_null()),
        None => reference[key].clone(),
    }
}

/// transformers writes enum-like strings in snake_case; ours are Debug names in CamelCase.
pub fn normalize(value: &Value) -> Value {
    match value {
        Value::String(text) => Value::String(text.replace('_', "").to_lowercase()),
        other => other.clone(),
    }
}

/// Equal, with f32 fields compared to the reference doubles within f32 rounding.
pub fn same(ours: &Value, reference: &Value) -> bool {
    match (ours, reference) {
        (Value::Number(a), Value::Number(b)) if a.is_f64() || b.is_f64() => {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            (a - b).abs() <= 1e-6 * b.abs()
        }
        _ => normalize(ours) == normalize(reference),
    }
}
