//! Scaled-dot-product attention, tiled with an online softmax (after FlashAttention): one task per
//! (batch entry, head); per tile of queries and block of 64 keys, the scores and the weighted sum
//! of values are products by the GEMM microkernel, so no more than one MR × 64 tile of scores is
//! ever in memory (the scratch is O(keys · head_dim) per task: Kᵀ and V copied once into panels).

use std::cell::Cell;

use ndarray::{Array4, ArrayView2, ArrayView4, ArrayViewMut4};
use rayon::prelude::*;

use crate::kernels::gemm::microkernel::{AVX2_MR, AVX512_MR, Problem, microkernel};
use crate::kernels::gemm::pack::PANEL;
use crate::simd::{self, Isa, Simd};
use crate::{Activation, GemmPath, gemm_path};

/// Which keys each query may see.
#[derive(Clone, Copy, Debug, Default)]
pub struct AttentionMask<'a> {
    /// (batch, keys): 1 where a key is a real token, 0 where it is padding.
    pub key_padding: Option<ArrayView2<'a, f32>>,
    /// Query `i` of `q` queries sees only keys `0 ..= i + (keys − q)` (queries are the last ones,
    /// as when decoding with a KV cache).
    pub causal: bool,
}

/// `softmax(scale · Q·Kᵀ + mask)·V` for every batch entry and head.
///
/// A query that may see no key at all (every key masked) gets zeros.
///
/// # Shapes
/// `q`: (batch, heads, queries, head_dim); `k`, `v`: (batch, heads, keys, head_dim), any strides
/// (so permuted views of a (batch, seq, heads, head_dim) buffer need no copy);
/// result: (batch, heads, queries, head_dim).
///
/// # Panics
/// If the shapes disagree.
pub fn attention(
    q: ArrayView4<'_, f32>,
    k: ArrayView4<'_, f32>,
    v: ArrayView4<'_, f32>,
    mask: &AttentionMask<'_>,
    scale: f32,
) -> Array4<f32> {
    let mut out = Array4::<f32>::zeros(q.dim());
    attention_into(q, k, v, mask, scale, out.view_mut());
    out
}

/// [`attention`] writing into `out` (batch, heads, queries, head_dim), any strides.
///
/// # Panics
/// If the shapes disagree.
pub fn attention_into(
    q: ArrayView4<'_, f32>,
    k: ArrayView4<'_, f32>,
    v: ArrayView4<'_, f32>,
    mask: &AttentionMask<'_>,
    scale: f32,
    out: ArrayViewMut4<'_, f32>,
) {
    attention_into_on(gemm_path(), q, k, v, mask, scale, out);
}

/// [`attention_into`] with the instruction set of `path` (see [`GemmPath`]); the portable and
/// reference paths run [`attention_reference`]'s loops.
///
/// # Panics
/// If the shapes disagree, or this CPU cannot run `path`.
pub fn attention_into_on(
    path: GemmPath,
    q: ArrayView4<'_, f32>,
    k: ArrayView4<'_, f32>,
    v: ArrayView4<'_, f32>,
    mask: &AttentionMask<'_>,
    scale: f32,
    mut out: ArrayViewMut4<'_, f32>,
) {
    check_shapes(&q, &k, &v, mask, &out);
    let isa = Isa::for_path(path);
    if isa == Isa::Scalar {
        attention_reference_into(q, k, v, mask, scale, out);
        return;
    }
    let (batch, heads, queries, head_dim) = q.dim();
    let keys = k.dim().2;
    if batch == 0 || heads == 0 || queries == 0 || head_dim == 0 {
        out.fill(0.0);
        return;
    }
    let job = Job {
        q: Strided::of(&q),
        k: Strided::of(&k),
        v: Strided::of(&v),
        out: out.as_mut_ptr(),
        out_strides: strides4(out.strides()),
        padding: mask.key_padding.as_ref().map(|padding| {
            (
                padding.as_ptr(),
                [padding.strides()[0], padding.strides()[1]],
            )
        }),
        causal: mask.causal,
        scale,
        queries,
        keys,
        head_dim,
    };
    // a few queries (decoding with a KV cache): read K and V rows where they are, no copies
    let direct = queries <= DIRECT_QUERIES
        && head_dim <= 1024
        && job.k.strides[3] == 1
        && job.v.strides[3] == 1;
    (0..batch * heads).into_par_iter().for_each(|index| {
        let (entry, head) = (index / heads, index % heads);
        // SAFETY: `Isa::for_path` checked the CPU; each task writes its own (entry, head).
        unsafe {
            match (isa, direct) {
                #[cfg(target_arch = "x86_64")]
                (Isa::Avx512, false) => x86::head_avx512(&job, entry, head),
                #[cfg(target_arch = "x86_64")]
                (Isa::Avx2, false) => x86::head_avx2(&job, entry, head),
                #[cfg(target_arch = "x86_64")]
                (Isa::Avx512, true) => x86::head_direct_avx512(&job, entry, head),
                #[cfg(target_arch = "x86_64")]
                (Isa::Avx2, true) => x86::head_direct_avx2(&job, entry, head),
                _ => unreachable!("scalar attention is handled above"),
            }
        }
    });
}

