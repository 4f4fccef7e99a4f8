//! The SIMD matrix product: one microkernel body, generic over the instruction set, and the
//! loops around it for one output tile (GEMM) or one column strip (matrix-vector).
//!
//! Blocking (BLIS's names):
//! - MR × NR: the microkernel's register tile. AVX-512: MR = 12 rows × NR = 32 columns (24 zmm
//!   accumulators, 2 for B, A broadcast from memory), sized so the two FMA ports stay busy.
//!   AVX2: 6 × 16 (12 ymm accumulators).
//! - KC: the K block. AVX-512: 256, so one KC × NR sliver of a packed B panel (32 KiB) stays in
//!   L1 while the microkernel sweeps every MR row panel of the tile over it (A streams from L2).
//!   AVX2: the whole stretch KB (see `Blocking`): the sliver streams from L2 with A, and the
//!   C block is loaded and stored once per stretch. B's panels are as wide as the kernel's NR
//!   there (16, see `pack::panel_for`), so a sliver is one contiguous stream.
//! - MC × NC: the output tile one thread computes (chosen in `mod.rs`: at most 192 rows, and a
//!   contiguous range of columns per thread). Per stretch of K, the thread packs the tile's rows
//!   of A for that stretch into its own block (MC × KB, in L2: AVX-512 KB = 768, AVX2 from the
//!   L2 size CPUID reports; never written back to memory
//!   before use); then the loops run sliver by sliver (NR columns), then K block by K block,
//!   then row panel by row panel: the tile's C columns of one sliver stay in cache from one K
//!   block to the next, and while the panels sweep one sliver, the next sliver is prefetched
//!   towards L2 (a share per microkernel call) and each call prefetches the next call's C block
//!   towards L1.
//!
//! K is never split between threads: every output element is one chain of fused multiply-adds
//! in the order of K (the accumulators are stored after each KC block and reloaded for the next),
//! so the result does not depend on the tiling or on the number of threads, and a row computed by
//! the matrix-vector kernel is bit-identical to the same row computed inside a larger product.

use std::cell::Cell;
use std::marker::PhantomData;
use std::ops::Range;

use ndarray::{ArrayView2, s};

use crate::Activation;
use crate::kernels::gemm::pack;
use crate::simd::Simd;

/// The AVX-512 kernel's K block: its sliver (KC × 32, 32 KiB) in L1.
const AVX512_KC: usize = 256;

/// The stretch of K a tile runs every sliver over before moving on (a multiple of KC).
const AVX512_KB: usize = 3 * AVX512_KC;

/// The K blocking of one product: KC, the K block one sliver of B stays in L1 for; KB, the stretch
/// of K (a multiple of KC) whose packed A stays in L2 while every sliver passes.
#[derive(Clone, Copy, Debug)]
struct Blocking {
    kc: usize,
    kb: usize,
}

impl Blocking {
    /// AVX-512: the constants tuned on Sapphire Rapids and Zen 4 (issue 6).
    ///
    /// AVX2: from this CPU's L2 size (CPUID). K splits into as few equal stretches as keep the
    /// tile's packed A (rows × KB) within 7/8 of L2, and each stretch is one K block (KC = KB):
    /// the microkernel then runs the longest FMA chains it can between two loads and stores of
    /// its C block, and its B sliver (KC × 16, one line per K row, contiguous in 16-wide panels)
    /// streams from L2 alongside A's panel. Measured on Zen 4 with the AVX2 path (issue 14):
    /// with 16-wide panels, KC = KB ran 2–10% faster than a sliver kept in L1 (KC = 128 to 384).
    fn for_lanes(lanes: usize, rows: usize, k: usize) -> Self {
        if lanes == 16 {
            return Self {
                kc: AVX512_KC,
                kb: AVX512_KB,
            };
        }
        let l2 = crate::isa::cache_sizes().l2;
        let longest = (l2 / 8 * 7 / (rows.max(1) * size_of::<f32>())).max(64);
        let stretches = k.div_ceil(longest).max(1);
        let kb = k.div_ceil(stretches).next_multiple_of(16).max(16);
        Self { kc: kb, kb }
    }
}

/// Rows of the AVX-512 microkernel.
pub(crate) const AVX512_MR: usize = 12;
/// Rows of the AVX2 microkernel.
pub(crate) const AVX2_MR: usize = 6;

