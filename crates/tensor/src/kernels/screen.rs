//! The exact `argmax_j x·w_j` over the rows of a large weight matrix (a language-model head) while
//! reading a quarter of the bytes: every score is first estimated from an 8-bit copy of the
//! weights (one scale per row), with a rigorous bound on the estimate's error; only the rows that
//! could still be the largest are then recomputed exactly, in f32, by the same chain of fused
//! multiply-adds as [`matmul_packed`].
//!
//! Greedy decoding needs nothing else from the logits, and with GPT-2's 50257 × 768 head that is a
//! third of the bytes streamed per token. The answer is the one the full f32 product would give,
//! bit for bit (first index on ties), or `None` when the screen cannot decide safely (non-finite
//! inputs, neither AVX-512 nor AVX2 + FMA in use, or matrixmultiply as the GEMM path): the caller then takes the product.
//!
//! # The bound
//! Row `j` is stored as levels `q_j ≈ w_j / s_j` rounded into [−127, 127], `s_j = max_p |w_jp| / 127`,
//! leaving the residual `r_j = w_j − s_j q_j` (computed from the levels kept, so how they were
//! rounded never matters to the bound). The estimate is `ŝ_j = s_j · D_j`, `D_j` the f32 FMA chain of `x·q_j`
//! (the product by `s_j` is exact in f64). With `γ_K = K u / (1 − K u)`, `u = 2⁻²⁴` (Higham,
//! *Accuracy and Stability of Numerical Algorithms*, §3.1), the f32 score `f_j` the GEMM computes
//! and the exact `x·w_j` satisfy
//! - `|D_j − x·q_j| ≤ γ_K ‖x‖₁ · 127` and `|f_j − x·w_j| ≤ γ_K ‖x‖₁ · m_j`, `m_j = max_p |w_jp|`;
//! - `|x·r_j| ≤ ‖x_T‖₁ · ρ_j + ‖x_{∖T}‖₂ · ‖r_j‖₂` for any set `T` of positions, `ρ_j = max_p |r_jp|`
//!   (Hölder on `T`, Cauchy–Schwarz on the rest). `T` is the few largest `|x_p|`, as many as make
//!   the bound smallest for an average row: outlier features go to the Hölder term, where they
//!   cost least.
//!
//! So `|ŝ_j − f_j| ≤ B_j = γ_K ‖x‖₁ (127 s_j + m_j) + ‖x_T‖₁ ρ_j + ‖x_{∖T}‖₂ ‖r_j‖₂` (evaluated in
//! f64 and rounded up). With `L = max_j (ŝ_j − B_j)`, a row whose `ŝ_j + B_j < L` scores below the
//! row attaining `L`, so only the others are recomputed.
//!
//! [`matmul_packed`]: crate::matmul_packed

use ndarray::ArrayView2;
use rayon::prelude::*;

use crate::isa::{Isa, Token, isa};
use crate::kernels::gemm::{GemmPath, gemm_path};
use crate::threads::map_parts;

/// Columns (weight rows) per 8-bit panel: K × 128 bytes, one K-row of a panel is two cache lines.
const PANEL: usize = 128;

/// Panels per parallel task (even: the kernel takes them two by two).
const PANELS_PER_TASK: usize = 16;

/// The largest stored magnitude.
const LEVELS: f32 = 127.0;

/// Upward rounding of the bound's own f64 arithmetic (relative errors of order K · 2⁻⁵³).
const INFLATE: f64 = 1.0 + 1e-9;

/// What the screen keeps of one weight row.
#[derive(Clone, Copy, Debug, Default)]
struct RowBound {
    /// `s_j`: the row's step.
    scale: f32,
    /// `γ_K (127 s_j + m_j)`, rounded up: times `‖x‖₁`, the two FMA chains' rounding.
    chains: f64,
    /// `ρ_j`: the largest residual, rounded up.
    largest_residual: f64,
    /// `‖r_j‖₂`, rounded up.
    residual_norm: f64,
}

/// An 8-bit copy of a `[n, k]` weight matrix laid out for streaming, with each row's error terms.
#[derive(Clone, Debug)]
pub struct ArgmaxScreen {
    k: usize,
    n: usize,
    /// ⌈n / PANEL⌉ panels, each K × PANEL row-major; rows past `n` are zero.
    levels: Vec<i8>,
    rows: Vec<RowBound>,
    /// The rows' mean `ρ_j` and `‖r_j‖₂`: the average row the split of `x` is chosen for.
    mean_largest_residual: f64,
    mean_residual_norm: f64,
}

