//! [`LayerNorm`]: torch.nn.LayerNorm over the last axis, with an optional fused residual add.

use ndarray::{Array2, ArrayView2, ArrayViewMut2};
use oxformer_tensor::{RowNorm, layer_norm_in_place};

use crate::error::{Error, Result};
use crate::tensor::Tensor;
use crate::weights::Weights;

/// `LayerNorm(x + residual) · weight + bias`, normalising each row.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
}

impl LayerNorm {
    /// Loads `weight` and `bias` `[dim]` under `weights`' prefix; old TF-converted checkpoints
    /// call them `gamma` and `beta`, which are accepted too (as transformers does).
    ///
    /// # Errors
    /// [`Error::TensorNotFound`] / [`Error::ShapeMismatch`] naming the full dotted path.
    pub fn load(weights: &Weights, dim: usize, eps: f32) -> Result<Self> {
        Ok(Self {
            weight: weights.get_any(&["weight", "gamma"], &[dim])?,
            bias: weights.get_any(&["bias", "beta"], &[dim])?,
            eps,
        })
    }

    /// A norm from values in hand; `name` names it in errors.
    ///
    /// # Errors
    /// [`Error::Layer`] when `weight` and `bias` differ in length.
    pub fn from_parts(name: &str, weight: &[f32], bias: &[f32], eps: f32) -> Result<Self> {
        if weight.len() != bias.len() {
            return Err(Error::Layer {
                layer: name.to_string(),
                reason: format!(
                    "weight has {} values but bias has {}",
                    weight.len(),
                    bias.len()
                ),
            });
        }
        Ok(Self {
            weight: Tensor::from_vec(
                &format!("{name}.weight"),
                vec![weight.len()],
                weight.to_vec(),
            )?,
            bias: Tensor::from_vec(&format!("{name}.bias"), vec![bias.len()], bias.to_vec())?,
            eps,
        })
    }

    /// The size of the normalised axis.
    pub fn dim(&self) -> usize {
        self.weight.len()
    }

    /// The epsilon added to the variance.
    pub fn eps(&self) -> f32 {
        self.eps
    }

    /// The full name of its weight tensor, which names the layer in errors.
    pub fn name(&self) -> &str {
        self.weight.name()
    }

    /// This norm as a product's epilogue ([`oxformer_tensor::Epilogue::layer_norm`]).
    pub fn row_norm(&self) -> RowNorm<'_> {
        RowNorm {
            weight: self.weight.as_slice(),
            bias: self.bias.as_slice(),
            eps: self.eps,
        }
    }

    /// `LayerNorm(x + residual)`.
    ///
    /// # Shapes
    /// `x`, `residual`: (rows, dim); result: (rows, dim).
    ///
    /// # Errors
    /// [`Error::Layer`] when the shapes disagree.
    pub fn forward(
        &self,
        x: ArrayView2<'_, f32>,
        residual: Option<ArrayView2<'_, f32>>,
    ) -> Result<Array2<f32>> {
        let mut out = x.to_owned();
        self.forward_in_place(out.view_mut(), residual)?;
        Ok(out)
    }

    /// `x ← LayerNorm(x + residual)`.
    ///
    /// # Errors
    /// [`Error::Layer`] when the shapes disagree.
    pub fn forward_in_place(
        &self,
        x: ArrayViewMut2<'_, f32>,
        residual: Option<ArrayView2<'_, f32>>,
    ) -> Result<()> {
        let dim = self.dim();
        let layer = || format!("LayerNorm `{}`", self.name());
        if x.ncols() != dim {
            return Err(Error::Layer {
                layer: layer(),
                reason: format!("input has {} features, the layer takes {dim}", x.ncols()),
            });
        }
        if let Some(residual) = &residual
            && residual.dim() != x.dim()
        {
            return Err(Error::Layer {
                layer: layer(),
                reason: format!(
                    "residual has shape {:?}, input {:?}",
                    residual.dim(),
                    x.dim()
                ),
            });
        }
        layer_norm_in_place(
            x,
            residual,
            self.weight.as_slice(),
            self.bias.as_slice(),
            self.eps,
        );
        Ok(())
    }
}