/// One product, as raw parts shared by the threads (each writes only its own tile of `c`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Problem<'a> {
    pub(crate) k: usize,
    /// A (M × K), as given: each tile packs the rows it needs.
    pub(crate) a: ArrayView2<'a, f32>,
    /// Packed B: see `pack::pack_b`.
    pub(crate) b: *const f32,
    /// B's columns per panel (16 or 32).
    pub(crate) panel: usize,
    /// B's panels: ⌈N / panel⌉.
    pub(crate) panels: usize,
    /// Output, row-major with row stride `ldc`.
    pub(crate) c: *mut f32,
    pub(crate) ldc: usize,
    /// Length N, or null.
    pub(crate) bias: *const f32,
    pub(crate) activation: Activation,
    /// Row-major with row stride `ld_residual`, or null.
    pub(crate) residual: *const f32,
    pub(crate) ld_residual: usize,
    /// Ties the raw pointers to the borrows they came from: B, the bias and the residual shared,
    /// C exclusive, all for `'a`.
    pub(crate) borrows: PhantomData<(&'a f32, &'a mut f32)>,
}

impl Problem<'_> {
    /// Where B's element (p, j) lies in the packed panels, from `b` (see `pack::pack_b`).
    #[inline(always)]
    pub(crate) fn b_offset(&self, p: usize, j: usize) -> usize {
        (j / self.panel) * self.k * self.panel + p * self.panel + j % self.panel
    }

    /// From the vector of B's columns at `j` to the one at `j + lanes`, in any row: in the same
    /// panel, `lanes`; in the next, a panel further on. 0 (the same vector again) where that
    /// panel does not exist: a sliver's second vector then lies wholly past N, computed on and
    /// never written.
    #[inline(always)]
    fn b_second(&self, j: usize, lanes: usize) -> usize {
        if (j + lanes) / self.panel < self.panels {
            self.b_offset(0, j + lanes) - self.b_offset(0, j)
        } else {
            0
        }
    }
}

// SAFETY: the pointers are read-only except `c`, of which every task writes a disjoint tile; all
// of them live for `'a`.
unsafe impl Send for Problem<'_> {}
// SAFETY: as above: shared between the tasks, the problem itself is only read.
unsafe impl Sync for Problem<'_> {}

/// `c ← activation(acc + bias) + residual` for `width` columns of one row, or just `c ← acc`.
///
/// # Safety
/// The CPU has `S`'s instruction set; `problem` is valid; (row, column) is inside C and
/// `column + width` ≤ N, with `width` ≤ `S::LANES`.
#[inline(always)]
pub(crate) unsafe fn write_out<S: Simd>(
    acc: S::V,
    problem: &Problem<'_>,
    row: usize,
    column: usize,
    width: usize,
    last: bool,
) {
    // SAFETY: the caller runs on a CPU with `S`'s instruction set and gives a (row, column) of C
    // with `width` columns inside it; the bias then has `width` values from `column` and the
    // residual from (row, column), as `Problem` describes.
    unsafe {
        let mut value = acc;
        if last {
            if !problem.bias.is_null() {
                value = S::add(value, S::load_partial(problem.bias.add(column), width));
            }
            value = crate::activation::per_lane::<S>(problem.activation, value);
            if !problem.residual.is_null() {
                let residual = problem.residual.add(row * problem.ld_residual + column);
                value = S::add(value, S::load_partial(residual, width));
            }
        }
        let target = problem.c.add(row * problem.ldc + column);
        if width == S::LANES {
            S::store(target, value);
        } else {
            S::store_partial(target, width, value);
        }
    }
}

/// What a microkernel call fetches ahead for the calls after it.
#[derive(Clone, Copy)]
pub(crate) struct Prefetch {
    /// Lines `b_first..b_first + b_lines` of the sliver at `b` (in the order of K, each row's
    /// NR / 16 lines: the second, if any, `b_second` after the first; row stride B's panel
    /// width), towards L2.
    pub(crate) b: *const f32,
    pub(crate) b_second: usize,
    pub(crate) b_first: usize,
    pub(crate) b_lines: usize,
    /// The next call's C block (MR rows of 2 vectors from here, row stride `ldc`) towards L1,
    /// or null.
    pub(crate) c: *const f32,
}

