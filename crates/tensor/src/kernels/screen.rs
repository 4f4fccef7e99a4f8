//! The exact `argmax_j x·w_j` over the rows of a large weight matrix (a language-model head) while
//! reading half the bytes: every score is first estimated from an f16 copy of the weights, with a
//! rigorous bound on the estimate's error; only the rows that could still be the largest are then
//! recomputed exactly, in f32, by the same chain of fused multiply-adds as [`matmul_packed`].
//!
//! Greedy decoding needs nothing else from the logits, and with GPT-2's 50257 × 768 head that is a
//! third of the bytes streamed per token. The answer is the one the full f32 product would give,
//! bit for bit (first index on ties), or `None` when the screen cannot decide safely (non-finite
//! inputs, no AVX-512 on this CPU, or another GEMM path in use): the caller then takes the product.
//!
//! # The bound
//! For row `j` with largest magnitude `m_j` and largest f16 rounding error `d_j`, the estimate
//! `ŝ_j` (f16 weights, f32 FMA chain) and the exact score `s_j` (f32 weights, f32 FMA chain) of a
//! K-long `x` differ by at most `‖x‖₁ · (d_j + γ_K · (2 m_j + d_j))`, `γ_K = K u / (1 − K u)`,
//! `u = 2⁻²⁴` (Higham, *Accuracy and Stability of Numerical Algorithms*, §3.1, for each chain).
//! With `L = max_j (ŝ_j − B_j)`, a row whose `ŝ_j + B_j < L` is below the row attaining `L`, so
//! only the others are recomputed.
//!
//! [`matmul_packed`]: crate::matmul_packed

use half::f16;
use half::slice::HalfFloatSliceExt;
use ndarray::ArrayView2;
use rayon::prelude::*;

use crate::{GemmPath, gemm_path};

/// Columns (weight rows) per f16 panel: K × 128 halves, one K-row of a panel is four cache lines.
const PANEL: usize = 128;

/// Panels per parallel task.
const PANELS_PER_TASK: usize = 16;

/// An f16 copy of a `[n, k]` weight matrix laid out for streaming, with each row's error bound.
#[derive(Clone, Debug)]
pub struct ArgmaxScreen {
    k: usize,
    n: usize,
    /// ⌈n / PANEL⌉ panels, each K × PANEL row-major; rows past `n` are zero.
    halves: Vec<f16>,
    /// Per weight row: `d_j + γ_K (2 m_j + d_j)`, rounded up.
    bound: Vec<f64>,
}

impl ArgmaxScreen {
    /// From HF's Linear layout `[out, in]` = (N, K), the rows being the candidates. `None` when a
    /// weight is not finite or out of f16's range (the screen would decide nothing).
    pub fn from_linear_weight(weight: ArrayView2<'_, f32>) -> Option<Self> {
        let (n, k) = weight.dim();
        let panels = n.div_ceil(PANEL);
        let mut halves = vec![f16::ZERO; panels * k * PANEL];
        let mut bound = vec![0.0f64; n];
        let unit = f64::from(f32::EPSILON) / 2.0;
        let gamma = k as f64 * unit / (1.0 - k as f64 * unit);
        let ok = halves
            .par_chunks_mut((k * PANEL).max(1))
            .zip(bound.par_chunks_mut(PANEL))
            .enumerate()
            .all(|(panel, (target, bound))| {
                let mut row_halves = vec![f16::ZERO; k];
                for (c, bound) in bound.iter_mut().enumerate() {
                    let row = weight.row(panel * PANEL + c);
                    let row = row.as_standard_layout();
                    let row = row.as_slice().expect("a standard-layout row");
                    row_halves.convert_from_f32_slice(row);
                    let (mut largest, mut error) = (0.0f64, 0.0f64);
                    for (p, (&w, &h)) in row.iter().zip(&row_halves).enumerate() {
                        if !w.is_finite() || !h.is_finite() {
                            return false;
                        }
                        largest = largest.max(f64::from(w.abs()));
                        error = error.max((f64::from(h.to_f32()) - f64::from(w)).abs());
                        target[p * PANEL + c] = h;
                    }
                    *bound = (error + gamma * (2.0 * largest + error)) * (1.0 + 1e-6);
                }
                true
            });
        ok.then_some(Self {
            k,
            n,
            halves,
            bound,
        })
    }

    /// K, the length of `x`.
    pub fn k(&self) -> usize {
        self.k
    }

    /// N, the number of rows.
    pub fn n(&self) -> usize {
        self.n
    }

