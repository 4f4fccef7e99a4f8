//! [`MultiHeadAttention`]: self-attention with its projections, as transformers' BART/Marian
//! `BartAttention` (q_proj, k_proj, v_proj, out_proj) reads, on oxformer-tensor's fused
//! attention kernel.

use ndarray::{Array2, Array3, ArrayView3, Axis, s};
use oxformer_tensor::{AttentionMask, attention};

use crate::error::{Error, Result};
use crate::layers::Linear;
use crate::weights::Weights;

/// `out_proj(softmax(Q·Kᵀ/√head_dim + mask)·V)` with Q, K, V projections of the input, split
/// into `num_heads` heads (the Q, K, V projections run as one product).
#[derive(Debug)]
pub struct MultiHeadAttention {
    qkv: Linear,
    output: Linear,
    num_heads: usize,
}

impl MultiHeadAttention {
    /// Loads `q_proj`, `k_proj`, `v_proj` and `out_proj` (each `weight` `[hidden, hidden]` and
    /// `bias` `[hidden]`) under `weights`' prefix.
    ///
    /// # Errors
    /// [`Error::Layer`] when `hidden` is not a multiple of `num_heads`; missing or mis-shaped
    /// tensors, named by their full dotted path.
    pub fn load(weights: &Weights, hidden: usize, num_heads: usize) -> Result<Self> {
        check_heads(weights.prefix(), hidden, num_heads)?;
        let qkv = Linear::load_fused(
            &[
                weights.sub("q_proj"),
                weights.sub("k_proj"),
                weights.sub("v_proj"),
            ],
            hidden,
            hidden,
        )?;
        let output = Linear::load(&weights.sub("out_proj"), hidden, hidden)?;
        Self::from_parts(qkv, output, num_heads)
    }

    /// The layer from a fused projection (`[q; k; v]`: `hidden` inputs, `3 · hidden` outputs)
    /// and the output projection (`hidden` → `hidden`).
    ///
    /// # Errors
    /// [`Error::Layer`] when the widths disagree or `hidden` is not a multiple of `num_heads`.
    pub fn from_parts(qkv: Linear, output: Linear, num_heads: usize) -> Result<Self> {
        let hidden = output.out_features();
        check_heads(qkv.name(), hidden, num_heads)?;
        if qkv.in_features() != hidden
            || qkv.out_features() != 3 * hidden
            || output.in_features() != hidden
        {
            return Err(Error::Layer {
                layer: qkv.name().to_string(),
                reason: format!(
                    "the fused projection is {} → {} and the output {} → {}; expected {hidden} → \
                     {} and {hidden} → {hidden}",
                    qkv.in_features(),
                    qkv.out_features(),
                    output.in_features(),
                    output.out_features(),
                    3 * hidden
                ),
            });
        }
        Ok(Self {
            qkv,
            output,
            num_heads,
        })
    }

    /// The model width.
    pub fn hidden_size(&self) -> usize {
        self.output.out_features()
    }

    /// The number of heads.
    pub fn num_heads(&self) -> usize {
        self.num_heads
    }

    /// Self-attention over each sequence of the batch.
    ///
    /// # Shapes
    /// `x`: (batch, seq, hidden); `mask.key_padding`: (batch, seq); result: (batch, seq,
    /// hidden).
    ///
    /// # Errors
    /// [`Error::Layer`] when `x` is not `hidden` wide or the mask does not match it.
    pub fn forward(&self, x: ArrayView3<'_, f32>, mask: &AttentionMask<'_>) -> Result<Array3<f32>> {
        let (batch, seq, hidden) = x.dim();
        if hidden != self.hidden_size() {
            return Err(self.error(format!(
                "the input is {hidden} wide, the layer {}",
                self.hidden_size()
            )));
        }
        if let Some(padding) = mask.key_padding
            && padding.dim() != (batch, seq)
        {
            return Err(self.error(format!(
                "the key padding mask is {:?} for an input of (batch, seq) = ({batch}, {seq})",
                padding.dim()
            )));
        }
        let rows = x
            .as_standard_layout()
            .into_shape_with_order((batch * seq, hidden))
            .expect("a standard-layout array reshapes")
            .to_owned();
        let qkv = self.qkv.forward(rows.view())?; // (batch · seq, 3 · hidden)
        let head_dim = hidden / self.num_heads;
        // (batch, seq, 3, heads, head_dim) → three (batch, heads, seq, head_dim) views.
        let split = qkv
            .view()
            .into_shape_with_order((batch, seq, 3, self.num_heads, head_dim))
            .expect("the product is (batch · seq, 3 · hidden)");
        let part = |index: usize| split.index_axis(Axis(2), index).permuted_axes([0, 2, 1, 3]);
        let context = attention(
            part(0),
            part(1),
            part(2),
            mask,
            1.0 / (head_dim as f32).sqrt(),
        ); // (batch, heads, seq, head_dim)
        let mut merged = Array2::<f32>::zeros((batch * seq, hidden));
        for b in 0..batch {
            for h in 0..self.num_heads {
                merged
                    .slice_mut(s![b * seq..(b + 1) * seq, h * head_dim..(h + 1) * head_dim])
                    .assign(&context.slice(s![b, h, .., ..]));
            }
        }
        let out = self.output.forward(merged.view())?;
        Ok(out
            .into_shape_with_order((batch, seq, hidden))
            .expect("(batch · seq, hidden) reshapes"))
    }

    fn error(&self, reason: String) -> Error {
        Error::Layer {
            layer: format!("MultiHeadAttention `{}`", self.qkv.name()),
            reason,
        }
    }
}

fn check_heads(name: &str, hidden: usize, num_heads: usize) -> Result<()> {
    if num_heads == 0 || !hidden.is_multiple_of(num_heads) {
        return Err(Error::Layer {
            layer: name.to_string(),
            reason: format!("a width of {hidden} does not split into {num_heads} heads"),
        });
    }
    Ok(())
}
