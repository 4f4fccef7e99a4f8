//! Row softmax with an optional additive mask.

use ndarray::{ArrayView2, ArrayViewMut2};

use crate::isa::{Isa, Token, isa};
use crate::simd::{self, Simd};

/// Softmax of each row of `x` in place, after adding `mask` (an additive mask broadcast over rows:
/// 0 to keep, a large negative value or -inf to drop). A row that is all -inf becomes all zeros.
///
/// # Shapes
/// `x`: (rows, columns); `mask`: columns.
///
/// # Panics
/// If the mask length differs from the number of columns.
pub fn softmax_rows(x: ArrayViewMut2<'_, f32>, mask: Option<&[f32]>) {
    softmax_rows_on(isa(), x, mask);
}

/// [`softmax_rows`] with the instruction set `isa` rather than [`isa()`]; [`Isa::Scalar`] runs
/// [`softmax_reference`]'s loops.
///
/// # Panics
/// If the mask length differs from the number of columns, or this CPU cannot run `isa`.
pub fn softmax_rows_on(isa: Isa, mut x: ArrayViewMut2<'_, f32>, mask: Option<&[f32]>) {
    if let Some(mask) = mask {
        assert_eq!(mask.len(), x.ncols(), "softmax_rows: mask length");
    }
    let token = isa.token();
    for mut row in x.rows_mut() {
        match (token, row.as_slice_mut()) {
            #[cfg(target_arch = "x86_64")]
            (Token::Avx512(token), Some(values)) => x86::row_avx512(token, values, mask),
            #[cfg(target_arch = "x86_64")]
            (Token::Avx2(token), Some(values)) => x86::row_avx2(token, values, mask),
            _ => {
                let mut values = row.to_vec();
                softmax_row_reference(&mut values, mask);
                row.iter_mut().zip(values).for_each(|(x, v)| *x = v);
            }
        }
    }
}

fn softmax_row_reference(row: &mut [f32], mask: Option<&[f32]>) {
    if let Some(mask) = mask {
        for (value, m) in row.iter_mut().zip(mask) {
            *value += m;
        }
    }
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        row.fill(0.0);
        return;
    }
    let mut sum = 0.0f32;
    for value in row.iter_mut() {
        *value = (*value - max).exp();
        sum += *value;
    }
    row.iter_mut().for_each(|v| *v /= sum);
}

/// # Safety
/// Only on a CPU with `S`'s instruction set (what a [`Token`] for it proves); `mask`, when given,
/// holds at least `row.len()` floats.
#[inline(always)]
unsafe fn row_body<S: Simd>(row: &mut [f32], mask: Option<&[f32]>) {
    let lanes = S::LANES;
    let columns = row.len();
    let ptr = row.as_mut_ptr();
    // SAFETY: the caller runs on a CPU with `S`'s instruction set and gives `mask`, when present,
    // as long as `row`; every load and store covers one vector of the row from `offset`, its last
    // one partial, inside both.
    unsafe {
        // add the mask; the maximum ignores NaN, as `f32::max` does in the reference
        let mut max = f32::NEG_INFINITY;
        for offset in (0..columns).step_by(lanes) {
            let width = lanes.min(columns - offset);
            let mut x = S::load_partial(ptr.add(offset), width);
            if let Some(mask) = mask {
                x = S::add(x, S::load_partial(mask.as_ptr().add(offset), width));
                S::store_partial(ptr.add(offset), width, x);
            }
            let masked = S::select(
                S::lt(S::splat(width as f32 - 0.5), lane_indices::<S>()),
                S::splat(f32::NEG_INFINITY),
                x,
            );
            max = max.max(S::reduce_max(masked));
        }
        if max == f32::NEG_INFINITY {
            row.fill(0.0);
            return;
        }
        let max_v = S::splat(max);
        let mut sum = S::splat(0.0);
        for offset in (0..columns).step_by(lanes) {
            let width = lanes.min(columns - offset);
            let e = simd::exp::<S>(S::sub(S::load_partial(ptr.add(offset), width), max_v));
            S::store_partial(ptr.add(offset), width, e);
            // padding lanes: exp(0 − max) must not count
            let e = S::select(
                S::lt(S::splat(width as f32 - 0.5), lane_indices::<S>()),
                S::splat(0.0),
                e,
            );
            sum = S::add(sum, e);
        }
        let inverse = S::splat(1.0 / S::reduce_add(sum));
        for offset in (0..columns).step_by(lanes) {
            let width = lanes.min(columns - offset);
            let p = S::mul(S::load_partial(ptr.add(offset), width), inverse);
            S::store_partial(ptr.add(offset), width, p);
        }
    }
}

/// 0, 1, 2, … in the lanes.
///
/// # Safety
/// Only on a CPU with `S`'s instruction set (what a [`Token`] for it proves).
#[inline(always)]
unsafe fn lane_indices<S: Simd>() -> S::V {
    const INDICES: [f32; 16] = [
        0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0,
    ];
    // SAFETY: INDICES holds 16 ≥ LANES floats; the caller has `S`'s instruction set.
    unsafe { S::load(INDICES.as_ptr()) }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use crate::isa::{Avx2Fma, Avx512F};
    use crate::simd::{Avx2, Avx512};

    pub(super) fn row_avx512(_: Avx512F, row: &mut [f32], mask: Option<&[f32]>) {
        /// # Safety
        /// Only on a CPU with AVX-512F, AVX2 and FMA, with `mask`, when given, as long as `row`.
        #[target_feature(enable = "avx512f,avx2,fma")]
        fn run(row: &mut [f32], mask: Option<&[f32]>) {
            // SAFETY: the mask, if any, is as long as the row (checked below).
            unsafe { row_body::<Avx512>(row, mask) }
        }
        assert!(mask.is_none_or(|mask| mask.len() == row.len()));
        // SAFETY: the token proves the CPU has AVX-512F, AVX2 and FMA.
        unsafe { run(row, mask) }
    }

    pub(super) fn row_avx2(_: Avx2Fma, row: &mut [f32], mask: Option<&[f32]>) {
        /// # Safety
        /// Only on a CPU with AVX2 and FMA, with `mask`, when given, as long as `row`.
        #[target_feature(enable = "avx2,fma")]
        fn run(row: &mut [f32], mask: Option<&[f32]>) {
            // SAFETY: the mask, if any, is as long as the row (checked below).
            unsafe { row_body::<Avx2>(row, mask) }
        }
        assert!(mask.is_none_or(|mask| mask.len() == row.len()));
        // SAFETY: the token proves the CPU has AVX2 and FMA.
        unsafe { run(row, mask) }
    }
}

/// The definition, for tests: add the mask, subtract the maximum, exponentiate, divide by the sum.
pub fn softmax_reference(x: ArrayView2<'_, f32>, mask: Option<&[f32]>) -> ndarray::Array2<f32> {
    if let Some(mask) = mask {
        assert_eq!(mask.len(), x.ncols(), "softmax_reference: mask length");
    }
    let mut out = x.to_owned();
    for mut row in out.rows_mut() {
        let mut values = row.to_vec();
        softmax_row_reference(&mut values, mask);
        row.iter_mut().zip(values).for_each(|(x, v)| *x = v);
    }
    out
}
