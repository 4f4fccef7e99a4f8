//! The matrix product `C = A·B` with a fused epilogue.
//!
//! A is activations, row-major (M × K, any M including 1); B is weights, packed once into a
//! [`PackedMatrix`] from HF's Linear layout `[out, in]` or from `[in, out]` (GPT-2's Conv1D).

pub(crate) mod microkernel;
pub(crate) mod pack;
mod small_m;

use std::ops::Range;
use std::sync::OnceLock;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::AcqRel;

use ndarray::{Array2, Array3, ArrayView2, ArrayView3, ArrayViewMut2, Axis, s};
use rayon::prelude::*;

use crate::Activation;
use crate::isa::{Isa, Token, isa};
use crate::kernels::norm::{layer_norm_in_place_on, normalise_row};
use crate::threads::for_each_part;
use microkernel::{AVX2_MR, AVX512_MR, Problem};
use pack::PANEL;
use small_m::SMALL_M;

/// What is applied to each output element as it is written: `activation(a·b + bias) + residual`,
/// then, once a row of C is complete, `layer_norm` of the row.
#[derive(Clone, Copy, Debug, Default)]
pub struct Epilogue<'a> {
    /// Added per output column (length N).
    pub bias: Option<&'a [f32]>,
    /// Applied after the bias.
    pub activation: Activation,
    /// Added element-wise (M × N), after the activation.
    pub residual: Option<ArrayView2<'a, f32>>,
    /// Last, each finished row normalised: the same values as
    /// [`layer_norm_in_place`](crate::layer_norm_in_place) on the product would give, but done
    /// by the thread that completes a block of rows, while they are still in its cache.
    pub layer_norm: Option<RowNorm<'a>>,
}

/// A LayerNorm over each row of a product's output ([`Epilogue::layer_norm`]):
/// `(x − mean) / √(variance + eps) · weight + bias`.
#[derive(Clone, Copy, Debug)]
pub struct RowNorm<'a> {
    /// Length N.
    pub weight: &'a [f32],
    /// Length N.
    pub bias: &'a [f32],
    /// Added to the variance.
    pub eps: f32,
}

impl<'a> Epilogue<'a> {
    /// Nothing: `C = A·B`.
    pub fn none() -> Self {
        Self::default()
    }

    /// Adds `bias`.
    pub fn bias(bias: &'a [f32]) -> Self {
        Self {
            bias: Some(bias),
            ..Self::default()
        }
    }
}

/// A weight matrix B (K × N) laid out once for the product: column panels, each K × width
/// row-major and contiguous (what the microkernels stream), the last one zero-padded; the first
/// starts on a cache line, so no vector load of a panel row straddles two lines. The width is
/// the one the path in use ([`gemm_path`]) streams best: 32 for AVX-512 (and matrixmultiply),
/// 16 for AVX2. Every path runs on either.
#[derive(Clone, Debug)]
pub struct PackedMatrix {
    k: usize,
    n: usize,
    /// Columns per panel.
    panel: usize,
    data: crate::buffer::Aligned,
}

impl PackedMatrix {
    /// From HF's Linear layout `[out, in]` = (N, K): the product is `x · Wᵀ`.
    pub fn from_linear_weight(weight: ArrayView2<'_, f32>) -> Self {
        Self::from_in_out(weight.t())
    }