    /// The index of the largest `x·weight[j]`, as the first index on ties of the f32 product
    /// [`matmul_packed`](crate::matmul_packed) of `x` with `weight` packed from the linear layout
    /// would give, or `None` when the screen cannot decide (see the module docs).
    ///
    /// # Shapes
    /// `x`: K; `weight`: (N, K), the matrix the screen was made from.
    ///
    /// # Panics
    /// If the shapes disagree.
    pub fn argmax(&self, x: &[f32], weight: ArrayView2<'_, f32>) -> Option<usize> {
        assert_eq!(
            x.len(),
            self.k,
            "ArgmaxScreen::argmax: x has the wrong length"
        );
        assert_eq!(
            weight.dim(),
            (self.n, self.k),
            "ArgmaxScreen::argmax: weight shape"
        );
        if self.n == 0 || gemm_path() != GemmPath::Avx512 || !x.iter().all(|v| v.is_finite()) {
            return None;
        }
        if self.k == 0 {
            // every score is the empty sum 0: the first row
            return Some(0);
        }
        let norm: f64 = x.iter().map(|&v| f64::from(v.abs())).sum();
        let mut estimates = vec![0.0f32; self.halves.len() / self.k];
        estimates
            .par_chunks_mut(PANEL * PANELS_PER_TASK)
            .enumerate()
            .for_each(|(task, out)| {
                let first = task * PANELS_PER_TASK;
                for (index, out) in out.chunks_mut(PANEL).enumerate() {
                    let start = (first + index) * self.k * PANEL;
                    let panel = &self.halves[start..start + self.k * PANEL];
                    // SAFETY: gemm_path() is Avx512 only when the CPU has AVX-512F and FMA.
                    unsafe { x86::panel_avx512(x, panel, out) };
                }
            });
        let estimates = &estimates[..self.n];
        if !estimates.iter().all(|v| v.is_finite()) {
            return None;
        }
        // each estimate with its radius: the exact score lies in [estimate − radius, estimate + radius]
        let ranges = estimates
            .iter()
            .zip(&self.bound)
            .map(|(&estimate, &bound)| (f64::from(estimate), norm * bound));
        let floor = ranges
            .clone()
            .map(|(estimate, radius)| estimate - radius)
            .fold(f64::NEG_INFINITY, f64::max);
        let mut best: Option<(usize, f32)> = None;
        for (j, (estimate, radius)) in ranges.enumerate() {
            if estimate + radius < floor {
                continue;
            }
            let row = weight.row(j);
            let row = row.as_standard_layout();
            // SAFETY: as above.
            let score = unsafe { x86::dot_avx512(x, row.as_slice().expect("standard layout")) };
            if best.is_none_or(|(_, top)| score > top) {
                best = Some((j, score));
            }
        }
        best.map(|(j, _)| j)
    }
}

/// The f32 score of every row by the definition, then the first largest: what
/// [`ArgmaxScreen::argmax`] must agree with.
///
/// # Shapes
/// `x`: K; `weight`: (N, K).
pub fn argmax_reference(x: &[f32], weight: ArrayView2<'_, f32>) -> Option<usize> {
    let mut best: Option<(usize, f32)> = None;
    for (j, row) in weight.rows().into_iter().enumerate() {
        let score = row
            .iter()
            .zip(x)
            .fold(0.0f32, |acc, (&w, &v)| v.mul_add(w, acc));
        if best.is_none_or(|(_, top)| score > top) {
            best = Some((j, score));
        }
    }
    best.map(|(j, _)| j)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use half::f16;

    use super::PANEL;

    /// `out[c] = Σ_p x[p] · panel[p][c]` for one f16 panel (K × PANEL), one FMA chain per column.
    ///
    /// # Safety
    /// The CPU has AVX-512F and FMA; `panel` holds `x.len()` rows of PANEL halves.
    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    pub(super) unsafe fn panel_avx512(x: &[f32], panel: &[f16], out: &mut [f32]) {
        const VECTORS: usize = PANEL / 16;
        debug_assert_eq!(panel.len(), x.len() * PANEL);
        unsafe {
            let mut acc = [_mm512_setzero_ps(); VECTORS];
            let base = panel.as_ptr().cast::<__m256i>();
            for (p, &value) in x.iter().enumerate() {
                let a = _mm512_set1_ps(value);
                let row = base.add(p * VECTORS);
                for (v, acc) in acc.iter_mut().enumerate() {
                    let b = _mm512_cvtph_ps(_mm256_loadu_si256(row.add(v)));
                    *acc = _mm512_fmadd_ps(a, b, *acc);
                }
            }
            let mut all = [0.0f32; PANEL];
            for (v, acc) in acc.iter().enumerate() {
                _mm512_storeu_ps(all.as_mut_ptr().add(v * 16), *acc);
            }
            out.copy_from_slice(&all[..out.len()]);
        }
    }

    /// `Σ_p x[p] · w[p]` as one FMA chain in order of p, the arithmetic of the GEMM kernels.
    ///
    /// # Safety
    /// The CPU has FMA.
    #[target_feature(enable = "fma")]
    pub(super) unsafe fn dot_avx512(x: &[f32], w: &[f32]) -> f32 {
        x.iter()
            .zip(w)
            .fold(0.0f32, |acc, (&v, &w)| v.mul_add(w, acc))
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod x86 {
    use half::f16;

    pub(super) unsafe fn panel_avx512(_: &[f32], _: &[f16], _: &mut [f32]) {
        unreachable!("no AVX-512 off x86_64")
    }

    pub(super) unsafe fn dot_avx512(_: &[f32], _: &[f32]) -> f32 {
        unreachable!("no AVX-512 off x86_64")
    }
}
