//! Row softmax with an optional additive mask.

use ndarray::{ArrayView2, ArrayViewMut2};

/// Softmax of each row of `x` in place, after adding `mask` (an additive mask broadcast over rows:
/// 0 to keep, a large negative value or -inf to drop). A row that is all -inf becomes all zeros.
///
/// # Shapes
/// `x`: (rows, columns); `mask`: columns.
pub fn softmax_rows(mut x: ArrayViewMut2<'_, f32>, mask: Option<&[f32]>) {
    for mut row in x.rows_mut() {
        if let Some(mask) = mask {
            assert_eq!(mask.len(), row.len(), "softmax_rows: mask length");
            for (value, m) in row.iter_mut().zip(mask) {
                *value += m;
            }
        }
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if max == f32::NEG_INFINITY {
            row.fill(0.0);
            continue;
        }
        let mut sum = 0.0f32;
        for value in row.iter_mut() {
            *value = (*value - max).exp();
            sum += *value;
        }
        row.mapv_inplace(|v| v / sum);
    }
}

/// The definition, for tests.
pub fn softmax_reference(x: ArrayView2<'_, f32>, mask: Option<&[f32]>) -> ndarray::Array2<f32> {
    let mut out = x.to_owned();
    softmax_rows(out.view_mut(), mask);
    out
}