    /// From several Linear weights `[outᵢ, in]` stacked along `out` (a fused QKV product:
    /// `x · [W₀; W₁; …]ᵀ`), without stacking them in memory first.
    ///
    /// # Panics
    /// If the parts' `in` differ.
    pub fn from_linear_weights(parts: &[ArrayView2<'_, f32>]) -> Self {
        let panel = pack::panel_for(gemm_path().isa());
        let k = parts.first().map_or(0, |part| part.ncols());
        assert!(
            parts.iter().all(|part| part.ncols() == k),
            "PackedMatrix::from_linear_weights: the parts' `in` differ"
        );
        let n = parts.iter().map(|part| part.nrows()).sum();
        let transposed: Vec<_> = parts.iter().map(|part| part.t()).collect();
        let whole_panels = parts
            .iter()
            .rev()
            .skip(1)
            .all(|part| part.nrows().is_multiple_of(panel));
        let data = if whole_panels {
            pack::pack_b_parts(&transposed, panel)
        } else {
            let stacked = ndarray::concatenate(Axis(1), &transposed)
                .expect("the parts share K, checked above");
            pack::pack_b(stacked.view(), panel)
        };
        Self { k, n, panel, data }
    }

    /// From the `[in, out]` = (K, N) layout (GPT-2's Conv1D): the product is `x · W`.
    pub fn from_in_out(weight: ArrayView2<'_, f32>) -> Self {
        Self::from_in_out_for(gemm_path(), weight)
    }

    /// [`from_in_out`](Self::from_in_out) laid out for `path` rather than the path in use: for
    /// tests that run every path on every layout.
    pub fn from_in_out_for(path: GemmPath, weight: ArrayView2<'_, f32>) -> Self {
        let (k, n) = weight.dim();
        let panel = pack::panel_for(path.isa());
        let data = pack::pack_b(weight, panel);
        Self { k, n, panel, data }
    }

    /// K, the inner dimension.
    pub fn k(&self) -> usize {
        self.k
    }

    /// N, the number of output columns.
    pub fn n(&self) -> usize {
        self.n
    }

    /// B unpacked, as a (K, N) row-major array (a copy).
    pub fn to_in_out(&self) -> Array2<f32> {
        pack::unpack_b(self.data.as_slice(), self.k, self.n, self.panel)
    }
}

/// `epilogue(A·B)`.
///
/// # Shapes
/// `a`: (M, K), any strides; `b`: (K, N); bias: N; residual: (M, N); result: (M, N).
///
/// # Panics
/// If the shapes disagree.
pub fn matmul_packed(
    a: ArrayView2<'_, f32>,
    b: &PackedMatrix,
    epilogue: &Epilogue<'_>,
) -> Array2<f32> {
    let mut out = Array2::<f32>::zeros((a.nrows(), b.n()));
    matmul_packed_into(a, b, epilogue, out.view_mut());
    out
}

/// [`matmul_packed`] writing into `out` (M, N), which is overwritten.
///
/// # Panics
/// If the shapes disagree.
pub fn matmul_packed_into(
    a: ArrayView2<'_, f32>,
    b: &PackedMatrix,
    epilogue: &Epilogue<'_>,
    out: ArrayViewMut2<'_, f32>,
) {
    matmul_packed_into_on(gemm_path(), a, b, epilogue, out);
}

/// [`matmul_packed_into`] on a given path rather than the chosen one: for tests and benchmarks
/// that compare the paths in one process.
///
/// # Panics
/// If the shapes disagree, or this CPU cannot run `path` (see [`cpu_paths`]).
pub fn matmul_packed_into_on(
    path: GemmPath,
    a: ArrayView2<'_, f32>,
    b: &PackedMatrix,
    epilogue: &Epilogue<'_>,
    out: ArrayViewMut2<'_, f32>,
) {
    run_gemm(path, a, b, epilogue, out, true);
}

/// `A·B` for plain arrays (B is packed for the call).
///
/// # Shapes
/// `a`: (M, K); `b`: (K, N); result: (M, N).
///
/// # Panics
/// If the inner dimensions differ.
pub fn matmul(a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>) -> Array2<f32> {
    assert_eq!(a.ncols(), b.nrows(), "matmul: inner dimensions differ");
    matmul_packed(a, &PackedMatrix::from_in_out(b), &Epilogue::none())
}

/// Whether an operand of [`batched_matmul`] is used transposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transpose {
    /// As stored.
    No,
    /// Transposed (the last two axes swapped).
    Yes,
}

