//! The product for a few rows of A (2 ≤ M ≤ [`SMALL_M`]): the 4 beams of one input at one decoder
//! step. Like the matrix-vector kernel, it streams the packed weight panels of a column strip
//! once from memory and multiplies them by every row of A from registers. The packed GEMM would
//! instead run its MR-row microkernel (12 rows on AVX-512) over the 4 rows, computing padding
//! rows and packing A per tile: a 4-beam step cost twice a greedy one.
//!
//! Every output element is one chain of fused multiply-adds in the order of K, as in the other
//! kernels: a row's result does not depend on which kernel or how many rows computed it.

use std::ops::Range;

use crate::kernels::gemm::microkernel::{Problem, write_out};
use crate::simd::Simd;

/// Rows up to which a product goes through this kernel instead of the packed GEMM. Beyond, a
/// second pass over each strip of B (from L2) measured slower than the packed GEMM at M = 8.
pub(crate) const SMALL_M: usize = 4;

/// Rows multiplied by one pass over a strip of B: all of them, up to [`SMALL_M`].
const GROUP: usize = SMALL_M;

/// `c[rows, columns] = epilogue(A[rows] · B[.., columns])` with V vectors of columns at a time:
/// `ROWS × V` accumulators, V vectors of B loaded once per step of K for all rows.
///
/// # Safety
/// `problem` is valid; `a` points to row `rows.start` of a row-major A with row stride K; `rows`
/// holds ROWS rows; `j0..j0 + V·LANES` lies inside the packed panels, and its columns below
/// `end` are inside C.
#[inline(always)]
unsafe fn block<S: Simd, const ROWS: usize, const V: usize>(
    problem: &Problem<'_>,
    a: *const f32,
    first_row: usize,
    j0: usize,
    end: usize,
) {
    let k = problem.k;
    let lanes = S::LANES;
    let stride = problem.panel;
    let column_address = |j: usize| problem.b_offset(0, j);
    // SAFETY: the caller's contract: every B address is inside the panels (vectors start on a
    // multiple of LANES, which divides the panel width, so none crosses a panel), every A address is inside
    // the ROWS rows, every written column is below `end`, inside C.
    unsafe {
        let mut offsets = [0usize; V];
        for (v, offset) in offsets.iter_mut().enumerate() {
            *offset = column_address(j0 + v * lanes);
        }
        let mut acc = [[S::splat(0.0); V]; ROWS];
        for p in 0..k {
            let mut b = [S::splat(0.0); V];
            for v in 0..V {
                b[v] = S::load(problem.b.add(offsets[v] + p * stride));
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let a_value = S::splat(*a.add(r * k + p));
                for v in 0..V {
                    acc[v] = S::fma(a_value, b[v], acc[v]);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (v, &value) in acc.iter().enumerate() {
                let column = j0 + v * lanes;
                if column < end {
                    write_out::<S>(
                        value,
                        problem,
                        first_row + r,
                        column,
                        lanes.min(end - column),
                        true,
                    );
                }
            }
        }
    }
}

/// The columns `columns` (starting on a multiple of B's panel width) of ROWS rows: strips of V vectors,
/// then one vector at a time.
///
/// # Safety
/// As [`block`], for the whole column range.
#[inline(always)]
unsafe fn rows_body<S: Simd, const ROWS: usize, const V: usize>(
    problem: &Problem<'_>,
    a: *const f32,
    first_row: usize,
    columns: Range<usize>,
) {
    let width = V * S::LANES;
    let mut j0 = columns.start;
    // SAFETY: the caller's contract; whole blocks end inside `columns`, the rest reads padding
    // columns of the last panel at most (computed, never written).
    unsafe {
        while j0 + width <= columns.end {
            block::<S, ROWS, V>(problem, a, first_row, j0, columns.end);
            j0 += width;
        }
        while j0 < columns.end {
            block::<S, ROWS, 1>(problem, a, first_row, j0, columns.end);
            j0 += S::LANES;
        }
    }
}

/// `c[.., columns] = epilogue(A · B[.., columns])` for every row of A (row-major at `a`, M rows
/// of K), in groups of [`GROUP`] rows. `V4` and `V2` are the vectors per block for groups of
/// 3–4 and of 1–2 rows: as many accumulators as the registers of the instruction set allow.
///
/// # Safety
/// `problem` is valid with M rows; `a` holds M × K values; `columns` starts on a multiple of
/// B's panel width and ends inside N.
#[inline(always)]
pub(crate) unsafe fn small_m_body<S: Simd, const V4: usize, const V2: usize>(
    problem: &Problem<'_>,
    a: *const f32,
    m: usize,
    columns: Range<usize>,
) {
    let k = problem.k;
    let mut i0 = 0;
    while i0 < m {
        let rows = GROUP.min(m - i0);
        // SAFETY: rows i0..i0 + rows exist in A and C; the columns as the caller promised.
        unsafe {
            let a = a.add(i0 * k);
            let columns = columns.clone();
            match rows {
                1 => rows_body::<S, 1, GEMV_V>(problem, a, i0, columns),
                2 => rows_body::<S, 2, V2>(problem, a, i0, columns),
                3 => rows_body::<S, 3, V4>(problem, a, i0, columns),
                _ => rows_body::<S, 4, V4>(problem, a, i0, columns),
            }
        }
        i0 += rows;
    }
}

/// Vectors of a lone row's block: 8 independent chains hide the FMA latency.
const GEMV_V: usize = 8;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use crate::simd::{Avx2, Avx512};

    /// AVX-512 (32 registers): 4 rows × 4 vectors = 16 accumulators, 4 for B, 1 for A.
    ///
    /// # Safety
    /// The CPU has AVX-512F, AVX2 and FMA; otherwise as [`small_m_body`].
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(crate) unsafe fn small_m_avx512(
        problem: &Problem<'_>,
        a: *const f32,
        m: usize,
        columns: Range<usize>,
    ) {
        // SAFETY: the caller's contract.
        unsafe { small_m_body::<Avx512, 4, 4>(problem, a, m, columns) }
    }

    /// AVX2 (16 registers): 4 rows × 2 vectors = 8 accumulators, 2 rows × 4 = 8; with B and A,
    /// at most 13 registers.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA; otherwise as [`small_m_body`].
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn small_m_avx2(
        problem: &Problem<'_>,
        a: *const f32,
        m: usize,
        columns: Range<usize>,
    ) {
        // SAFETY: the caller's contract.
        unsafe { small_m_body::<Avx2, 2, 4>(problem, a, m, columns) }
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::{small_m_avx2, small_m_avx512};