/// One row's quantization, before rounding up.
struct RowTerms {
    scale: f32,
    largest: f32,
    largest_residual: f64,
    residual_squares: f64,
}

/// Independent running reductions per row (the chains of one accumulator would set the pace).
const LANES: usize = 8;

/// `row`'s levels into `levels`, with its step, largest magnitude and residual terms; `None` when
/// a weight is not finite.
fn quantize_row(row: &[f32], levels: &mut [i8]) -> Option<RowTerms> {
    let mut largest = [0.0f32; LANES];
    let mut finite = [true; LANES];
    for (p, &w) in row.iter().enumerate() {
        largest[p % LANES] = largest[p % LANES].max(w.abs());
        finite[p % LANES] &= w.is_finite();
    }
    if !finite.iter().all(|&f| f) {
        return None;
    }
    let largest = largest.iter().fold(0.0f32, |m, &v| m.max(v));
    let scale = largest / LEVELS;
    let inverse = if scale > 0.0 { 1.0 / scale } else { 0.0 };
    let mut residual_max = [0.0f64; LANES];
    let mut residual_squares = [0.0f64; LANES];
    for (p, (&w, level)) in row.iter().zip(levels.iter_mut()).enumerate() {
        // nearest, ties away from zero, without a call to libm's roundf (any level in range
        // would do: the residual, computed from the level kept, is what the bound uses)
        let v = (w * inverse).clamp(-LEVELS, LEVELS);
        let q = ((v.abs() + 0.5) as i32).min(LEVELS as i32) as f32;
        let q = q.copysign(v);
        *level = q as i8;
        // s·q is exact in f64 (24 + 7 bits), the difference nearly so
        let residual = f64::from(w) - f64::from(scale) * f64::from(q);
        residual_max[p % LANES] = residual_max[p % LANES].max(residual.abs());
        residual_squares[p % LANES] += residual * residual;
    }
    Some(RowTerms {
        scale,
        largest,
        largest_residual: residual_max.iter().fold(0.0f64, |m, &v| m.max(v)),
        residual_squares: residual_squares.iter().sum(),
    })
}

/// The outcome of one [`ArgmaxScreen::argmax_counted`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Screened {
    /// The first index of the largest f32 score.
    pub index: usize,
    /// How many rows were recomputed in f32 (the rest were ruled out by their estimates).
    pub rechecked: usize,
}