/// One product per batch entry: `op(A[i])·op(B[i])`.
///
/// # Shapes
/// `a`: (batch, M, K) or (batch, K, M) transposed; `b`: (batch, K, N) or (batch, N, K) transposed;
/// result: (batch, M, N).
///
/// # Panics
/// If the shapes disagree.
pub fn batched_matmul(
    a: ArrayView3<'_, f32>,
    transpose_a: Transpose,
    b: ArrayView3<'_, f32>,
    transpose_b: Transpose,
) -> Array3<f32> {
    assert_eq!(
        a.len_of(Axis(0)),
        b.len_of(Axis(0)),
        "batched_matmul: batch sizes differ"
    );
    let a = if transpose_a == Transpose::Yes {
        a.permuted_axes([0, 2, 1])
    } else {
        a
    };
    let b = if transpose_b == Transpose::Yes {
        b.permuted_axes([0, 2, 1])
    } else {
        b
    };
    let (batch, m, k) = a.dim();
    let (_, k_b, n) = b.dim();
    assert_eq!(k, k_b, "batched_matmul: inner dimensions differ");
    let mut out = Array3::<f32>::zeros((batch, m, n));
    let path = gemm_path();
    // one product per task, each on one thread: entries are many and small in attention
    let entry_len = m * n;
    out.as_slice_mut()
        .expect("a new array is contiguous")
        .par_chunks_mut(entry_len.max(1))
        .enumerate()
        .for_each(|(index, target)| {
            let target = ArrayViewMut2::from_shape((m, n), target).expect("entry shape");
            let packed = PackedMatrix::from_in_out(b.slice(s![index, .., ..]));
            run_gemm(
                path,
                a.slice(s![index, .., ..]),
                &packed,
                &Epilogue::none(),
                target,
                false,
            );
        });
    out
}

/// The definition: `epilogue(A·B)` by three plain loops, accumulating in f32 in order of K.
///
/// # Shapes
/// As [`matmul_packed`], with `b` as a (K, N) view.
pub fn gemm_reference(
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    epilogue: &Epilogue<'_>,
) -> Array2<f32> {
    let (m, k) = a.dim();
    let n = b.ncols();
    assert_eq!(k, b.nrows(), "gemm_reference: inner dimensions differ");
    let mut out = Array2::<f32>::zeros((m, n));
    for i in 0..m {
        for j in 0..n {
            let mut sum = 0.0f32;
            for p in 0..k {
                sum += a[[i, p]] * b[[p, j]];
            }
            out[[i, j]] = sum;
        }
    }
    apply_epilogue(GemmPath::Reference, out.view_mut(), epilogue);
    out
}

/// The epilogue over a finished product, element by element, then the rows' norm on `path`.
fn apply_epilogue(path: GemmPath, mut out: ArrayViewMut2<'_, f32>, epilogue: &Epilogue<'_>) {
    check_epilogue(epilogue, out.dim());
    for (i, mut row) in out.rows_mut().into_iter().enumerate() {
        for (j, value) in row.iter_mut().enumerate() {
            let mut x = *value;
            if let Some(bias) = epilogue.bias {
                x += bias[j];
            }
            x = epilogue.activation.apply(x);
            if let Some(residual) = &epilogue.residual {
                x += residual[[i, j]];
            }
            *value = x;
        }
    }
    if let Some(norm) = epilogue.layer_norm {
        layer_norm_in_place_on(path.isa(), out, None, norm.weight, norm.bias, norm.eps);
    }
}

/// # Panics
/// If the epilogue's operands do not fit an (M, N) output.
fn check_epilogue(epilogue: &Epilogue<'_>, (m, n): (usize, usize)) {
    if let Some(bias) = epilogue.bias {
        assert_eq!(bias.len(), n, "epilogue: bias length");
    }
    if let Some(residual) = &epilogue.residual {
        assert_eq!(residual.dim(), (m, n), "epilogue: residual shape");
    }
    if let Some(norm) = &epilogue.layer_norm {
        assert_eq!(norm.weight.len(), n, "epilogue: layer norm weight length");
        assert_eq!(norm.bias.len(), n, "epilogue: layer norm bias length");
    }
}

