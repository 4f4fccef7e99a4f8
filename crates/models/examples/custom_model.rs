//! Build your own model from oxformer's layers: a tiny post-LayerNorm transformer encoder (token
//! and position embeddings, then layers of self-attention and feed-forward, each followed by a
//! residual LayerNorm, as BART's encoder layers) made of oxformer-nn's [`Embedding`],
//! [`MultiHeadAttention`], [`FeedForward`] and [`LayerNorm`] on oxformer-tensor's kernels.
//!
//! The example writes its own weights to a safetensors file (values from a formula, so that a
//! reference can make the same ones: `xtask/python/fixtures_custom_model.py`), loads them by
//! name through [`Weights`], and runs one padded batch:
//!
//! ```sh
//! cargo run --release -p oxformer-models --example custom_model
//! ```
//!
//! `crates/models/tests/custom_model.rs` checks its output against PyTorch's
//! (`fixtures/custom-model/reference.json`).

use std::collections::BTreeMap;
use std::error::Error;
use std::path::Path;

use ndarray::{Array2, Array3, ArrayView2, Axis};
use oxformer_nn::{Embedding, FeedForward, LayerNorm, MultiHeadAttention, Weights};
use oxformer_tensor::{Activation, AttentionMask};

/// The model's sizes.
pub const VOCAB: usize = 40;
pub const MAX_POSITIONS: usize = 24;
pub const HIDDEN: usize = 16;
pub const HEADS: usize = 4;
pub const INNER: usize = 32;
pub const LAYERS: usize = 2;
const EPS: f32 = 1e-5;

/// One encoder layer: `LN(x + attention(x))`, then `LN(x + ffn(x))`.
pub struct Layer {
    attention: MultiHeadAttention,
    attention_norm: LayerNorm,
    feed_forward: FeedForward,
    output_norm: LayerNorm,
}

impl Layer {
    pub fn load(weights: &Weights) -> Result<Self, oxformer_nn::Error> {
        Ok(Self {
            attention: MultiHeadAttention::load(&weights.sub("self_attn"), HIDDEN, HEADS)?,
            attention_norm: LayerNorm::load(&weights.sub("self_attn_layer_norm"), HIDDEN, EPS)?,
            feed_forward: FeedForward::load(weights, HIDDEN, INNER, Activation::Gelu)?,
            output_norm: LayerNorm::load(&weights.sub("final_layer_norm"), HIDDEN, EPS)?,
        })
    }

    /// # Shapes
    /// `hidden`: (batch, seq, HIDDEN), overwritten with the layer's output.
    pub fn forward(
        &self,
        hidden: &mut Array3<f32>,
        mask: &AttentionMask<'_>,
    ) -> Result<(), oxformer_nn::Error> {
        let (batch, seq, width) = hidden.dim();
        let attended = self.attention.forward(hidden.view(), mask)?;
        let mut rows = as_rows(hidden);
        let attended = attended
            .into_shape_with_order((batch * seq, width))
            .expect("(batch, seq, hidden) reshapes");
        self.attention_norm
            .forward_in_place(rows.view_mut(), Some(attended.view()))?;
        let inner = self.feed_forward.forward(rows.view())?;
        self.output_norm
            .forward_in_place(rows.view_mut(), Some(inner.view()))?;
        *hidden = rows
            .into_shape_with_order((batch, seq, width))
            .expect("(batch · seq, hidden) reshapes");
        Ok(())
    }
}

fn as_rows(x: &Array3<f32>) -> Array2<f32> {
    let (batch, seq, width) = x.dim();
    x.as_standard_layout()
        .into_owned()
        .into_shape_with_order((batch * seq, width))
        .expect("a standard-layout array reshapes")
}

/// The whole encoder.
pub struct TinyEncoder {
    tokens: Embedding,
    positions: Embedding,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
}

impl TinyEncoder {
    pub fn load(weights: &Weights) -> Result<Self, oxformer_nn::Error> {
        let embeddings = weights.sub("embeddings");
        let mut layers = Vec::with_capacity(LAYERS);
        for index in 0..LAYERS {
            layers.push(Layer::load(&weights.sub("layers").sub(index))?);
        }
        Ok(Self {
            tokens: Embedding::load(&embeddings.sub("tokens"), VOCAB, HIDDEN)?,
            positions: Embedding::load(&embeddings.sub("positions"), MAX_POSITIONS, HIDDEN)?,
            embedding_norm: LayerNorm::load(&embeddings.sub("layer_norm"), HIDDEN, EPS)?,
            layers,
        })
    }

    /// The last hidden state of a right-padded batch.
    ///
    /// # Shapes
    /// `ids`: (batch, seq); `padding`: (batch, seq), 1 for real tokens; result:
    /// (batch, seq, HIDDEN).
    pub fn forward(
        &self,
        ids: ArrayView2<'_, u32>,
        padding: ArrayView2<'_, f32>,
    ) -> Result<Array3<f32>, oxformer_nn::Error> {
        let (batch, seq) = ids.dim();
        let mut rows = Array2::<f32>::zeros((batch * seq, HIDDEN));
        for ((b, t), &id) in ids.indexed_iter() {
            let row = rows.row_mut(b * seq + t);
            let row = row
                .into_slice()
                .expect("rows of a fresh array are contiguous");
            self.tokens.add_row_to(id, row)?;
            self.positions.add_row_to(t as u32, row)?;
        }
        self.embedding_norm
            .forward_in_place(rows.view_mut(), None)?;
        let mut hidden = rows
            .into_shape_with_order((batch, seq, HIDDEN))
            .expect("(batch · seq, hidden) reshapes");
        let mask = AttentionMask {
            key_padding: Some(padding),
            causal: false,
            bias: None,
        };
        for layer in &self.layers {
            layer.forward(&mut hidden, &mask)?;
        }
        Ok(hidden)
    }
}

