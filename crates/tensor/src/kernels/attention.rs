//! Scaled-dot-product attention, tiled with an online softmax (after FlashAttention): one task per
//! (batch entry, head), keys in blocks of 64, never more than one block of scores in memory (the
//! scratch is O(keys · head_dim) per task: Kᵀ and V copied once into contiguous blocks).

use std::cell::Cell;

use ndarray::{Array4, ArrayView2, ArrayView4, ArrayViewMut4};
use rayon::prelude::*;

use crate::simd::{self, Isa, Simd};
use crate::{GemmPath, gemm_path};

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

#[allow(clippy::needless_range_loop)] // indices into register arrays of a const size
/// `out[..W vectors] = out·correction + Σ_j weights[j]·V[j]`, V rows `row_stride` apart; even and
/// odd keys in separate accumulators (2·W independent FMA chains).
#[inline(always)]
unsafe fn accumulate_values<S: Simd, const W: usize>(
    (out, values, row_stride, weights, correction): (*mut f32, *const f32, usize, &[f32], f32),
) {
    let lanes = S::LANES;
    unsafe {
        let correction = S::splat(correction);
        let mut even = [S::splat(0.0); W];
        let mut odd = [S::splat(0.0); W];
        for w in 0..W {
            even[w] = S::mul(S::load(out.add(w * lanes)), correction);
        }
        let pairs = weights.len() / 2;
        for pair in 0..pairs {
            let j = 2 * pair;
            let w0 = S::splat(weights[j]);
            let w1 = S::splat(weights[j + 1]);
            let row0 = values.add(j * row_stride);
            let row1 = values.add((j + 1) * row_stride);
            for w in 0..W {
                even[w] = S::fma(w0, S::load(row0.add(w * lanes)), even[w]);
                odd[w] = S::fma(w1, S::load(row1.add(w * lanes)), odd[w]);
            }
        }
        if weights.len() % 2 == 1 {
            let j = weights.len() - 1;
            let w0 = S::splat(weights[j]);
            let row0 = values.add(j * row_stride);
            for w in 0..W {
                even[w] = S::fma(w0, S::load(row0.add(w * lanes)), even[w]);
            }
        }
        for w in 0..W {
            S::store(out.add(w * lanes), S::add(even[w], odd[w]));
        }
    }
}