/// An implementation of the matrix product, chosen once at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmPath {
    /// Our AVX-512F microkernel.
    Avx512,
    /// Our AVX2 + FMA microkernel.
    Avx2,
    /// `matrixmultiply`, the portable fallback.
    Portable,
    /// [`gemm_reference`].
    Reference,
}

impl GemmPath {
    /// The instruction set the path runs (and its epilogue's LayerNorm).
    pub fn isa(self) -> Isa {
        match self {
            GemmPath::Avx512 => Isa::Avx512,
            GemmPath::Avx2 => Isa::Avx2,
            GemmPath::Portable | GemmPath::Reference => Isa::Scalar,
        }
    }

    /// Our microkernel for `isa`, or matrixmultiply for [`Isa::Scalar`].
    pub fn for_isa(isa: Isa) -> Self {
        match isa {
            Isa::Avx512 => GemmPath::Avx512,
            Isa::Avx2 => GemmPath::Avx2,
            Isa::Scalar => GemmPath::Portable,
        }
    }
}

/// The path in use: the one for [`isa()`] (the best instruction set this CPU has, capped by
/// `OXFORMER_ISA`), or the one `OXFORMER_GEMM_PATH` (`avx512`, `avx2`, `portable`,
/// `reference`) forces within that cap. Read once; a forced path above the cap or beyond this
/// CPU, or an unknown name, falls back to the default with a warning on stderr.
pub fn gemm_path() -> GemmPath {
    static PATH: OnceLock<GemmPath> = OnceLock::new();
    *PATH.get_or_init(|| {
        let best = GemmPath::for_isa(isa());
        let Ok(forced) = std::env::var("OXFORMER_GEMM_PATH") else {
            return best;
        };
        let wanted = match forced.as_str() {
            "avx512" => Some(GemmPath::Avx512),
            "avx2" => Some(GemmPath::Avx2),
            "portable" => Some(GemmPath::Portable),
            "reference" => Some(GemmPath::Reference),
            _ => None,
        };
        match wanted {
            Some(path) if path.isa() <= isa() => path,
            Some(path) => {
                eprintln!(
                    "OXFORMER_GEMM_PATH={forced}: {path:?} needs {}, above this process's {} (CPU and OXFORMER_ISA); using {best:?}",
                    path.isa(),
                    isa()
                );
                best
            }
            None => {
                eprintln!(
                    "OXFORMER_GEMM_PATH={forced}: expected avx512, avx2, portable or reference; using {best:?}"
                );
                best
            }
        }
    })
}

pub(crate) fn path_available(path: GemmPath) -> bool {
    path.isa().available()
}

/// Every path and whether this CPU can run it.
pub fn cpu_paths() -> Vec<(GemmPath, bool)> {
    [
        GemmPath::Avx512,
        GemmPath::Avx2,
        GemmPath::Portable,
        GemmPath::Reference,
    ]
    .into_iter()
    .map(|path| (path, path_available(path)))
    .collect()
}

/// Checks the shapes, then runs `path`; `parallel` spreads output tiles over the current rayon
/// pool (off inside [`batched_matmul`], which is parallel over its entries).
fn run_gemm(
    path: GemmPath,
    a: ArrayView2<'_, f32>,
    b: &PackedMatrix,
    epilogue: &Epilogue<'_>,
    mut out: ArrayViewMut2<'_, f32>,
    parallel: bool,
) {
    let (m, k) = a.dim();
    let n = b.n();
    assert_eq!(
        k,
        b.k(),
        "matmul_packed: A has {k} columns, B has {} rows",
        b.k()
    );
    assert_eq!(out.dim(), (m, n), "matmul_packed: output shape");
    check_epilogue(epilogue, (m, n));
    assert!(
        path_available(path),
        "matmul_packed: this CPU cannot run {path:?}"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        out.fill(0.0);
        apply_epilogue(path, out, epilogue);
        return;
    }
    match path {
        GemmPath::Reference => {
            let result = gemm_reference(a, b.to_in_out().view(), epilogue);
            out.assign(&result);
        }
        GemmPath::Portable => gemm_portable(a, b, epilogue, out),
        GemmPath::Avx512 | GemmPath::Avx2 => {
            // the kernels write rows with unit column stride; anything else goes through a copy
            let row_major = out.strides()[1] == 1 && out.strides()[0] >= n as isize;
            if row_major {
                gemm_simd(path, a, b, epilogue, out, parallel);
            } else {
                let mut result = Array2::<f32>::zeros((m, n));
                gemm_simd(path, a, b, epilogue, result.view_mut(), parallel);
                out.assign(&result);
            }
        }
    }
}

