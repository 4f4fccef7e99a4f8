//! [`Linear`]: `y = x·Wᵀ + b` with the weight packed once (torch.nn.Linear, and GPT-2's Conv1D).

use ndarray::{Array2, ArrayView2, ArrayViewMut2};
use oxformer_tensor::{Activation, Epilogue, PackedMatrix, RowNorm, matmul_packed_into};

use crate::error::{Error, Result};
use crate::layers::LayerNorm;
use crate::tensor::Tensor;
use crate::weights::Weights;

/// A fully connected layer: `activation(x·Wᵀ + b) + residual`, with bias, activation and
/// residual fused into the write-out of the matrix product.
///
/// The weight is packed once at load into a [`PackedMatrix`]; no call copies it again.
#[derive(Debug, Clone)]
pub struct Linear {
    /// The weight prefix it was loaded from, for messages (`encoder.layer.0.intermediate.dense`).
    name: String,
    /// (in_features, out_features) after packing.
    weight: PackedMatrix,
    /// out_features values.
    bias: Option<Vec<f32>>,
}

/// Packs a checkpoint weight, then lets its mapped pages go: only the packed copy is read.
fn pack(weight: &Tensor, layout: fn(ArrayView2<'_, f32>) -> PackedMatrix) -> Result<PackedMatrix> {
    let packed = layout(weight.view2()?);
    weight.release_mapped_pages();
    Ok(packed)
}

impl Linear {
    /// Loads `weight` `[out, in]` and `bias` `[out]` under `weights`' prefix (torch.nn.Linear).
    ///
    /// # Errors
    /// [`Error::TensorNotFound`] / [`Error::ShapeMismatch`] naming the full dotted path.
    pub fn load(weights: &Weights, in_features: usize, out_features: usize) -> Result<Self> {
        let weight = weights.get("weight", &[out_features, in_features])?;
        let bias = weights.get("bias", &[out_features])?;
        Ok(Self {
            name: weights.prefix().to_string(),
            weight: pack(&weight, PackedMatrix::from_linear_weight)?,
            bias: Some(bias.as_slice().to_vec()),
        })
    }

    /// As [`Linear::load`] for a layer without bias (`nn.Linear(.., bias=False)`).
    ///
    /// # Errors
    /// As [`Linear::load`].
    pub fn load_without_bias(
        weights: &Weights,
        in_features: usize,
        out_features: usize,
    ) -> Result<Self> {
        let weight = weights.get("weight", &[out_features, in_features])?;
        Ok(Self {
            name: weights.prefix().to_string(),
            weight: pack(&weight, PackedMatrix::from_linear_weight)?,
            bias: None,
        })
    }

    /// Loads GPT-2's `Conv1D`: `weight` stored `[in, out]`, `bias` `[out]`.
    ///
    /// # Errors
    /// As [`Linear::load`].
    pub fn from_conv1d(weights: &Weights, in_features: usize, out_features: usize) -> Result<Self> {
        let weight = weights.get("weight", &[in_features, out_features])?;
        let bias = weights.get("bias", &[out_features])?;
        Ok(Self {
            name: weights.prefix().to_string(),
            weight: pack(&weight, PackedMatrix::from_in_out)?,
            bias: Some(bias.as_slice().to_vec()),
        })
    }

    /// Several Linear layers reading the same input, fused into one whose outputs are theirs
    /// side by side, in order: BERT's query, key and value become one product with
    /// N = 3 · hidden. Each part is loaded as [`Linear::load`] (weight `[out, in]` and bias).
    ///
    /// # Errors
    /// As [`Linear::load`] for each part.
    pub fn load_fused(parts: &[Weights], in_features: usize, out_features: usize) -> Result<Self> {
        let total = parts.len() * out_features;
        // [Σ out, in]: each part's rows after the previous part's, packed part by part
        let weights = parts
            .iter()
            .map(|part| part.get("weight", &[out_features, in_features]))
            .collect::<Result<Vec<_>>>()?;
        let views = weights
            .iter()
            .map(Tensor::view2)
            .collect::<Result<Vec<_>>>()?;
        let weight = PackedMatrix::from_linear_weights(&views);
        for part in &weights {
            part.release_mapped_pages();
        }
        let mut bias = Vec::with_capacity(total);
        for part in parts {
            bias.extend_from_slice(part.get("bias", &[out_features])?.as_slice());
        }
        let name = parts
            .iter()
            .map(|part| part.prefix().to_string())
            .collect::<Vec<_>>()
            .join(" + ");
        Ok(Self {
            name,
            weight,
            bias: Some(bias),
        })
    }

    /// A layer from values in hand: `weight` in the Linear layout `[out, in]`.
    ///
    /// # Errors
    /// [`Error::Layer`] when the bias length is not `out`.
    pub fn from_weight(
        name: &str,
        weight: ArrayView2<'_, f32>,
        bias: Option<&[f32]>,
    ) -> Result<Self> {
        if let Some(bias) = bias
            && bias.len() != weight.nrows()
        {
            return Err(Error::Layer {
                layer: name.to_string(),
                reason: format!(
                    "bias has {} values for a weight of {} output rows",
                    bias.len(),
                    weight.nrows()
                ),
            });
        }
        Ok(Self {
            name: name.to_string(),
            weight: PackedMatrix::from_linear_weight(weight),
            bias: bias.map(<[f32]>::to_vec),
        })
    }

    /// Number of input features (K).
    pub fn in_features(&self) -> usize {
        self.weight.k()
    }

    /// Number of output features (N).
    pub fn out_features(&self) -> usize {
        self.weight.n()
    }

    /// The weight prefix this layer was loaded from.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bias, if any.
    pub fn bias(&self) -> Option<&[f32]> {
        self.bias.as_deref()
    }

    /// `x·Wᵀ + b`.
    ///
    /// # Shapes
    /// `x`: (rows, in_features); result: (rows, out_features).
    ///
    /// # Errors
    /// [`Error::Layer`] when `x` does not have `in_features` columns.
    pub fn forward(&self, x: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        self.forward_with(x, Activation::Identity, None)
    }

    /// `activation(x·Wᵀ + b) + residual`, all in the product's write-out.
    ///
    /// # Shapes
    /// `x`: (rows, in_features); `residual`: (rows, out_features); result: (rows, out_features).
    ///
    /// # Errors
    /// [`Error::Layer`] when the shapes disagree.
    pub fn forward_with(
        &self,
        x: ArrayView2<'_, f32>,
        activation: Activation,
        residual: Option<ArrayView2<'_, f32>>,
    ) -> Result<Array2<f32>> {
        let mut out = Array2::<f32>::zeros((x.nrows(), self.out_features()));
        self.forward_into(x, activation, residual, out.view_mut())?;
        Ok(out)
    }

    /// [`Linear::forward_with`] writing into `out` (rows, out_features), which is overwritten.
    ///
    /// # Errors
    /// [`Error::Layer`] when the shapes disagree.
    pub fn forward_into(
        &self,
        x: ArrayView2<'_, f32>,
        activation: Activation,
        residual: Option<ArrayView2<'_, f32>>,
        out: ArrayViewMut2<'_, f32>,
    ) -> Result<()> {
        self.forward_into_epilogue(x, activation, residual, None, out)
    }

    /// `out ← layer_norm(x·Wᵀ + b + residual)` (BERT's `LayerNorm(dense(x) + input)`): the
    /// residual added in the product's write-out, each block of rows normalised by the thread
    /// that finishes it. `out`: (rows, out_features), overwritten.
    ///
    /// # Errors
    /// [`Error::Layer`] when the shapes disagree, the norm's among them.
    pub fn forward_into_normed(
        &self,
        x: ArrayView2<'_, f32>,
        residual: ArrayView2<'_, f32>,
        layer_norm: &LayerNorm,
        out: ArrayViewMut2<'_, f32>,
    ) -> Result<()> {
        if layer_norm.dim() != self.out_features() {
            return Err(self.shape_error(format!(
                "its {} outputs go to a LayerNorm `{}` of {} features",
                self.out_features(),
                layer_norm.name(),
                layer_norm.dim()
            )));
        }
        let norm = layer_norm.row_norm();
        self.forward_into_epilogue(x, Activation::Identity, Some(residual), Some(norm), out)
    }

    fn forward_into_epilogue(
        &self,
        x: ArrayView2<'_, f32>,
        activation: Activation,
        residual: Option<ArrayView2<'_, f32>>,
        layer_norm: Option<RowNorm<'_>>,
        out: ArrayViewMut2<'_, f32>,
    ) -> Result<()> {
        let (rows, out_features) = (x.nrows(), self.out_features());
        if x.ncols() != self.in_features() {
            return Err(self.shape_error(format!(
                "input has {} features, the layer takes {}",
                x.ncols(),
                self.in_features()
            )));
        }
        if let Some(residual) = &residual
            && residual.dim() != (rows, out_features)
        {
            return Err(self.shape_error(format!(
                "residual has shape {:?}, expected ({rows}, {out_features})",
                residual.dim()
            )));
        }
        if out.dim() != (rows, out_features) {
            return Err(self.shape_error(format!(
                "output has shape {:?}, expected ({rows}, {out_features})",
                out.dim()
            )));
        }
        let epilogue = Epilogue {
            bias: self.bias.as_deref(),
            activation,
            residual,
            layer_norm,
        };
        matmul_packed_into(x, &self.weight, &epilogue, out);
        Ok(())
    }

    fn shape_error(&self, reason: String) -> Error {
        Error::Layer {
            layer: format!("Linear `{}`", self.name),
            reason,
        }
    }
}