fn check_shapes(
    q: &ArrayView4<'_, f32>,
    k: &ArrayView4<'_, f32>,
    v: &ArrayView4<'_, f32>,
    mask: &AttentionMask<'_>,
    out: &ArrayViewMut4<'_, f32>,
) {
    let (batch, heads, _, head_dim) = q.dim();
    let keys = k.dim().2;
    assert_eq!(
        k.dim(),
        (batch, heads, keys, head_dim),
        "attention: key shape"
    );
    assert_eq!(
        v.dim(),
        (batch, heads, keys, head_dim),
        "attention: value shape"
    );
    assert_eq!(out.dim(), q.dim(), "attention: output shape");
    if let Some(padding) = &mask.key_padding {
        assert_eq!(padding.dim(), (batch, keys), "attention: key padding shape");
    }
}

thread_local! {
    /// Kᵀ, V and the key mask of one head, kept between calls on this thread (taken out while in
    /// use, so a nested call simply allocates its own).
    static SCRATCH: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Up to this many queries, K and V are read in place rather than copied into blocks.
const DIRECT_QUERIES: usize = 4;

/// Keys per block: a query's scores against one block are computed, softmaxed and applied
/// before the next, so a task holds one row of KEY_BLOCK scores, never queries × keys.
const KEY_BLOCK: usize = 64;

/// A 4-d operand as a pointer and element strides.
#[derive(Clone, Copy)]
struct Strided {
    ptr: *const f32,
    strides: [isize; 4],
}

impl Strided {
    fn of(view: &ArrayView4<'_, f32>) -> Self {
        Self {
            ptr: view.as_ptr(),
            strides: strides4(view.strides()),
        }
    }
}

fn strides4(strides: &[isize]) -> [isize; 4] {
    [strides[0], strides[1], strides[2], strides[3]]
}

/// One attention call as raw parts shared by the tasks.
struct Job {
    q: Strided,
    k: Strided,
    v: Strided,
    out: *mut f32,
    out_strides: [isize; 4],
    padding: Option<(*const f32, [isize; 2])>,
    causal: bool,
    scale: f32,
    queries: usize,
    keys: usize,
    head_dim: usize,
}

// SAFETY: the inputs are only read; each task writes its own rows of `out`.
unsafe impl Send for Job {}
unsafe impl Sync for Job {}

/// Copies `count` elements of a strided row into `dst`.
#[inline(always)]
unsafe fn copy_row(src: *const f32, stride: isize, dst: &mut [f32]) {
    if stride == 1 {
        dst.copy_from_slice(unsafe { std::slice::from_raw_parts(src, dst.len()) });
    } else {
        for (d, value) in dst.iter_mut().enumerate() {
            *value = unsafe { *src.offset(d as isize * stride) };
        }
    }
}

/// Flash-attention style with the GEMM microkernel, for one (entry, head): Kᵀ and V copied once
/// into 32-column panels per key block; then per tile of MR queries and key block, the scores
/// S = Q·Kᵀ (MR × 64) by the microkernel, an online softmax per row (running maximum and sum;
/// the output rows rescaled when the maximum grows), and O += P·V by the microkernel again.
/// A block that some query of the tile sees only in part (the causal diagonal) is applied per
/// row over the keys that row sees, so a value no query may see is never read.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // rows, keys and lanes index several buffers at once
unsafe fn head_gemm_body<S: Simd, const MR: usize>(job: &Job, b: usize, h: usize) {
    let lanes = S::LANES;
    let nr = 2 * lanes;
    let head_dim = job.head_dim;
    let value_panels = head_dim.div_ceil(PANEL);
    let out_dim = value_panels * PANEL; // O tile row length
    let offset = job.keys as isize - job.queries as isize;
    let visible = |i: usize| {
        if job.causal {
            ((i as isize + offset).max(0) as usize + 1).min(job.keys)
        } else {
            job.keys
        }
    };
    let last_visible = visible(job.queries - 1);
    let blocks = last_visible.div_ceil(KEY_BLOCK);
    const KEY_PANELS: usize = KEY_BLOCK / PANEL;

    // scratch: Kᵀ panels (block, panel, head_dim, 32), V panels (block, panel, 64, 32),
    // open flags (keys), Q packed (head_dim, MR), S (MR, 64), P packed (64, MR), O (MR, out_dim)
    let keys_len = blocks * KEY_PANELS * head_dim * PANEL;
    let values_len = blocks * value_panels * KEY_BLOCK * PANEL;
    let open_len = blocks * KEY_BLOCK;
    let q_len = head_dim * MR;
    let s_len = MR * KEY_BLOCK;
    let p_len = KEY_BLOCK * MR;
    let o_len = MR * out_dim;
    let mut scratch = SCRATCH.with(|cell| cell.take());
    scratch.clear();
    scratch.resize(
        keys_len + values_len + open_len + q_len + s_len + p_len + o_len,
        0.0,
    );
    let (keys_t, rest) = scratch.split_at_mut(keys_len);
    let (values, rest) = rest.split_at_mut(values_len);
    let (key_open, rest) = rest.split_at_mut(open_len);
    let (q_packed, rest) = rest.split_at_mut(q_len);
    let (scores, rest) = rest.split_at_mut(s_len);
    let (p_packed, o_tile) = rest.split_at_mut(p_len);

    let base = |s: &Strided| b as isize * s.strides[0] + h as isize * s.strides[1];
    let mut row = vec![0.0f32; head_dim];
    for j in 0..last_visible {
        let (block, column) = (j / KEY_BLOCK, j % KEY_BLOCK);
        let open = job.padding.is_none_or(|(ptr, strides)| unsafe {
            *ptr.offset(b as isize * strides[0] + j as isize * strides[1]) != 0.0
        });
        key_open[j] = if open { 1.0 } else { 0.0 };
        unsafe {
            let k_row = job
                .k
                .ptr
                .offset(base(&job.k) + j as isize * job.k.strides[2]);
            copy_row(k_row, job.k.strides[3], &mut row);
        }
        let panel = (block * KEY_PANELS + column / PANEL) * head_dim * PANEL;
        for (d, &value) in row.iter().enumerate() {
            keys_t[panel + d * PANEL + column % PANEL] = value;
        }
        if !open {
            // a padding key's weight is exactly 0; its value must not reach the sum (0 · NaN)
            continue;
        }
        unsafe {
            let v_row = job
                .v
                .ptr
                .offset(base(&job.v) + j as isize * job.v.strides[2]);
            copy_row(v_row, job.v.strides[3], &mut row);
        }
        for (d, &value) in row.iter().enumerate() {
            let panel = (block * value_panels + d / PANEL) * KEY_BLOCK * PANEL;
            values[panel + column * PANEL + d % PANEL] = value;
        }
    }

    const INDICES: [f32; KEY_BLOCK] = {
        let mut indices = [0.0f32; KEY_BLOCK];
        let mut i = 0;
        while i < KEY_BLOCK {
            indices[i] = i as f32;
            i += 1;
        }
        indices
    };

    for i0 in (0..job.queries).step_by(MR) {
        let height = MR.min(job.queries - i0);
        for r in 0..MR {
            for d in 0..head_dim {
                q_packed[d * MR + r] = if r < height {
                    unsafe {
                        let at = base(&job.q)
                            + (i0 + r) as isize * job.q.strides[2]
                            + d as isize * job.q.strides[3];
                        *job.q.ptr.offset(at)
                    }
                } else {
                    0.0
                };
            }
        }
        o_tile.fill(0.0);
        let mut running_max = [f32::NEG_INFINITY; MR];
        let mut running_sum = [0.0f32; MR];
        let mut saw_nan = [false; MR];
        let tile_first_seen = visible(i0);
        let tile_last_seen = visible(i0 + height - 1);

        for block in 0..tile_last_seen.div_ceil(KEY_BLOCK) {
            let start = block * KEY_BLOCK;
            let block_keys = KEY_BLOCK.min(last_visible - start);
            // S = Q·Kᵀ for the block, one microkernel call per NR keys
            let s_problem = Problem {
                k: head_dim,
                a: q_packed.as_ptr(),
                b: std::ptr::null(),
                c: scores.as_mut_ptr(),
                ldc: KEY_BLOCK,
                bias: std::ptr::null(),
                activation: Activation::Identity,
                residual: std::ptr::null(),
                ld_residual: 0,
            };
            for j0 in (0..KEY_BLOCK).step_by(nr) {
                unsafe {
                    let b_sliver = keys_t
                        .as_ptr()
                        .add((block * KEY_PANELS + j0 / PANEL) * head_dim * PANEL + j0 % PANEL);
                    microkernel::<S, MR>(
                        &s_problem,
                        head_dim,
                        q_packed.as_ptr(),
                        b_sliver,
                        0,
                        j0,
                        height,
                        nr,
                        true,
                        true,
                        std::ptr::null(),
                    );
                }
            }

            // online softmax per row; P packed (keys, MR) for the product with V
            for r in 0..MR {
                let seen = if r < height {
                    visible(i0 + r).saturating_sub(start).min(block_keys)
                } else {
                    0
                };
                let s_row = &mut scores[r * KEY_BLOCK..(r + 1) * KEY_BLOCK];
                let mut block_max = f32::NEG_INFINITY;
                unsafe {
                    let scale = S::splat(job.scale);
                    let limit = S::splat(seen as f32 - 0.5);
                    let open = key_open.as_ptr().add(start);
                    let mut max = S::splat(f32::NEG_INFINITY);
                    for c in 0..KEY_BLOCK / lanes {
                        let p = s_row.as_mut_ptr().add(c * lanes);
                        let score = S::mul(S::load(p), scale);
                        let beyond = S::lt(limit, S::load(INDICES.as_ptr().add(c * lanes)));
                        let score = S::select(beyond, S::splat(f32::NEG_INFINITY), score);
                        // padding; `open` is read only below `seen` (lanes beyond load 0)
                        let width = seen.saturating_sub(c * lanes).min(lanes);
                        let closed =
                            S::lt(S::load_partial(open.add(c * lanes), width), S::splat(0.5));
                        let score = S::select(closed, S::splat(f32::NEG_INFINITY), score);
                        S::store(p, score);
                        max = S::max(score, max);
                    }
                    block_max = block_max.max(S::reduce_max(max));
                }
                let new_max = running_max[r].max(block_max);
                if new_max == f32::NEG_INFINITY {
                    saw_nan[r] |= s_row.iter().any(|s| s.is_nan());
                    for j in 0..KEY_BLOCK {
                        p_packed[j * MR + r] = 0.0;
                    }
                    continue;
                }
                let correction = (running_max[r] - new_max).exp();
                running_max[r] = new_max;
                unsafe {
                    let max = S::splat(new_max);
                    let mut sum = S::splat(0.0);
                    for c in 0..KEY_BLOCK / lanes {
                        let p = s_row.as_mut_ptr().add(c * lanes);
                        let e = simd::exp::<S>(S::sub(S::load(p), max));
                        S::store(p, e);
                        sum = S::add(sum, e);
                    }
                    running_sum[r] = running_sum[r] * correction + S::reduce_add(sum);
                    if correction != 1.0 {
                        let correction = S::splat(correction);
                        let o_row = o_tile.as_mut_ptr().add(r * out_dim);
                        for v in 0..out_dim / lanes {
                            let p = o_row.add(v * lanes);
                            S::store(p, S::mul(S::load(p), correction));
                        }
                    }
                }
                for j in 0..KEY_BLOCK {
                    p_packed[j * MR + r] = s_row[j];
                }
            }

            let whole_block = tile_first_seen >= start + block_keys;
            if whole_block {
                // O += P·V, one microkernel call per NR output columns
                let o_problem = Problem {
                    k: block_keys,
                    a: p_packed.as_ptr(),
                    b: std::ptr::null(),
                    c: o_tile.as_mut_ptr(),
                    ldc: out_dim,
                    bias: std::ptr::null(),
                    activation: Activation::Identity,
                    residual: std::ptr::null(),
                    ld_residual: 0,
                };
                for j0 in (0..out_dim).step_by(nr) {
                    unsafe {
                        let b_sliver = values.as_ptr().add(
                            (block * value_panels + j0 / PANEL) * KEY_BLOCK * PANEL + j0 % PANEL,
                        );
                        microkernel::<S, MR>(
                            &o_problem,
                            block_keys,
                            p_packed.as_ptr(),
                            b_sliver,
                            0,
                            j0,
                            height,
                            nr,
                            false,
                            true,
                            std::ptr::null(),
                        );
                    }
                }
            } else {
                // the causal diagonal: each row over the keys it sees
                for r in 0..height {
                    let seen = visible(i0 + r).saturating_sub(start).min(block_keys);
                    for j in 0..seen {
                        let weight = p_packed[j * MR + r];
                        if weight == 0.0 {
                            continue;
                        }
                        for d in 0..head_dim {
                            let at = (block * value_panels + d / PANEL) * KEY_BLOCK * PANEL
                                + j * PANEL
                                + d % PANEL;
                            o_tile[r * out_dim + d] += weight * values[at];
                        }
                    }
                }
            }
        }

        for r in 0..height {
            let fully_masked = running_max[r] == f32::NEG_INFINITY;
            let inverse = 1.0 / running_sum[r];
            for d in 0..head_dim {
                let value = if fully_masked {
                    0.0
                } else if saw_nan[r] {
                    f32::NAN
                } else {
                    o_tile[r * out_dim + d] * inverse
                };
                let at = b as isize * job.out_strides[0]
                    + h as isize * job.out_strides[1]
                    + (i0 + r) as isize * job.out_strides[2]
                    + d as isize * job.out_strides[3];
                unsafe { *job.out.offset(at) = value };
            }
        }
    }
    SCRATCH.with(|cell| cell.set(scratch));
}

/// For a few queries (decoding): the same online softmax over blocks of keys, with K and V rows
/// read in place (unit stride along head_dim): scores by dot products, values skipped where the
/// weight is 0, as in the reference.
#[inline(always)]
unsafe fn head_direct_body<S: Simd>(job: &Job, b: usize, h: usize) {
    let lanes = S::LANES;
    let head_dim = job.head_dim;
    let vectors = head_dim.div_ceil(lanes);
    let offset = job.keys as isize - job.queries as isize;
    let k_base = unsafe {
        job.k
            .ptr
            .offset(b as isize * job.k.strides[0] + h as isize * job.k.strides[1])
    };
    let v_base = unsafe {
        job.v
            .ptr
            .offset(b as isize * job.v.strides[0] + h as isize * job.v.strides[1])
    };
    let (k_stride, v_stride) = (job.k.strides[2], job.v.strides[2]);
    let mut query = [0.0f32; 1024];
    let mut output = [0.0f32; 1024];
    let mut scores = [0.0f32; KEY_BLOCK];
    let width = |v: usize| lanes.min(head_dim - v * lanes);
    for i in 0..job.queries {
        debug_assert!(
            head_dim <= query.len(),
            "the packed path handles head_dim above 1024"
        );
        unsafe {
            let q_row = job.q.ptr.offset(
                b as isize * job.q.strides[0]
                    + h as isize * job.q.strides[1]
                    + i as isize * job.q.strides[2],
            );
            copy_row(q_row, job.q.strides[3], &mut query[..head_dim]);
        }
        output[..vectors * lanes].fill(0.0);
        let mut running_max = f32::NEG_INFINITY;
        let mut running_sum = 0.0f32;
        let mut saw_nan = false;
        let seen_keys = if job.causal {
            ((i as isize + offset).max(0) as usize + 1).min(job.keys)
        } else {
            job.keys
        };
        for start in (0..seen_keys).step_by(KEY_BLOCK) {
            let seen = (seen_keys - start).min(KEY_BLOCK);
            let mut block_max = f32::NEG_INFINITY;
            for (j, score) in scores.iter_mut().enumerate().take(seen) {
                let key = start + j;
                let open = job.padding.is_none_or(|(ptr, strides)| unsafe {
                    *ptr.offset(b as isize * strides[0] + key as isize * strides[1]) != 0.0
                });
                *score = if open {
                    unsafe {
                        let k_row = k_base.offset(key as isize * k_stride);
                        let mut acc = S::splat(0.0);
                        for v in 0..vectors {
                            let q = S::load_partial(query.as_ptr().add(v * lanes), width(v));
                            let k = S::load_partial(k_row.add(v * lanes), width(v));
                            acc = S::fma(q, k, acc);
                        }
                        S::reduce_add(acc) * job.scale
                    }
                } else {
                    f32::NEG_INFINITY
                };
                block_max = block_max.max(*score);
            }
            let new_max = running_max.max(block_max);
            if new_max == f32::NEG_INFINITY {
                saw_nan |= scores[..seen].iter().any(|s| s.is_nan());
                continue;
            }
            let correction = (running_max - new_max).exp();
            running_max = new_max;
            let mut sum = 0.0f32;
            for score in scores.iter_mut().take(seen) {
                *score = (*score - new_max).exp();
                sum += *score;
            }
            running_sum = running_sum * correction + sum;
            unsafe {
                let correction = S::splat(correction);
                for v in 0..vectors {
                    let out = output.as_mut_ptr().add(v * lanes);
                    let mut acc = S::mul(S::load(out), correction);
                    for (j, &weight) in scores.iter().enumerate().take(seen) {
                        // as the reference: a zero weight (a masked key) never touches V
                        if weight != 0.0 {
                            let v_row = v_base.offset((start + j) as isize * v_stride);
                            let value = S::load_partial(v_row.add(v * lanes), width(v));
                            acc = S::fma(S::splat(weight), value, acc);
                        }
                    }
                    S::store(out, acc);
                }
            }
        }
        let fully_masked = running_max == f32::NEG_INFINITY;
        let inverse = 1.0 / running_sum;
        for (d, &sum) in output.iter().enumerate().take(head_dim) {
            let value = if fully_masked {
                0.0
            } else if saw_nan {
                f32::NAN
            } else {
                sum * inverse
            };
            let at = b as isize * job.out_strides[0]
                + h as isize * job.out_strides[1]
                + i as isize * job.out_strides[2]
                + d as isize * job.out_strides[3];
            unsafe { *job.out.offset(at) = value };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use crate::simd::{Avx2, Avx512};

    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn head_avx512(job: &Job, b: usize, h: usize) {
        unsafe { head_gemm_body::<Avx512, AVX512_MR>(job, b, h) }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn head_avx2(job: &Job, b: usize, h: usize) {
        unsafe { head_gemm_body::<Avx2, AVX2_MR>(job, b, h) }
    }

    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn head_direct_avx512(job: &Job, b: usize, h: usize) {
        unsafe { head_direct_body::<Avx512>(job, b, h) }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn head_direct_avx2(job: &Job, b: usize, h: usize) {
        unsafe { head_direct_body::<Avx2>(job, b, h) }
    }
}

/// The definition: scores, softmax and weighted sum per query, in plain loops.
pub fn attention_reference(
    q: ArrayView4<'_, f32>,
    k: ArrayView4<'_, f32>,
    v: ArrayView4<'_, f32>,
    mask: &AttentionMask<'_>,
    scale: f32,
) -> Array4<f32> {
    let mut out = Array4::<f32>::zeros(q.dim());
    attention_reference_into(q, k, v, mask, scale, out.view_mut());
    out
}

fn attention_reference_into(
    q: ArrayView4<'_, f32>,
    k: ArrayView4<'_, f32>,
    v: ArrayView4<'_, f32>,
    mask: &AttentionMask<'_>,
    scale: f32,
    mut out: ArrayViewMut4<'_, f32>,
) {
    check_shapes(&q, &k, &v, mask, &out);
    let (batch, heads, queries, head_dim) = q.dim();
    let keys = k.dim().2;
    let mut scores = vec![0.0f32; keys];
    for b in 0..batch {
        for h in 0..heads {
            for i in 0..queries {
                let visible_until = if mask.causal {
                    (i + keys).saturating_sub(queries) + 1
                } else {
                    keys
                };
                let mut max = f32::NEG_INFINITY;
                for (j, score) in scores.iter_mut().enumerate() {
                    let masked = j >= visible_until
                        || mask.key_padding.as_ref().is_some_and(|p| p[[b, j]] == 0.0);
                    *score = if masked {
                        f32::NEG_INFINITY
                    } else {
                        let mut dot = 0.0f32;
                        for d in 0..head_dim {
                            dot += q[[b, h, i, d]] * k[[b, h, j, d]];
                        }
                        dot * scale
                    };
                    max = max.max(*score);
                }
                for d in 0..head_dim {
                    out[[b, h, i, d]] = 0.0;
                }
                if max == f32::NEG_INFINITY {
                    continue;
                }
                let mut sum = 0.0f32;
                for score in scores.iter_mut() {
                    *score = (*score - max).exp();
                    sum += *score;
                }
                for (j, &weight) in scores.iter().enumerate() {
                    if weight == 0.0 {
                        continue;
                    }
                    for d in 0..head_dim {
                        out[[b, h, i, d]] += weight / sum * v[[b, h, j, d]];
                    }
                }
            }
        }
    }
}