/// matrixmultiply's sgemm, one call per packed panel, then the epilogue.
fn gemm_portable(
    a: ArrayView2<'_, f32>,
    b: &PackedMatrix,
    epilogue: &Epilogue<'_>,
    mut out: ArrayViewMut2<'_, f32>,
) {
    let (m, k) = a.dim();
    let n = b.n();
    let (rsa, csa) = (a.strides()[0], a.strides()[1]);
    let (rsc, csc) = (out.strides()[0], out.strides()[1]);
    let panel_width = b.panel;
    for panel in 0..n.div_ceil(panel_width) {
        let j0 = panel * panel_width;
        let width = panel_width.min(n - j0);
        // SAFETY: the pointers and strides describe `a`, one packed panel (K × width) and the
        // columns j0..j0 + width of `out`, all inside their allocations.
        unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                width,
                1.0,
                a.as_ptr(),
                rsa,
                csa,
                b.data.as_slice().as_ptr().add(panel * k * panel_width),
                panel_width as isize,
                1,
                0.0,
                out.as_mut_ptr().offset(j0 as isize * csc),
                rsc,
                csc,
            );
        }
    }
    apply_epilogue(GemmPath::Portable, out, epilogue);
}

/// Our microkernels: output tiles over the rayon pool, each packing its own rows of A (M = 1:
/// column strips).
fn gemm_simd(
    path: GemmPath,
    a: ArrayView2<'_, f32>,
    b: &PackedMatrix,
    epilogue: &Epilogue<'_>,
    mut out: ArrayViewMut2<'_, f32>,
    parallel: bool,
) {
    let (m, k) = a.dim();
    let n = b.n();
    let residual = epilogue.residual.as_ref().map(|r| r.as_standard_layout());
    let problem = Problem {
        k,
        a,
        b: b.data.as_slice().as_ptr(),
        panel: b.panel,
        panels: n.div_ceil(b.panel),
        c: out.as_mut_ptr(),
        ldc: out.strides()[0] as usize,
        bias: epilogue.bias.map_or(std::ptr::null(), |bias| bias.as_ptr()),
        activation: epilogue.activation,
        residual: residual
            .as_ref()
            .map_or(std::ptr::null(), |residual| residual.as_ptr()),
        ld_residual: n,
        borrows: std::marker::PhantomData,
    };

    if m <= SMALL_M {
        // one row (matrix-vector) or a few (beams, a small batch at one decoding step): the
        // weights streamed once per column strip, not the MR-row microkernel over padding rows
        let rows = a.as_standard_layout();
        let width = strip_width(n, parallel);
        let run = |strip: usize| {
            let columns = strip * width..((strip + 1) * width).min(n);
            // SAFETY: the path was checked against the CPU; `rows` holds M × K values; each
            // strip writes its own columns.
            unsafe {
                if m == 1 {
                    gemv(path, &problem, rows.as_ptr(), columns)
                } else {
                    small_m(path, &problem, rows.as_ptr(), m, columns)
                }
            }
        };
        let strips = n.div_ceil(width);
        if parallel && strips > 1 {
            for_each_part(strips, run);
        } else {
            (0..strips).for_each(run);
        }
        if let Some(norm) = &epilogue.layer_norm {
            // SAFETY: every strip is done; the M rows of C are ours alone.
            unsafe { normalise_rows(path.isa().token(), &problem, norm, 0..m) };
        }
        return;
    }

    let mr = if path == GemmPath::Avx512 {
        AVX512_MR
    } else {
        AVX2_MR
    };
    let nr = if path == GemmPath::Avx512 { 32 } else { 16 };
    let row_block = if path == GemmPath::Avx512 {
        MC
    } else {
        avx2_row_block()
    };
    let tiling = Tiling::new(m, n, mr, nr, row_block, parallel);
    // a row block is finished when every column part has written its tile: the part that
    // finishes it normalises its rows (for more blocks than counted here, all rows at the end)
    let finished: [AtomicUsize; MAX_COUNTED_BLOCKS] = std::array::from_fn(|_| AtomicUsize::new(0));
    let norm_in_tiles = epilogue
        .layer_norm
        .filter(|_| tiling.blocks <= MAX_COUNTED_BLOCKS);
    let run = |index: usize| {
        let (rows, columns) = tiling.tile(index);
        // SAFETY: the path was checked against the CPU; tiles are disjoint and inside C.
        unsafe { tile(path, &problem, rows.clone(), columns) }
        if let Some(norm) = &norm_in_tiles
            && finished[rows.start / tiling.mc].fetch_add(1, AcqRel) + 1 == tiling.parts
        {
            // SAFETY: every part has written these rows (the counter orders their writes before
            // this); no other thread touches them any more.
            unsafe { normalise_rows(path.isa().token(), &problem, norm, rows) };
        }
    };
    let tiles = tiling.parts * tiling.blocks;
    if parallel && tiles > 1 {
        for_each_part(tiles, run);
    } else {
        (0..tiles).for_each(run);
    }
    if let Some(norm) = epilogue.layer_norm
        && norm_in_tiles.is_none()
    {
        layer_norm_in_place_on(path.isa(), out, None, norm.weight, norm.bias, norm.eps);
    }
}

