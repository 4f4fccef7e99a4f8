//! Scaled-dot-product attention, tiled with an online softmax (after FlashAttention): per task
//! one (batch entry, head, tile of queries), keys in blocks, never more than one block of scores
//! per query in memory.

use std::ops::Range;

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
    let tiles_per_head = queries.div_ceil(QUERY_TILE);
    (0..batch * heads * tiles_per_head)
        .into_par_iter()
        .for_each(|index| {
            let tile = index % tiles_per_head;
            let head = (index / tiles_per_head) % heads;
            let entry = index / (tiles_per_head * heads);
            let rows = tile * QUERY_TILE..((tile + 1) * QUERY_TILE).min(queries);
            // SAFETY: `Isa::for_path` checked the CPU; tasks write disjoint (entry, head, rows).
            unsafe {
                match isa {
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx512 => x86::tile_avx512(&job, entry, head, rows),
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2 => x86::tile_avx2(&job, entry, head, rows),
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

/// Queries per task: their scores against one key block are computed, softmaxed and applied
/// before the next block, so a task holds one row of KEY_BLOCK scores, never queries × keys.
const QUERY_TILE: usize = 32;
/// Keys per block (Kᵀ and V of the block are copied into contiguous scratch).
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

    /// Element (b, h, row, column).
    #[inline(always)]
    unsafe fn at(&self, b: usize, h: usize, row: usize, column: usize) -> f32 {
        let offset = b as isize * self.strides[0]
            + h as isize * self.strides[1]
            + row as isize * self.strides[2]
            + column as isize * self.strides[3];
        unsafe { *self.ptr.offset(offset) }
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

/// Flash-attention style, for queries `rows` of one (entry, head): key blocks in order, an
/// online softmax per query (running maximum and sum, output rescaled when the maximum grows).
#[inline(always)]
unsafe fn tile_body<S: Simd>(job: &Job, b: usize, h: usize, rows: Range<usize>) {
    let lanes = S::LANES;
    let head_dim = job.head_dim;
    let padded_dim = head_dim.div_ceil(lanes) * lanes;
    let chunks = KEY_BLOCK / lanes;
    let count = rows.len();
    let offset = job.keys as isize - job.queries as isize;
    // query i (absolute) sees keys 0 .. visible(i), as the reference's `visible_until`
    let visible = |i: usize| {
        if job.causal {
            ((i as isize + offset).max(0) as usize + 1).min(job.keys)
        } else {
            job.keys
        }
    };
    let last_visible = visible(rows.end - 1);

    let mut query = vec![0.0f32; count * head_dim];
    for (r, i) in rows.clone().enumerate() {
        for d in 0..head_dim {
            query[r * head_dim + d] = unsafe { job.q.at(b, h, i, d) };
        }
    }
    let mut output = vec![0.0f32; count * padded_dim];
    let mut running_max = vec![f32::NEG_INFINITY; count];
    let mut running_sum = vec![0.0f32; count];
    let mut saw_nan = vec![false; count];
    let mut keys_t = vec![0.0f32; head_dim * KEY_BLOCK]; // Kᵀ block: (head_dim, KEY_BLOCK)
    let mut values = vec![0.0f32; KEY_BLOCK * padded_dim]; // V block: (KEY_BLOCK, padded_dim)
    let mut key_open = [true; KEY_BLOCK];
    let mut scores = [0.0f32; KEY_BLOCK];

    for start in (0..last_visible).step_by(KEY_BLOCK) {
        let block = KEY_BLOCK.min(job.keys - start);
        for j in 0..KEY_BLOCK {
            let open = j < block
                && job.padding.is_none_or(|(ptr, strides)| unsafe {
                    *ptr.offset(b as isize * strides[0] + (start + j) as isize * strides[1]) != 0.0
                });
            key_open[j] = open;
            for d in 0..head_dim {
                keys_t[d * KEY_BLOCK + j] = if j < block {
                    unsafe { job.k.at(b, h, start + j, d) }
                } else {
                    0.0
                };
            }
            if j < block {
                for d in 0..head_dim {
                    values[j * padded_dim + d] = unsafe { job.v.at(b, h, start + j, d) };
                }
            }
        }

        for (r, i) in rows.clone().enumerate() {
            let seen = visible(i).saturating_sub(start).min(block);
            if seen == 0 {
                continue;
            }
            // scores of this query against the block: Σ_d q[d]·Kᵀ[d, j..j+lanes]
            unsafe {
                let mut acc = [S::splat(0.0); 8];
                for d in 0..head_dim {
                    let q_value = S::splat(query[r * head_dim + d]);
                    let row = keys_t.as_ptr().add(d * KEY_BLOCK);
                    for (c, acc) in acc.iter_mut().enumerate().take(chunks) {
                        *acc = S::fma(q_value, S::load(row.add(c * lanes)), *acc);
                    }
                }
                for (c, acc) in acc.iter().enumerate().take(chunks) {
                    S::store(scores.as_mut_ptr().add(c * lanes), *acc);
                }
            }
            let mut block_max = f32::NEG_INFINITY;
            for (j, score) in scores.iter_mut().enumerate() {
                *score = if j < seen && key_open[j] {
                    *score * job.scale
                } else {
                    f32::NEG_INFINITY
                };
                saw_nan[r] |= score.is_nan();
                block_max = block_max.max(*score);
            }
            let new_max = running_max[r].max(block_max);
            if new_max == f32::NEG_INFINITY {
                continue;
            }
            let correction = (running_max[r] - new_max).exp();
            running_max[r] = new_max;
            unsafe {
                let max = S::splat(new_max);
                for c in 0..chunks {
                    let p = scores.as_mut_ptr().add(c * lanes);
                    S::store(p, simd::exp::<S>(S::sub(S::load(p), max)));
                }
            }
            let sum: f32 = scores.iter().sum();
            running_sum[r] = running_sum[r] * correction + sum;
            unsafe {
                let out_row = output.as_mut_ptr().add(r * padded_dim);
                let mut acc = [S::splat(0.0); 8];
                let vectors = padded_dim / lanes;
                // output = output·correction + Σ_j p_j·V_j, 8 vectors (128 dims) at a time
                for first in (0..vectors).step_by(8) {
                    let width = 8.min(vectors - first);
                    let correction = S::splat(correction);
                    for (w, acc) in acc.iter_mut().enumerate().take(width) {
                        *acc = S::mul(S::load(out_row.add((first + w) * lanes)), correction);
                    }
                    for (j, &weight) in scores.iter().enumerate().take(block) {
                        // as the reference: a zero weight (a masked key) never touches V
                        if weight == 0.0 {
                            continue;
                        }
                        let weight = S::splat(weight);
                        let v_row = values.as_ptr().add(j * padded_dim + first * lanes);
                        for (w, acc) in acc.iter_mut().enumerate().take(width) {
                            *acc = S::fma(weight, S::load(v_row.add(w * lanes)), *acc);
                        }
                    }
                    for (w, acc) in acc.iter().enumerate().take(width) {
                        S::store(out_row.add((first + w) * lanes), *acc);
                    }
                }
            }
        }
    }

    for (r, i) in rows.enumerate() {
        let fully_masked = running_max[r] == f32::NEG_INFINITY;
        let inverse = 1.0 / running_sum[r];
        for d in 0..head_dim {
            let value = if fully_masked {
                0.0
            } else if saw_nan[r] {
                f32::NAN
            } else {
                output[r * padded_dim + d] * inverse
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
    pub(super) unsafe fn tile_avx512(job: &Job, b: usize, h: usize, rows: Range<usize>) {
        unsafe { tile_body::<Avx512>(job, b, h, rows) }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile_avx2(job: &Job, b: usize, h: usize, rows: Range<usize>) {
        unsafe { tile_body::<Avx2>(job, b, h, rows) }
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