impl ArgmaxScreen {
    /// From HF's Linear layout `[out, in]` = (N, K), the rows being the candidates. `None` when a
    /// weight is not finite (the screen would decide nothing).
    pub fn from_linear_weight(weight: ArrayView2<'_, f32>) -> Option<Self> {
        let (n, k) = weight.dim();
        let panels = n.div_ceil(PANEL);
        let mut levels = vec![0i8; panels * k * PANEL];
        let mut rows = vec![RowBound::default(); n];
        let unit = f64::from(f32::EPSILON) / 2.0;
        let gamma = k as f64 * unit / (1.0 - k as f64 * unit);
        let ok = levels
            .par_chunks_mut((k * PANEL).max(1))
            .zip(rows.par_chunks_mut(PANEL))
            .enumerate()
            .all(|(panel, (target, rows))| {
                let mut row_levels = vec![0i8; k];
                for (c, bound) in rows.iter_mut().enumerate() {
                    let row = weight.row(panel * PANEL + c);
                    let row = row.as_standard_layout();
                    let row = row.as_slice().expect("a standard-layout row");
                    let Some(terms) = quantize_row(row, &mut row_levels) else {
                        return false;
                    };
                    for (p, &level) in row_levels.iter().enumerate() {
                        target[p * PANEL + c] = level;
                    }
                    *bound = RowBound {
                        scale: terms.scale,
                        chains: gamma
                            * (f64::from(LEVELS) * f64::from(terms.scale)
                                + f64::from(terms.largest))
                            * INFLATE,
                        largest_residual: terms.largest_residual * INFLATE,
                        residual_norm: terms.residual_squares.sqrt() * INFLATE,
                    };
                }
                true
            });
        let mean = |term: fn(&RowBound) -> f64| {
            rows.iter().map(term).sum::<f64>() / (rows.len().max(1) as f64)
        };
        let mean_largest_residual = mean(|row| row.largest_residual);
        let mean_residual_norm = mean(|row| row.residual_norm);
        ok.then_some(Self {
            k,
            n,
            levels,
            rows,
            mean_largest_residual,
            mean_residual_norm,
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
        self.argmax_counted(x, weight)
            .map(|screened| screened.index)
    }

    /// [`ArgmaxScreen::argmax`], also telling how many rows it had to recompute in f32.
    ///
    /// # Shapes
    /// `x`: K; `weight`: (N, K), the matrix the screen was made from.
    ///
    /// # Panics
    /// If the shapes disagree.
    pub fn argmax_counted(&self, x: &[f32], weight: ArrayView2<'_, f32>) -> Option<Screened> {
        // the recheck is our microkernels' arithmetic, not matrixmultiply's
        if matches!(gemm_path(), GemmPath::Portable | GemmPath::Reference) {
            return None;
        }
        self.argmax_counted_on(isa(), x, weight)
    }

    /// [`ArgmaxScreen::argmax_counted`] with the instruction set `isa` rather than [`isa()`]:
    /// AVX-512 and AVX2 give the same answers (each column's chain is the same FMAs in the same
    /// order); [`Isa::Scalar`] has no screen and answers `None`.
    ///
    /// # Panics
    /// If the shapes disagree, or this CPU cannot run `isa`.
    pub fn argmax_counted_on(
        &self,
        isa: Isa,
        x: &[f32],
        weight: ArrayView2<'_, f32>,
    ) -> Option<Screened> {
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
        let token = isa.token();
        if matches!(token, Token::Scalar) {
            return None;
        }
        if self.n == 0 || !x.iter().all(|v| v.is_finite()) {
            return None;
        }
        if self.k == 0 {
            // every score is the empty sum 0: the first row
            return Some(Screened {
                index: 0,
                rechecked: 0,
            });
        }
        let split = self.split(x);
        // each row's estimate ŝ and radius B (its f32 score lies in [ŝ − B, ŝ + B]), computed by
        // the task that streams its panel, which answers its rows' ŝ + B and its largest ŝ − B,
        // or None when a chain overflowed (tasks split over the team when there is one)
        let rows_per_task = PANEL * PANELS_PER_TASK;
        let tasks = map_parts(self.n.div_ceil(rows_per_task), |task| {
            let first_row = task * rows_per_task;
            let mut uppers = vec![0.0f64; rows_per_task.min(self.n - first_row)];
            let mut chains = [[0.0f32; PANEL]; 2];
            let mut floor = f64::NEG_INFINITY;
            // two panels at a time: two streams from memory keep more reads in flight
            for (pair, uppers) in uppers.chunks_mut(2 * PANEL).enumerate() {
                let first = task * PANELS_PER_TASK + 2 * pair;
                let panel = |index: usize| {
                    let start = (first + index) * self.k * PANEL;
                    &self.levels[start..start + self.k * PANEL]
                };
                match (token, uppers.len() > PANEL) {
                    (Token::Avx512(token), true) => {
                        x86::panels_avx512::<2>(token, x, [panel(0), panel(1)], &mut chains)
                    }
                    (Token::Avx512(token), false) => {
                        let [one, _] = &mut chains;
                        x86::panels_avx512::<1>(token, x, [panel(0)], std::array::from_mut(one))
                    }
                    (Token::Avx2(token), true) => {
                        let [one, two] = &mut chains;
                        x86::panel_avx2(token, x, panel(0), one);
                        x86::panel_avx2(token, x, panel(1), two);
                    }
                    (Token::Avx2(token), false) => {
                        x86::panel_avx2(token, x, panel(0), &mut chains[0])
                    }
                    (Token::Scalar, _) => unreachable!("declined above"),
                }
                let rows = &self.rows[first * PANEL..first * PANEL + uppers.len()];
                for ((upper, &chain), row) in uppers.iter_mut().zip(chains.as_flattened()).zip(rows)
                {
                    if !chain.is_finite() {
                        return None;
                    }
                    let estimate = f64::from(row.scale) * f64::from(chain);
                    let radius = (split.norm1 * row.chains
                        + split.head_norm1 * row.largest_residual
                        + split.tail_norm2 * row.residual_norm)
                        * INFLATE
                        // and the rounding of estimate ± radius themselves
                        + estimate.abs() * 1e-15;
                    *upper = estimate + radius;
                    floor = floor.max(estimate - radius);
                }
            }
            Some((uppers, floor))
        });
        let tasks: Vec<(Vec<f64>, f64)> = tasks.into_iter().collect::<Option<_>>()?;
        let floor = tasks
            .iter()
            .fold(f64::NEG_INFINITY, |floor, &(_, task_floor)| {
                floor.max(task_floor)
            });
        let uppers = tasks.iter().flat_map(|(uppers, _)| uppers);
        let mut best: Option<(usize, f32)> = None;
        let mut rechecked = 0;
        for (j, &upper) in uppers.enumerate() {
            if upper < floor {
                continue;
            }
            rechecked += 1;
            let row = weight.row(j);
            let row = row.as_standard_layout();
            let score = x86::dot_fma(token, x, row.as_slice().expect("standard layout"));
            if best.is_none_or(|(_, top)| score > top) {
                best = Some((j, score));
            }
        }
        best.map(|(index, _)| Screened { index, rechecked })
    }

    /// The norms of `x` the bound needs, with `T` the `t` largest `|x_p|` for the `t` that makes
    /// the residual term smallest for the average row.
    fn split(&self, x: &[f32]) -> Split {
        let mut magnitudes: Vec<f64> = x.iter().map(|&v| f64::from(v.abs())).collect();
        magnitudes.sort_unstable_by(|a, b| b.total_cmp(a));
        let norm1: f64 = magnitudes.iter().sum::<f64>() * INFLATE;
        let mut tail_squares: f64 = magnitudes.iter().map(|v| v * v).sum();
        let mut head_norm1 = 0.0f64;
        let cost = |head: f64, tail_squares: f64| {
            head * self.mean_largest_residual
                + tail_squares.max(0.0).sqrt() * self.mean_residual_norm
        };
        let mut best = (cost(0.0, tail_squares), 0);
        for (t, &v) in magnitudes.iter().enumerate() {
            head_norm1 += v;
            tail_squares -= v * v;
            let here = cost(head_norm1, tail_squares);
            if here < best.0 {
                best = (here, t + 1);
            }
        }
        // the chosen split, summed afresh (no cancellation from the running differences)
        let t = best.1;
        Split {
            norm1,
            head_norm1: magnitudes[..t].iter().sum::<f64>() * INFLATE,
            tail_norm2: magnitudes[t..].iter().map(|v| v * v).sum::<f64>().sqrt() * INFLATE,
        }
    }
}

/// The norms of one `x` in the bound: `‖x‖₁`, `‖x_T‖₁`, `‖x_{∖T}‖₂` (each rounded up).
struct Split {
    norm1: f64,
    head_norm1: f64,
    tail_norm2: f64,
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

    use super::PANEL;
    use crate::isa::{Avx2Fma, Avx512F, Token};

    /// Bytes ahead of the current row of a panel that the kernel asks for (the hardware
    /// prefetcher alone leaves a single stream short of the memory's rate).
    const AHEAD: usize = 2048;

    /// `out[i][c] = Σ_p x[p] · panels[i][p][c]` for N 8-bit panels (each K × PANEL) side by side,
    /// one FMA chain per column.
    ///
    /// # Panics
    /// If a panel does not hold `x.len()` rows of PANEL levels.
    pub(super) fn panels_avx512<const N: usize>(
        _: Avx512F,
        x: &[f32],
        panels: [&[i8]; N],
        out: &mut [[f32; PANEL]; N],
    ) {
        assert!(panels.iter().all(|panel| panel.len() == x.len() * PANEL));
        // SAFETY: the token proves the CPU has AVX-512F, AVX2 and FMA; the panels' lengths were
        // checked.
        unsafe { panels_avx512_unchecked(x, panels, out) }
    }

    /// # Safety
    /// The CPU has AVX-512F and FMA; each panel holds `x.len()` rows of PANEL levels.
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn panels_avx512_unchecked<const N: usize>(
        x: &[f32],
        panels: [&[i8]; N],
        out: &mut [[f32; PANEL]; N],
    ) {
        const VECTORS: usize = PANEL / 16;
        let mut acc = [[_mm512_setzero_ps(); VECTORS]; N];
        let bases = panels.map(|panel| panel.as_ptr());
        for (p, &value) in x.iter().enumerate() {
            let a = _mm512_set1_ps(value);
            for (acc, base) in acc.iter_mut().zip(&bases) {
                // SAFETY: row p of the panel is inside it (see above); prefetches never fault.
                unsafe {
                    let row = base.add(p * PANEL);
                    _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(AHEAD));
                    _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(AHEAD + 64));
                    let row = row.cast::<__m128i>();
                    for (v, acc) in acc.iter_mut().enumerate() {
                        let b =
                            _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(row.add(v))));
                        *acc = _mm512_fmadd_ps(a, b, *acc);
                    }
                }
            }
        }
        for (acc, out) in acc.iter().zip(out.iter_mut()) {
            for (v, acc) in acc.iter().enumerate() {
                // SAFETY: 16 floats at 16·v inside the PANEL of `out`.
                unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(v * 16), *acc) };
            }
        }
    }

    /// [`panels_avx512`] for one panel with AVX2: the panel's columns in two halves of 64
    /// (8 ymm chains each; the second half's lines were fetched by the first's prefetches).
    /// Each column's chain is the same FMAs in the same order, so the values are bit for bit
    /// those of the AVX-512 kernel.
    ///
    /// # Panics
    /// If the panel does not hold `x.len()` rows of PANEL levels.
    pub(super) fn panel_avx2(_: Avx2Fma, x: &[f32], panel: &[i8], out: &mut [f32; PANEL]) {
        assert_eq!(panel.len(), x.len() * PANEL);
        // SAFETY: the token proves the CPU has AVX2 and FMA; the panel's length was checked.
        unsafe { panel_avx2_unchecked(x, panel, out) }
    }

    /// # Safety
    /// The CPU has AVX2 and FMA; the panel holds `x.len()` rows of PANEL levels.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn panel_avx2_unchecked(x: &[f32], panel: &[i8], out: &mut [f32; PANEL]) {
        const HALF: usize = PANEL / 2;
        const VECTORS: usize = HALF / 8;
        for half in 0..2 {
            let mut acc = [_mm256_setzero_ps(); VECTORS];
            let base = panel.as_ptr().wrapping_add(half * HALF);
            for (p, &value) in x.iter().enumerate() {
                let a = _mm256_set1_ps(value);
                // SAFETY: the half row p is inside the panel (see above); prefetches never
                // fault.
                unsafe {
                    let row = base.add(p * PANEL);
                    if half == 0 {
                        _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(AHEAD));
                        _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(AHEAD + 64));
                    }
                    for (v, acc) in acc.iter_mut().enumerate() {
                        let levels = _mm_loadl_epi64(row.add(v * 8).cast());
                        let b = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(levels));
                        *acc = _mm256_fmadd_ps(a, b, *acc);
                    }
                }
            }
            for (v, acc) in acc.iter().enumerate() {
                // SAFETY: 8 floats at half·64 + 8·v inside the PANEL of `out`.
                unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(half * HALF + v * 8), *acc) };
            }
        }
    }

    /// `Σ_p x[p] · w[p]` as one FMA chain in order of p, the arithmetic of the GEMM kernels.
    pub(super) fn dot_fma(token: Token, x: &[f32], w: &[f32]) -> f32 {
        /// # Safety
        /// Only on a CPU with FMA.
        #[target_feature(enable = "fma")]
        fn dot(x: &[f32], w: &[f32]) -> f32 {
            x.iter()
                .zip(w)
                .fold(0.0f32, |acc, (&v, &w)| v.mul_add(w, acc))
        }
        match token {
            // SAFETY: the token proves the CPU has FMA.
            Token::Avx512(_) | Token::Avx2(_) => unsafe { dot(x, w) },
            Token::Scalar => unreachable!("the screen declines without FMA"),
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod x86 {
    use super::PANEL;
    use crate::isa::{Avx2Fma, Avx512F, Token};

    pub(super) fn panels_avx512<const N: usize>(
        _: Avx512F,
        _: &[f32],
        _: [&[i8]; N],
        _: &mut [[f32; PANEL]; N],
    ) {
        unreachable!("no AVX-512 off x86_64")
    }

    pub(super) fn panel_avx2(_: Avx2Fma, _: &[f32], _: &[i8], _: &mut [f32; PANEL]) {
        unreachable!("no AVX2 off x86_64")
    }

    pub(super) fn dot_fma(_: Token, _: &[f32], _: &[f32]) -> f32 {
        unreachable!("no FMA kernels off x86_64")
    }
}