/// Row blocks whose completion a product counts (on the stack) to normalise them as they finish:
/// up to 256 row blocks.
const MAX_COUNTED_BLOCKS: usize = 256;

/// # Safety
/// `rows` of the problem's C are finished and no other thread reads or writes them.
unsafe fn normalise_rows(
    token: Token,
    problem: &Problem<'_>,
    norm: &RowNorm<'_>,
    rows: Range<usize>,
) {
    let n = norm.weight.len();
    for i in rows {
        // SAFETY: row i of C is N values from c + i·ldc, ours alone (see above).
        let row = unsafe { std::slice::from_raw_parts_mut(problem.c.add(i * problem.ldc), n) };
        normalise_row(token, row, None, norm.weight, norm.bias, norm.eps);
    }
}

/// Column parts per thread of a product with one row block (M ≤ [`MC`]) and many columns.
const PARTS_PER_THREAD: usize = 4;

/// The narrowest column part of such a product: its A rows are packed once per part.
const MIN_PART_COLUMNS: usize = 1024;

/// Rows of one output tile at most (a multiple of both MRs). AVX-512: every product's row
/// blocks, its packed A for one stretch of K (MC × 768, 576 KiB) in L2 (tuned on Sapphire Rapids
/// and Zen 4, 2 MiB and 1 MiB of L2). AVX2: a product whose rows fit one block of MC.
const MC: usize = 192;