/// Every tensor of the model: name and shape, in the order their values are made.
pub fn tensor_shapes() -> Vec<(String, Vec<usize>)> {
    let mut shapes = vec![
        ("embeddings.tokens.weight".to_string(), vec![VOCAB, HIDDEN]),
        (
            "embeddings.positions.weight".to_string(),
            vec![MAX_POSITIONS, HIDDEN],
        ),
        ("embeddings.layer_norm.weight".to_string(), vec![HIDDEN]),
        ("embeddings.layer_norm.bias".to_string(), vec![HIDDEN]),
    ];
    for index in 0..LAYERS {
        let prefix = format!("layers.{index}");
        for projection in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            shapes.push((
                format!("{prefix}.self_attn.{projection}.weight"),
                vec![HIDDEN, HIDDEN],
            ));
            shapes.push((
                format!("{prefix}.self_attn.{projection}.bias"),
                vec![HIDDEN],
            ));
        }
        for norm in ["self_attn_layer_norm", "final_layer_norm"] {
            shapes.push((format!("{prefix}.{norm}.weight"), vec![HIDDEN]));
            shapes.push((format!("{prefix}.{norm}.bias"), vec![HIDDEN]));
        }
        shapes.push((format!("{prefix}.fc1.weight"), vec![INNER, HIDDEN]));
        shapes.push((format!("{prefix}.fc1.bias"), vec![INNER]));
        shapes.push((format!("{prefix}.fc2.weight"), vec![HIDDEN, INNER]));
        shapes.push((format!("{prefix}.fc2.bias"), vec![HIDDEN]));
    }
    shapes
}

/// The values of tensor number `seed`: `scale · sin(0.7548776662 · i + 0.5698402910 · seed)`,
/// in f64 then rounded to f32 (the reference script computes the same). LayerNorm weights are
/// 1 plus such values.
pub fn tensor_values(name: &str, shape: &[usize], seed: usize) -> Vec<f32> {
    let count: usize = shape.iter().product();
    let is_norm_weight = name.contains("norm") && name.ends_with(".weight");
    let scale = if shape.len() == 2 && !name.starts_with("embeddings") {
        1.0 / (shape[1] as f64).sqrt()
    } else if name.starts_with("embeddings") && shape.len() == 2 {
        1.0
    } else {
        0.1
    };
    (0..count)
        .map(|i| {
            let wave = (0.754_877_666_2 * i as f64 + 0.569_840_291 * seed as f64).sin();
            let value = if is_norm_weight {
                1.0 + 0.1 * wave
            } else {
                scale * wave
            };
            value as f32
        })
        .collect()
}

/// Writes the model's weights to `path` as safetensors.
pub fn write_weights(path: &Path) -> Result<(), Box<dyn Error>> {
    let mut bytes: BTreeMap<String, (Vec<usize>, Vec<u8>)> = BTreeMap::new();
    for (seed, (name, shape)) in tensor_shapes().into_iter().enumerate() {
        let values = tensor_values(&name, &shape, seed);
        let data = values
            .iter()
            .flat_map(|value| value.to_le_bytes())
            .collect();
        bytes.insert(name, (shape, data));
    }
    let views = bytes
        .iter()
        .map(|(name, (shape, data))| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                .map(|view| (name.clone(), view))
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize_to_file(views, None, path)?;
    Ok(())
}

/// The example's batch: two sequences of 7 and 5 tokens, the second right-padded with id 0.
pub fn example_batch() -> (Array2<u32>, Array2<f32>) {
    let ids = ndarray::arr2(&[[1u32, 5, 9, 14, 22, 31, 2], [1, 7, 33, 12, 2, 0, 0]]);
    let padding = ids.map(|_| 1.0f32);
    let mut padding = padding;
    padding.index_axis_mut(Axis(0), 1).as_slice_mut().unwrap()[5..].fill(0.0);
    (ids, padding)
}

/// Writes the weights into `dir`, loads the model from them and runs the example batch.
pub fn run(dir: &Path) -> Result<Array3<f32>, Box<dyn Error>> {
    let path = dir.join("model.safetensors");
    write_weights(&path)?;
    let weights = Weights::from_file(&path)?;
    let model = TinyEncoder::load(&weights)?;
    let (ids, padding) = example_batch();
    Ok(model.forward(ids.view(), padding.view())?)
}

#[allow(dead_code)] // the test includes this file for `run` only
fn main() -> Result<(), Box<dyn Error>> {
    let dir = std::env::temp_dir().join("oxformer-custom-model");
    std::fs::create_dir_all(&dir)?;
    let hidden = run(&dir)?;
    println!(
        "weights written to and loaded from {}",
        dir.join("model.safetensors").display()
    );
    println!("last hidden state {:?}:", hidden.dim());
    for (b, sequence) in hidden.outer_iter().enumerate() {
        let first: Vec<String> = sequence
            .row(0)
            .iter()
            .take(6)
            .map(|value| format!("{value:.4}"))
            .collect();
        println!("  sequence {b}, first token: [{}, …]", first.join(", "));
    }
    Ok(())
}