#[allow(clippy::needless_range_loop)] // indices into register arrays
/// Flash-attention style, for one (entry, head): K and V copied once into blocks, then for each
/// tile of queries the key blocks in order, with an online softmax per query (running maximum
/// and sum; the output is rescaled when the maximum grows).
#[inline(always)]
unsafe fn head_body<S: Simd>(job: &Job, b: usize, h: usize) {
    let lanes = S::LANES;
    let head_dim = job.head_dim;
    let padded_dim = head_dim.div_ceil(lanes) * lanes;
    let chunks = KEY_BLOCK / lanes;
    let offset = job.keys as isize - job.queries as isize;
    // query i sees keys 0 .. visible(i), as the reference's `visible_until`
    let visible = |i: usize| {
        if job.causal {
            ((i as isize + offset).max(0) as usize + 1).min(job.keys)
        } else {
            job.keys
        }
    };
    let last_visible = visible(job.queries - 1);
    let blocks = last_visible.div_ceil(KEY_BLOCK);

    // Kᵀ by blocks: block, then (head_dim, KEY_BLOCK); V: (keys, padded_dim); whether each key
    // is open (1) or padding (0), and 0 beyond the last key
    let mut scratch = SCRATCH.with(|cell| cell.take());
    // cleared and refilled with zeros: padding lanes and missing keys must read as 0
    scratch.clear();
    scratch.resize(blocks * (head_dim + padded_dim + 1) * KEY_BLOCK, 0.0);
    let (keys_t, rest) = scratch.split_at_mut(blocks * head_dim * KEY_BLOCK);
    let (values, key_open) = rest.split_at_mut(blocks * KEY_BLOCK * padded_dim);
    let mut row = vec![0.0f32; head_dim];
    let base = |s: &Strided| b as isize * s.strides[0] + h as isize * s.strides[1];
    for j in 0..last_visible {
        let (block, column) = (j / KEY_BLOCK, j % KEY_BLOCK);
        unsafe {
            let k_row = job
                .k
                .ptr
                .offset(base(&job.k) + j as isize * job.k.strides[2]);
            copy_row(k_row, job.k.strides[3], &mut row);
            let v_row = job
                .v
                .ptr
                .offset(base(&job.v) + j as isize * job.v.strides[2]);
            copy_row(
                v_row,
                job.v.strides[3],
                &mut values[j * padded_dim..j * padded_dim + head_dim],
            );
        }
        let block_t = &mut keys_t[block * head_dim * KEY_BLOCK..];
        for (d, &value) in row.iter().enumerate() {
            block_t[d * KEY_BLOCK + column] = value;
        }
        let open = job.padding.is_none_or(|(ptr, strides)| unsafe {
            *ptr.offset(b as isize * strides[0] + j as isize * strides[1]) != 0.0
        });
        key_open[j] = if open { 1.0 } else { 0.0 };
        if !open {
            // a padding key's weight is exactly 0; its value must not reach the sum (0 · NaN),
            // as the reference never reads it
            values[j * padded_dim..(j + 1) * padded_dim].fill(0.0);
        }
    }

    let mut query = vec![0.0f32; head_dim];
    let mut output = vec![0.0f32; padded_dim];
    let mut scores = [0.0f32; KEY_BLOCK];
    const INDICES: [f32; KEY_BLOCK] = {
        let mut indices = [0.0f32; KEY_BLOCK];
        let mut i = 0;
        while i < KEY_BLOCK {
            indices[i] = i as f32;
            i += 1;
        }
        indices
    };
    for i in 0..job.queries {
        unsafe {
            let q_row = job
                .q
                .ptr
                .offset(base(&job.q) + i as isize * job.q.strides[2]);
            copy_row(q_row, job.q.strides[3], &mut query);
        }
        output.fill(0.0);
        let mut running_max = f32::NEG_INFINITY;
        let mut running_sum = 0.0f32;
        let mut saw_nan = false;
        let seen_keys = visible(i);
        for block in 0..seen_keys.div_ceil(KEY_BLOCK) {
            let start = block * KEY_BLOCK;
            let seen = (seen_keys - start).min(KEY_BLOCK);
            let block_t = unsafe { keys_t.as_ptr().add(block * head_dim * KEY_BLOCK) };
            let open = unsafe { key_open.as_ptr().add(start) };
            let mut block_max = f32::NEG_INFINITY;
            unsafe {
                // scores = scale · q·Kᵀ, -inf where masked; two accumulator sets (even and odd d) so that
                // 2 × chunks independent FMA chains hide the latency
                let mut even = [S::splat(0.0); 8];
                let mut odd = [S::splat(0.0); 8];
                let mut d = 0;
                while d + 1 < head_dim {
                    let q0 = S::splat(query[d]);
                    let q1 = S::splat(query[d + 1]);
                    let row0 = block_t.add(d * KEY_BLOCK);
                    let row1 = block_t.add((d + 1) * KEY_BLOCK);
                    for c in 0..chunks {
                        even[c] = S::fma(q0, S::load(row0.add(c * lanes)), even[c]);
                        odd[c] = S::fma(q1, S::load(row1.add(c * lanes)), odd[c]);
                    }
                    d += 2;
                }
                if d < head_dim {
                    let q0 = S::splat(query[d]);
                    let row0 = block_t.add(d * KEY_BLOCK);
                    for c in 0..chunks {
                        even[c] = S::fma(q0, S::load(row0.add(c * lanes)), even[c]);
                    }
                }
                let scale = S::splat(job.scale);
                let limit = S::splat(seen as f32 - 0.5);
                let mut max = S::splat(f32::NEG_INFINITY);
                for c in 0..chunks {
                    let score = S::mul(S::add(even[c], odd[c]), scale);
                    // padding, and causality (keys at or beyond `seen`), whatever the score
                    let padding = S::lt(S::load(open.add(c * lanes)), S::splat(0.5));
                    let score = S::select(padding, S::splat(f32::NEG_INFINITY), score);
                    let beyond = S::lt(limit, S::load(INDICES.as_ptr().add(c * lanes)));
                    let score = S::select(beyond, S::splat(f32::NEG_INFINITY), score);
                    S::store(scores.as_mut_ptr().add(c * lanes), score);
                    // `max(x, acc)` keeps `acc` when x is NaN: the maximum ignores NaN
                    max = S::max(score, max);
                }
                block_max = block_max.max(S::reduce_max(max));
            }
            let new_max = running_max.max(block_max);
            if new_max == f32::NEG_INFINITY {
                // nothing visible yet; a NaN here still poisons the row if anything is seen later
                saw_nan |= scores.iter().any(|s| s.is_nan());
                continue;
            }
            let correction = (running_max - new_max).exp();
            running_max = new_max;
            unsafe {
                let max = S::splat(new_max);
                let mut sum = S::splat(0.0);
                for c in 0..chunks {
                    let p = scores.as_mut_ptr().add(c * lanes);
                    let e = simd::exp::<S>(S::sub(S::load(p), max));
                    S::store(p, e);
                    sum = S::add(sum, e);
                }
                running_sum = running_sum * correction + S::reduce_add(sum);

                // output = output·correction + Σ_j p_j·V_j, up to 4 vectors at a time
                let vectors = padded_dim / lanes;
                let values_block = values.as_ptr().add(start * padded_dim);
                let mut first = 0;
                while first < vectors {
                    let width = 4.min(vectors - first);
                    let args = (
                        output.as_mut_ptr().add(first * lanes),
                        values_block.add(first * lanes),
                        padded_dim,
                        &scores[..seen],
                        correction,
                    );
                    match width {
                        1 => accumulate_values::<S, 1>(args),
                        2 => accumulate_values::<S, 2>(args),
                        3 => accumulate_values::<S, 3>(args),
                        _ => accumulate_values::<S, 4>(args),
                    }
                    first += width;
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
        unsafe { head_body::<Avx512>(job, b, h) }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn head_avx2(job: &Job, b: usize, h: usize) {
        unsafe { head_body::<Avx2>(job, b, h) }
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
    let (batch, heads, queries, head_dim) = q.dim();
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