/// The AVX2 path's row blocks for a product with more rows than [`MC`]: as many rows (a multiple
/// of its MR = 6, at least 2 panels, at most MC) as put their packed A for a K of 768 in 7/16 of
/// this CPU's L2 (CPUID), half of what `Blocking` gives A, the other half left to B's slivers and
/// the C rows that each sliver's pass writes. Zen 3 (512 KiB): 72 rows; Zen 4 (1 MiB): 144.
///
/// Smaller blocks than MC re-stream B once per block, but keep K in one stretch up to 1.5 K
/// (a C block reloaded for a second stretch comes from beyond L2: each stretch passes all of a
/// thread's columns first), and leave L2 room for B. Measured on Zen 3 against MC = 192 rows,
/// BERT-base's four products (`xtask bench kernels`' shapes), 2 threads, per-round paired ratios
/// of 21 alternating rounds: M = 512, 1.02–1.05× (K = 768: 1.04–1.05×); M = 1024, 1.01–1.05×.
/// A product of one block (M ≤ 192) keeps it: two blocks of 66 rows at M = 128 stream B twice
/// and ran 0.97–1.01×.
fn avx2_row_block() -> usize {
    static ROWS: OnceLock<usize> = OnceLock::new();
    *ROWS.get_or_init(|| {
        let l2 = crate::isa::cache_sizes().l2;
        let rows = l2 / 16 * 7 / (768 * size_of::<f32>());
        (rows / AVX2_MR * AVX2_MR).clamp(2 * AVX2_MR, MC)
    })
}

/// How M × N splits into output tiles: the columns into contiguous parts, one per thread, so a
/// thread's B stays its own and it packs each row block of A once per stretch of K (a single row
/// block and a wide B: [`PARTS_PER_THREAD`] per thread, as B is streamed once anyway); each part
/// into row blocks of equal size (aligned to MR): one block up to [`MC`] rows, else blocks of at
/// most the path's row block ([`avx2_row_block`] on AVX2). The tiling changes only who
/// computes what, never a result. Computed, not listed: a forward pass allocates nothing for it.
struct Tiling {
    m: usize,
    n: usize,
    nr: usize,
    /// Column parts.
    parts: usize,
    /// NR-wide column slivers in all.
    slivers: usize,
    /// Rows per row block.
    mc: usize,
    /// Row blocks.
    blocks: usize,
}

impl Tiling {
    fn new(m: usize, n: usize, mr: usize, nr: usize, row_block: usize, parallel: bool) -> Self {
        let threads = if parallel {
            rayon::current_num_threads()
        } else {
            1
        };
        Self::for_threads(m, n, mr, nr, row_block, threads)
    }

    /// `row_block`: the most rows of a block when M needs more than one block of [`MC`].
    fn for_threads(
        m: usize,
        n: usize,
        mr: usize,
        nr: usize,
        row_block: usize,
        threads: usize,
    ) -> Self {
        let slivers = n.div_ceil(nr);
        // row blocks of equal size (in MR panels): one up to MC rows, else as few as `row_block`
        // allows
        let panels = m.div_ceil(mr);
        let blocks = if panels <= MC / mr {
            1
        } else {
            panels.div_ceil(row_block / mr)
        };
        let mc = panels.div_ceil(blocks) * mr;
        // one row block (a decoding step's few rows) and many columns (a language-model head): a
        // few column parts per thread, so that a thread that starts late or loses its core for a
        // while (a shared machine) still takes its share, and the last parts even out; each part
        // wide enough that packing its rows of A again is negligible; and a multiple of the
        // threads, or the last round of parts runs on some threads while the others wait (3 parts
        // of BERT's FFN, N = 3072, on 2 threads took as long as 4)
        let parts = if blocks == 1 && threads > 1 {
            (threads * PARTS_PER_THREAD).min(n / MIN_PART_COLUMNS) / threads * threads
        } else {
            threads
        };
        Self {
            m,
            n,
            nr,
            parts: parts.max(threads).min(slivers).max(1),
            slivers,
            mc,
            blocks: m.div_ceil(mc),
        }
    }

    /// Tile `index` (rows, columns), numbered part by part, each part's row blocks in order: so
    /// rayon's halving of the numbers gives each thread a whole part, and a thread that finishes
    /// early takes the other's last tiles.
    fn tile(&self, index: usize) -> (Range<usize>, Range<usize>) {
        let (part, block) = (index / self.blocks, index % self.blocks);
        let (s0, s1) = (
            self.slivers * part / self.parts,
            self.slivers * (part + 1) / self.parts,
        );
        let i0 = block * self.mc;
        (
            i0..(i0 + self.mc).min(self.m),
            s0 * self.nr..(s1 * self.nr).min(self.n),
        )
    }
}

