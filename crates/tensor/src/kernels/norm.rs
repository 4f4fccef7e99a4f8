//! Layer normalisation, with an optional fused residual add.

use crate::threads::for_each_chunk_mut;
use ndarray::{Array2, ArrayView2, ArrayViewMut2, CowArray};

use crate::isa::{Isa, Token, isa};
use crate::simd::Simd;

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

/// [`layer_norm`] in place: `x ← LayerNorm(x + residual)`. Vectorised, in f32 (two passes: mean,
/// then variance of the centred values); rows spread over the threads (the team, else rayon) when there are many.
///
/// # Panics
/// If the shapes disagree.
pub fn layer_norm_in_place(
    x: ArrayViewMut2<'_, f32>,
    residual: Option<ArrayView2<'_, f32>>,
    weight: &[f32],
    bias: &[f32],
    eps: f32,
) {
    layer_norm_in_place_on(isa(), x, residual, weight, bias, eps);
}

/// [`layer_norm_in_place`] with the instruction set `isa` rather than [`isa()`];
/// [`Isa::Scalar`] uses the same loops in plain Rust.
///
/// # Panics
/// If the shapes disagree, or this CPU cannot run `isa`.
pub fn layer_norm_in_place_on(
    isa: Isa,
    mut x: ArrayViewMut2<'_, f32>,
    residual: Option<ArrayView2<'_, f32>>,
    weight: &[f32],
    bias: &[f32],
    eps: f32,
) {
    let (rows, dim) = x.dim();
    assert_eq!(weight.len(), dim, "layer_norm: weight length");
    assert_eq!(bias.len(), dim, "layer_norm: bias length");
    if let Some(residual) = &residual {
        assert_eq!(residual.dim(), x.dim(), "layer_norm: residual shape");
    }
    let token = isa.token();
    if rows == 0 || dim == 0 {
        return;
    }
    // a view when the residual is already row-major (the usual case), a copy otherwise
    let residual = residual.map(|r| {
        if r.is_standard_layout() {
            CowArray::from(r)
        } else {
            CowArray::from(r.as_standard_layout().into_owned())
        }
    });
    let normalise = |(index, row): (usize, &mut [f32])| {
        let residual_row = residual
            .as_ref()
            .map(|r| &r.as_slice().expect("standard layout")[index * dim..(index + 1) * dim]);
        normalise_row(token, row, residual_row, weight, bias, eps);
    };
    if let Some(values) = x.as_slice_mut() {
        if rows * dim >= 1 << 15 {
            // a few rows per part, whole rows each
            let rows_per_part = ((1 << 12) / dim).max(1);
            for_each_chunk_mut(values, rows_per_part * dim, |part, chunk| {
                for (offset, row) in chunk.chunks_mut(dim).enumerate() {
                    normalise((part * rows_per_part + offset, row));
                }
            });
        } else {
            values.chunks_mut(dim).enumerate().for_each(normalise);
        }
        return;
    }
    for (index, mut row) in x.rows_mut().into_iter().enumerate() {
        let mut copy = row.to_vec();
        normalise((index, &mut copy));
        row.assign(&ArrayView2::from_shape((1, dim), &copy).expect("row").row(0));
    }
}

/// `row ← LayerNorm(row + residual)` with the instruction set of `token`.
///
/// # Panics
/// If `residual`, `weight` or `bias` is not as long as `row`.
pub(crate) fn normalise_row(
    token: Token,
    row: &mut [f32],
    residual: Option<&[f32]>,
    weight: &[f32],
    bias: &[f32],
    eps: f32,
) {
    let dim = row.len();
    assert!(
        weight.len() == dim && bias.len() == dim && residual.is_none_or(|r| r.len() == dim),
        "normalise_row: operand lengths"
    );
    match token {
        #[cfg(target_arch = "x86_64")]
        Token::Avx512(_) => {
            // SAFETY: the token proves the CPU has AVX-512F, AVX2 and FMA; the lengths agree.
            unsafe { x86::row_avx512(row, residual, weight, bias, eps) }
        }
        #[cfg(target_arch = "x86_64")]
        Token::Avx2(_) => {
            // SAFETY: the token proves the CPU has AVX2 and FMA; the lengths agree.
            unsafe { x86::row_avx2(row, residual, weight, bias, eps) }
        }
        _ => {
            if let Some(residual) = residual {
                row.iter_mut().zip(residual).for_each(|(x, r)| *x += r);
            }
            let dim = row.len() as f32;
            let mean = row.iter().sum::<f32>() / dim;
            let variance = row.iter().map(|&x| (x - mean) * (x - mean)).sum::<f32>() / dim;
            let inverse = 1.0 / (variance + eps).sqrt();
            for ((x, w), b) in row.iter_mut().zip(weight).zip(bias) {
                *x = (*x - mean) * inverse * w + b;
            }
        }
    }
}