/// Steps of K between two rounds of prefetches.
const PREFETCH_GROUP: usize = 8;

/// The ROWS × (2 vectors) register tile, `C[i0.., j0..] (+)= A_panel · B_sliver` over `kc`, with
/// its prefetches of the next calls' data spelled out: spread over the K steps, a few before every
/// group of [`PREFETCH_GROUP`] steps, so the loop of FMAs itself carries no test. ROWS is MR, or
/// fewer for a last row panel that holds fewer rows (its packed A keeps MR values per K step).
///
/// `a`: packed A at this KC block (kc × MR); `b`: packed B at this KC block and column
/// (kc rows, row stride B's panel width), its second vector `b_second` after the first (see
/// `Problem::b_second`). Rows ≥ `height` and columns ≥ `width` are computed on padding and not
/// written.
///
/// # Safety
/// The CPU has `S`'s instruction set; `problem` is valid; `a` holds kc × MR packed values; `b`
/// and `b + b_second` are the starts of kc rows (stride B's panel width) of a sliver's two
/// vectors inside the packed panels; rows `i0..i0 + height` (height ≤ ROWS ≤ MR) and columns
/// `j0..j0 + width` (width ≤ 2 vectors) are inside C. `next` may point anywhere: prefetches
/// never fault.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn microkernel_prefetching<S: Simd, const MR: usize, const ROWS: usize>(
    problem: &Problem<'_>,
    kc: usize,
    a: *const f32,
    b: *const f32,
    b_second: usize,
    i0: usize,
    j0: usize,
    height: usize,
    width: usize,
    first: bool,
    last: bool,
    next: Prefetch,
) {
    // SAFETY: the caller runs on a CPU with `S`'s instruction set; `a` holds kc × MR packed values
    // and `b` kc rows of its panel from this sliver's first column, as `b + b_second` does from
    // its second vector's; rows i0..i0 + height and columns
    // j0..j0 + width are inside C; C's loads and stores stay inside those (widths of 0 touch
    // nothing), and prefetches never fault.
    unsafe {
        let lanes = S::LANES;
        let stride = problem.panel;
        let width0 = width.min(lanes);
        let width1 = width.saturating_sub(lanes);
        let mut acc = [[S::splat(0.0); 2]; ROWS];
        if !first {
            for (r, row) in acc.iter_mut().enumerate().take(height) {
                let c = problem.c.add((i0 + r) * problem.ldc + j0);
                // whole vectors by plain loads (a masked load is slower on some CPUs); the
                // second half may be empty, and `c + lanes` past C's allocation
                row[0] = if width0 == lanes {
                    S::load(c)
                } else {
                    S::load_partial(c, width0)
                };
                if width1 == lanes {
                    row[1] = S::load(c.add(lanes));
                } else if width1 > 0 {
                    row[1] = S::load_partial(c.add(lanes), width1);
                }
            }
        }
        let groups = kc.div_ceil(PREFETCH_GROUP).max(1);
        let lines_per_row = (2 * lanes).div_ceil(16);
        let b_per_group = next.b_lines.div_ceil(groups);
        let mut b_issued = 0;
        // each of the next C block's rows (2 vectors) spans its whole cache lines from a line
        // boundary, one more otherwise (an output allocated by Vec starts 16 bytes past one)
        let row_len = 2 * lanes;
        let per_row = row_len.div_ceil(16) + usize::from(!(next.c as usize).is_multiple_of(64));
        let c_lines = if next.c.is_null() { 0 } else { per_row * MR };
        let c_per_group = c_lines.div_ceil(groups);
        let mut c_line = 0;
        let mut p0 = 0;
        while p0 < kc {
            let end = (p0 + PREFETCH_GROUP).min(kc);
            if b_issued < next.b_lines {
                let until = (b_issued + b_per_group).min(next.b_lines);
                while b_issued < until {
                    let line = next.b_first + b_issued;
                    let (row, part) = (line / lines_per_row, line % lines_per_row);
                    prefetch_line(next.b.wrapping_add(row * stride + part * next.b_second));
                    b_issued += 1;
                }
            }
            if c_line < c_lines {
                let until = (c_line + c_per_group).min(c_lines);
                while c_line < until {
                    // values 0, 16, … of the row, the last one for the last line
                    let (row, part) = (c_line / per_row, c_line % per_row);
                    let column = (part * 16).min(row_len - 1);
                    prefetch_line_l1(next.c.wrapping_add(row * problem.ldc + column));
                    c_line += 1;
                }
            }
            let mut b_row = b.add(p0 * stride);
            let mut a_column = a.add(p0 * MR);
            if end - p0 == PREFETCH_GROUP {
                // a whole group: unrolled, the pointers stepped rather than multiplied
                for _ in 0..PREFETCH_GROUP {
                    fma_step::<S, MR, ROWS>(&mut acc, a_column, b_row, b_second);
                    b_row = b_row.add(stride);
                    a_column = a_column.add(MR);
                }
            } else {
                for _ in p0..end {
                    fma_step::<S, MR, ROWS>(&mut acc, a_column, b_row, b_second);
                    b_row = b_row.add(stride);
                    a_column = a_column.add(MR);
                }
            }
            p0 = end;
        }
        for (r, row) in acc.iter().enumerate().take(height) {
            write_out::<S>(row[0], problem, i0 + r, j0, width0, last);
            if width1 > 0 {
                write_out::<S>(row[1], problem, i0 + r, j0 + lanes, width1, last);
            }
        }
    }
}