/// The width of the matrix-vector kernel's column strips: runs of 4 whole panels, about four
/// strips per thread.
fn strip_width(n: usize, parallel: bool) -> usize {
    let threads = if parallel {
        rayon::current_num_threads()
    } else {
        1
    };
    let panels = n.div_ceil(PANEL);
    // a multiple of 4 panels: whole runs of the kernel's 8 vectors (the vector-at-a-time rest,
    // one chain of FMAs each, waits on their latency)
    (panels.div_ceil(4 * threads).div_ceil(4) * 4).clamp(1, panels.max(1)) * PANEL
}

/// # Safety
/// The CPU can run `path` (a SIMD path); `problem` is valid; the tile is inside it.
unsafe fn tile(path: GemmPath, problem: &Problem<'_>, rows: Range<usize>, columns: Range<usize>) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the caller checked the CPU for `path` (Avx512 or Avx2 here) and that the tile lies
    // inside `problem`: the microkernels' contract.
    unsafe {
        match path {
            GemmPath::Avx512 => microkernel::tile_avx512(problem, rows, columns),
            _ => microkernel::tile_avx2(problem, rows, columns),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!(
        "no SIMD GEMM path on this architecture: {path:?} {problem:?} {rows:?} {columns:?}"
    );
}

/// # Safety
/// As [`tile`]; `a` holds K values.
unsafe fn gemv(path: GemmPath, problem: &Problem<'_>, a: *const f32, columns: Range<usize>) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: as in `tile`, and `a` holds K values: the matrix-vector kernels' contract.
    unsafe {
        match path {
            GemmPath::Avx512 => microkernel::gemv_avx512(problem, a, columns),
            _ => microkernel::gemv_avx2(problem, a, columns),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("no SIMD GEMM path on this architecture: {path:?} {a:?} {columns:?}");
}

/// # Safety
/// As [`gemv`]; `a` holds M × K values, row-major.
unsafe fn small_m(
    path: GemmPath,
    problem: &Problem<'_>,
    a: *const f32,
    m: usize,
    columns: Range<usize>,
) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the caller's contract.
    unsafe {
        match path {
            GemmPath::Avx512 => small_m::small_m_avx512(problem, a, m, columns),
            _ => small_m::small_m_avx2(problem, a, m, columns),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("no SIMD GEMM path on this architecture: {path:?} {a:?} {m} {columns:?}");
}

#[cfg(test)]
mod tests {
    use super::Tiling;

    /// Every column of every row is in exactly one tile, and a product with one row block splits
    /// its columns into a multiple of the threads.
    #[test]
    fn tiles_cover_the_output_once_in_whole_rounds_of_parts() {
        for (m, n) in [
            (128, 3072),
            (128, 768),
            (128, 2304),
            (8, 50257),
            (512, 3072),
            (7, 40),
        ] {
            for (threads, row_block) in (1..=4).flat_map(|threads| [(threads, 192), (threads, 72)])
            {
                let tiling = Tiling::for_threads(m, n, 6, 16, row_block, threads);
                if tiling.blocks == 1 && tiling.slivers >= threads {
                    assert_eq!(
                        tiling.parts % threads,
                        0,
                        "{m}×{n} on {threads}: {}",
                        tiling.parts
                    );
                }
                let mut covered = vec![0u8; m * n];
                for index in 0..tiling.parts * tiling.blocks {
                    let (rows, columns) = tiling.tile(index);
                    for i in rows {
                        for j in columns.clone() {
                            covered[i * n + j] += 1;
                        }
                    }
                }
                assert!(
                    covered.iter().all(|&count| count == 1),
                    "{m}×{n} on {threads}"
                );
            }
        }
    }
}