/// One row: residual add, mean, variance, normalise, all `S::LANES` at a time.
///
/// # Safety
/// Only on a CPU with `S`'s instruction set (what a [`Token`] for it proves); `residual` (when
/// given), `weight` and `bias` hold at least `row.len()` floats.
#[inline(always)]
unsafe fn row_body<S: Simd>(
    row: &mut [f32],
    residual: Option<&[f32]>,
    weight: &[f32],
    bias: &[f32],
    eps: f32,
) {
    let dim = row.len();
    let lanes = S::LANES;
    let ptr = row.as_mut_ptr();
    // (offset, width) of each vector of the row, the last one partial
    let vectors = (0..dim)
        .step_by(lanes)
        .map(move |offset| (offset, lanes.min(dim - offset)));
    // SAFETY: the caller runs on a CPU with `S`'s instruction set and gives `residual`, `weight`
    // and `bias` as long as `row`; every load and store covers (offset, width) of one vector of the
    // row, inside all four.
    unsafe {
        let load = |p: *const f32, width: usize| {
            if width == lanes {
                S::load(p)
            } else {
                S::load_partial(p, width)
            }
        };
        let store = |p: *mut f32, width: usize, v: S::V| {
            if width == lanes {
                S::store(p, v)
            } else {
                S::store_partial(p, width, v)
            }
        };
        let mut sum = S::splat(0.0);
        for (offset, width) in vectors.clone() {
            let mut x = load(ptr.add(offset), width);
            if let Some(residual) = residual {
                x = S::add(x, load(residual.as_ptr().add(offset), width));
                store(ptr.add(offset), width, x);
            }
            sum = S::add(sum, x);
        }
        let mean = S::reduce_add(sum) / dim as f32;
        let mean_v = S::splat(mean);
        let mut squares = S::splat(0.0);
        for (offset, width) in vectors.clone() {
            // padding lanes load 0 and subtract 0, adding nothing
            let mean_here = if width == lanes {
                mean_v
            } else {
                load_mask::<S>(width, mean)
            };
            let centred = S::sub(load(ptr.add(offset), width), mean_here);
            squares = S::fma(centred, centred, squares);
        }
        let variance = S::reduce_add(squares) / dim as f32;
        let inverse = S::splat(1.0 / (variance + eps).sqrt());
        for (offset, width) in vectors {
            let x = load(ptr.add(offset), width);
            let normalised = S::mul(S::sub(x, mean_v), inverse);
            let value = S::fma(
                normalised,
                load(weight.as_ptr().add(offset), width),
                load(bias.as_ptr().add(offset), width),
            );
            store(ptr.add(offset), width, value);
        }
    }
}

/// `mean` in the first `width` lanes, 0 elsewhere.
///
/// # Safety
/// Only on a CPU with `S`'s instruction set (what a [`Token`] for it proves); `width ≤ S::LANES`.
#[inline(always)]
unsafe fn load_mask<S: Simd>(width: usize, mean: f32) -> S::V {
    let values = [mean; 16];
    // SAFETY: `values` holds 16 ≥ LANES floats, of which the first `width` ≤ LANES are read; the
    // caller has `S`'s instruction set.
    unsafe { S::load_partial(values.as_ptr(), width) }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use crate::simd::{Avx2, Avx512};

    /// # Safety
    /// The CPU has AVX-512F, AVX2 and FMA; `residual`, `weight` and `bias` are as long as `row`.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn row_avx512(
        row: &mut [f32],
        residual: Option<&[f32]>,
        weight: &[f32],
        bias: &[f32],
        eps: f32,
    ) {
        // SAFETY: the caller's contract (`# Safety` above) is the body's.
        unsafe { row_body::<Avx512>(row, residual, weight, bias, eps) }
    }

    /// # Safety
    /// The CPU has AVX2 and FMA; `residual`, `weight` and `bias` are as long as `row`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn row_avx2(
        row: &mut [f32],
        residual: Option<&[f32]>,
        weight: &[f32],
        bias: &[f32],
        eps: f32,
    ) {
        // SAFETY: the caller's contract (`# Safety` above) is the body's.
        unsafe { row_body::<Avx2>(row, residual, weight, bias, eps) }
    }
}

/// The definition: [`layer_norm`] computed in f64 with plain loops.
pub fn layer_norm_reference(
    x: ArrayView2<'_, f32>,
    residual: Option<ArrayView2<'_, f32>>,
    weight: &[f32],
    bias: &[f32],
    eps: f32,
) -> Array2<f32> {
    let dim = x.ncols();
    assert_eq!(weight.len(), dim, "layer_norm: weight length");
    assert_eq!(bias.len(), dim, "layer_norm: bias length");
    let mut x = x.to_owned();
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
    x
}