/// One step of K: `acc[r] += a[r] · (b, b + b_second)` for the tile's rows.
///
/// # Safety
/// The CPU has `S`'s instruction set; `a` holds ROWS values (of MR); `b` and `b + b_second` a
/// vector each.
#[inline(always)]
unsafe fn fma_step<S: Simd, const MR: usize, const ROWS: usize>(
    acc: &mut [[S::V; 2]; ROWS],
    a: *const f32,
    b: *const f32,
    b_second: usize,
) {
    // SAFETY: the caller's contract: the loads are inside A's panel and B's sliver.
    unsafe {
        let b0 = S::load(b);
        let b1 = S::load(b.add(b_second));
        for (r, row) in acc.iter_mut().enumerate() {
            let a_value = S::splat(*a.add(r));
            row[0] = S::fma(a_value, b0, row[0]);
            row[1] = S::fma(a_value, b1, row[1]);
        }
    }
}

thread_local! {
    /// This thread's packed block of A (a tile's rows for one stretch of K), kept between tiles
    /// and calls; grown only (packing writes every value the tile reads).
    static A_BLOCK: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// One output tile: rows `rows` (starting on a multiple of MR), columns `columns` (starting on a
/// multiple of NR = 2 vectors). THIRD and TWO_THIRDS (MR / 3, 2·MR / 3) are the register tiles'
/// rows for a short last row panel. Per stretch of K: its rows of A packed, then sliver by sliver,
/// K block by K block, row panel by row panel.
///
/// # Safety
/// The CPU has `S`'s instruction set; `problem` is valid, with B packed in panels of its width
/// `problem.panel`, a multiple of `S::LANES`; `rows` and `columns` are inside C (and A's rows,
/// B's columns), and no other thread writes that tile of C meanwhile.
#[inline(always)]
unsafe fn tile_body<S: Simd, const MR: usize, const THIRD: usize, const TWO_THIRDS: usize>(
    problem: &Problem<'_>,
    rows: Range<usize>,
    columns: Range<usize>,
) {
    let k = problem.k;
    let nr = 2 * S::LANES;
    let panels = (rows.end - rows.start).div_ceil(MR);
    let Blocking { kc: kc_max, kb } = Blocking::for_lanes(S::LANES, rows.end - rows.start, k);
    let lines_per_row = nr.div_ceil(16);
    let mut block = A_BLOCK.with(Cell::take);
    // K in stretches of KB: the tile's packed A for one stretch (MC × KB) stays in L2 while
    // every sliver passes
    let mut kb0 = 0;
    while kb0 < k {
        let kb1 = (kb0 + kb).min(k);
        let stretch = kb1 - kb0;
        let block_len = panels * stretch * MR;
        let packed = crate::buffer::line_aligned(&mut block, block_len);
        pack::pack_a(problem.a.slice(s![rows.clone(), kb0..kb1]), MR, packed);
        let packed = packed.as_ptr();
        let mut j0 = columns.start;
        while j0 < columns.end {
            let width = nr.min(columns.end - j0);
            let mut k0 = kb0;
            while k0 < kb1 {
                let kc = kc_max.min(kb1 - k0);
                let (first, last) = (k0 == 0, k0 + kc == k);
                // SAFETY: j0 < N, so its panel exists; the sliver is kc rows inside it.
                let b = unsafe { problem.b.add(problem.b_offset(k0, j0)) };
                let b_second = problem.b_second(j0, S::LANES);
                // the sliver after this one: the next K block, else the next columns' first
                // block of this stretch, else the first columns' first block of the next stretch
                let next = if k0 + kc < kb1 {
                    Some((j0, k0 + kc))
                } else if j0 + nr < columns.end {
                    Some((j0 + nr, kb0))
                } else if kb1 < k {
                    Some((columns.start, kb1))
                } else {
                    None
                };
                // its cache lines, a share for each row panel's call
                let (next_b, next_second, next_lines) = match next {
                    // SAFETY: inside the packed panels, as `b`.
                    Some((j1, k1)) => unsafe {
                        (
                            problem.b.add(problem.b_offset(k1, j1)),
                            problem.b_second(j1, S::LANES),
                            lines_per_row * kc_max.min(k - k1),
                        )
                    },
                    None => (std::ptr::null(), 0, 0),
                };
                let share = next_lines.div_ceil(panels);
                let mut i0 = rows.start;
                let mut panel = 0;
                while i0 < rows.end {
                    let height = MR.min(rows.end - i0);
                    let first_line = (panel * share).min(next_lines);
                    // the next call's C block: the next rows, else the tile's first rows of the
                    // next sliver
                    let next_c = if i0 + MR < rows.end {
                        problem.c.wrapping_add((i0 + MR) * problem.ldc + j0)
                    } else {
                        match next {
                            Some((j1, _)) => problem.c.wrapping_add(rows.start * problem.ldc + j1),
                            None => std::ptr::null(),
                        }
                    };
                    let fetch = Prefetch {
                        b: next_b,
                        b_second: next_second,
                        b_first: first_line,
                        b_lines: share.min(next_lines - first_line),
                        c: next_c,
                    };
                    // SAFETY: the block's panel holds rows i0.. of A for this stretch; the tile
                    // is inside C.
                    unsafe {
                        let a = packed.add(panel * stretch * MR + (k0 - kb0) * MR);
                        // a short last panel (M = 128 leaves 2 of AVX2's 6 rows, 8 of
                        // AVX-512's 12) runs a tile of a third or two thirds of the rows
                        if height <= THIRD {
                            microkernel_prefetching::<S, MR, THIRD>(
                                problem, kc, a, b, b_second, i0, j0, height, width, first, last,
                                fetch,
                            );
                        } else if height <= TWO_THIRDS {
                            microkernel_prefetching::<S, MR, TWO_THIRDS>(
                                problem, kc, a, b, b_second, i0, j0, height, width, first, last,
                                fetch,
                            );
                        } else {
                            microkernel_prefetching::<S, MR, MR>(
                                problem, kc, a, b, b_second, i0, j0, height, width, first, last,
                                fetch,
                            );
                        }
                    }
                    i0 += MR;
                    panel += 1;
                }
                k0 += kc;
            }
            j0 += nr;
        }
        kb0 = kb1;
    }
    A_BLOCK.with(|cell| cell.set(block));
}

/// Asks for the cache line at `p` to be brought into L1.
///
/// # Safety
/// None beyond the call: a prefetch never faults, whatever `p` is (unsafe only as the
/// intrinsic is).
#[inline(always)]
unsafe fn prefetch_line_l1(p: *const f32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint that never faults, whatever the address.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Asks for the cache line at `p` to be brought into L2.
///
/// # Safety
/// As [`prefetch_line_l1`]: none beyond the call.
#[inline(always)]
unsafe fn prefetch_line(p: *const f32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint that never faults, whatever the address.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T1, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T1>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Vectors per matrix-vector strip: 8 independent FMA chains hide the FMA latency.
const GEMV_VECTORS: usize = 8;

/// `c[0, columns] = epilogue(a · B[.., columns])` for M = 1, `a` unpacked (length K): streams the
/// weight panels once. `columns` starts on a multiple of B's panel width.
///
/// # Safety
/// The CPU has `S`'s instruction set; `problem` is valid with M = 1; `a` holds K values;
/// `columns` starts on a multiple of B's panel width and ends inside N.
#[inline(always)]
unsafe fn gemv_body<S: Simd>(problem: &Problem<'_>, a: *const f32, columns: Range<usize>) {
    let k = problem.k;
    let lanes = S::LANES;
    let strip = GEMV_VECTORS * lanes;
    let stride = problem.panel;
    let column_address = |j: usize| problem.b_offset(0, j);
    let mut j0 = columns.start;
    // full strips of GEMV_VECTORS vectors, all inside existing panels
    while j0 + strip <= columns.end {
        // SAFETY: the caller runs on a CPU with `S`'s instruction set, `a` holds K values and
        // `columns` lie inside whole packed panels (a full strip ends at or before `columns.end`),
        // so every load is inside B; the output is row 0 of C, columns inside it.
        unsafe {
            let mut offsets = [0usize; GEMV_VECTORS];
            for (v, offset) in offsets.iter_mut().enumerate() {
                *offset = column_address(j0 + v * lanes);
            }
            let mut acc = [S::splat(0.0); GEMV_VECTORS];
            for p in 0..k {
                let a_value = S::splat(*a.add(p));
                for v in 0..GEMV_VECTORS {
                    let b = S::load(problem.b.add(offsets[v] + p * stride));
                    acc[v] = S::fma(a_value, b, acc[v]);
                }
            }
            for (v, &value) in acc.iter().enumerate() {
                write_out::<S>(value, problem, 0, j0 + v * lanes, lanes, true);
            }
        }
        j0 += strip;
    }
    // the rest, one vector at a time (padding columns are computed, not written)
    while j0 < columns.end {
        let width = lanes.min(columns.end - j0);
        // SAFETY: as above; the vector at j0 lies inside its panel (padded to whole panels) and
        // `write_out` stores only the `width` real columns.
        unsafe {
            let offset = column_address(j0);
            let mut acc = S::splat(0.0);
            for p in 0..k {
                let b = S::load(problem.b.add(offset + p * stride));
                acc = S::fma(S::splat(*a.add(p)), b, acc);
            }
            write_out::<S>(acc, problem, 0, j0, width, true);
        }
        j0 += lanes;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use crate::simd::{Avx2, Avx512};

    /// # Safety
    /// The CPU has AVX-512F, AVX2 and FMA; `problem` is valid and the tile inside it.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(crate) unsafe fn tile_avx512(
        problem: &Problem<'_>,
        rows: Range<usize>,
        columns: Range<usize>,
    ) {
        // SAFETY: the caller's contract (`# Safety` above) is the body's: the CPU has these
        // features and the tile lies inside `problem`.
        unsafe { tile_body::<Avx512, AVX512_MR, 4, 8>(problem, rows, columns) }
    }

    /// # Safety
    /// The CPU has AVX2 and FMA; `problem` is valid and the tile inside it.
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn tile_avx2(
        problem: &Problem<'_>,
        rows: Range<usize>,
        columns: Range<usize>,
    ) {
        // SAFETY: the caller's contract (`# Safety` above) is the body's: the CPU has these
        // features and the tile lies inside `problem`.
        unsafe { tile_body::<Avx2, AVX2_MR, 2, 4>(problem, rows, columns) }
    }

    /// # Safety
    /// As [`tile_avx512`]; `a` holds K values.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(crate) unsafe fn gemv_avx512(problem: &Problem<'_>, a: *const f32, columns: Range<usize>) {
        // SAFETY: the caller's contract (`# Safety` above) is the body's, and `a` holds K values.
        unsafe { gemv_body::<Avx512>(problem, a, columns) }
    }

    /// # Safety
    /// As [`tile_avx2`]; `a` holds K values.
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn gemv_avx2(problem: &Problem<'_>, a: *const f32, columns: Range<usize>) {
        // SAFETY: the caller's contract (`# Safety` above) is the body's, and `a` holds K values.
        unsafe { gemv_body::<Avx2>(problem, a, columns) }
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::{gemv_avx2, gemv_avx512, tile_avx2, tile_avx512};
