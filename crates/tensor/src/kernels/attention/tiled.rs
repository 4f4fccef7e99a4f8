//! The tiled path (after FlashAttention): per (batch entry, head), Kᵀ and V are packed once into
//! panels; per tile of MR queries the scores against a chunk of up to 512 keys (MR × 512 floats,
//! 24 KiB) and the weighted sum of values are products by the GEMM microkernel's register tile,
//! the softmax in between works on the scores in place, and between chunks it is online, so the
//! scratch is O(keys · head_dim) per task, never queries × keys.

use std::cell::Cell;

use super::{Job, Strided};
use crate::kernels::gemm::microkernel::{AVX2_MR, AVX512_MR};
use crate::simd::Simd;

#[cfg(target_arch = "x86_64")]
pub(super) use x86::{head_avx2, head_avx512};

thread_local! {
    /// Kᵀ, V, the key mask and the tiles of one head, kept between calls on this thread (taken out while in
    /// use, so a nested call simply allocates its own).
    static SCRATCH: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Keys per chunk of the tiled path: a tile's scores against a whole chunk are computed,
/// softmaxed and applied before the next chunk (an online softmax between chunks), so a task
/// holds MR × KEY_CHUNK scores (24 KiB) whatever the sequence length; up to 512 keys the
/// softmax is a plain two-pass one.
const KEY_CHUNK: usize = 512;

/// Row stride of the scores tile: a chunk and one cache line, so that rows do not fall into the
/// same L1 sets.
const SCORES_STRIDE: usize = KEY_CHUNK + 16;

/// 0, 1, 2, … (enough for one vector of any instruction set).
const LANE_INDICES: [f32; 16] = [
    0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0,
];

/// What the tiled attention needs beyond [`Simd`].
trait AttentionSimd: Simd {
    /// `dst[c · dst_stride + r] = src[r · src_stride + c]` for `r, c < LANES`: a block of K
    /// transposed in registers.
    ///
    /// # Safety
    /// Only on a CPU with `Self`'s instruction set (what a [`Token`](crate::isa::Token) for it
    /// proves), with `src` valid for reads of `LANES` rows of `LANES` floats `src_stride` apart and
    /// `dst` valid for writes of `LANES` rows of `LANES` floats `dst_stride` apart.
    unsafe fn transpose(src: *const f32, src_stride: isize, dst: *mut f32, dst_stride: usize);
    /// The largest lane, for vectors without NaN.
    ///
    /// # Safety
    /// Only on a CPU with `Self`'s instruction set (what a [`Token`](crate::isa::Token) for it
    /// proves).
    unsafe fn max_lane(x: Self::V) -> f32;
}

/// Takes the next `len` floats of `rest`, keeping the following part on a 64-byte boundary.
fn carve<'a>(rest: &mut &'a mut [f32], len: usize) -> &'a mut [f32] {
    let (part, tail) = std::mem::take(rest).split_at_mut(len.next_multiple_of(16));
    *rest = tail;
    &mut part[..len]
}

/// `S[r, 0..NR] = mask[0..NR] + Σ_d Q[r, d] · Kᵀ[d, 0..NR]` for the MR rows of the query tile:
/// the register tile of the GEMM microkernel (MR × 2 vectors), with Q broadcast from its rows in
/// place (row stride `q_stride`, a constant after inlining, so every broadcast is one addressed
/// operand). With `row_max`, each row's maximum so far is kept there too (NaN ignored, as
/// `f32::max` does).
///
/// `keys_t`: one Kᵀ panel at this tile's keys (head_dim rows, row stride NR); `mask`: the
/// additive key mask at this tile's keys (0 or −∞); `bias`: the additive bias at this tile's
/// first query and key; `scores`: the scores tile at this tile's first key (row stride
/// [`SCORES_STRIDE`]).
///
/// # Safety
/// Only on a CPU with `S`'s instruction set (what a [`Token`](crate::isa::Token) for it proves);
/// `q` valid for reads of MR rows of `head_dim` floats `q_stride` apart, `keys_t` of `head_dim`
/// rows of NR = 2 · LANES floats (row stride NR) and `mask` of NR floats; the bias, when given,
/// valid for reads of `bias.rows` rows of `bias.keys.min(NR)` floats `bias.row_stride` apart;
/// `scores` valid for writes of MR rows of NR floats [`SCORES_STRIDE`] apart.
#[inline(always)]
#[allow(clippy::too_many_arguments)] // the operands of one register tile
unsafe fn scores_tile<S: Simd, const MR: usize>(
    q: *const f32,
    q_stride: usize,
    head_dim: usize,
    keys_t: *const f32,
    mask: *const f32,
    bias: Option<TileBias>,
    scores: *mut f32,
    row_max: Option<&mut [S::V]>,
) {
    // SAFETY: the caller passes pointers to its scratch tiles and Q rows sized for MR rows and
    // NR keys, and a bias covering `bias.rows` rows and `bias.keys` keys (read no further).
    unsafe {
        let lanes = S::LANES;
        let nr = 2 * lanes;
        // a padding key's column of Kᵀ is 0, so its score is exactly the mask's −∞
        let mut acc = [[S::load(mask), S::load(mask.add(lanes))]; MR];
        if let Some(bias) = bias {
            let (low, high) = (
                bias.keys.min(lanes),
                bias.keys.saturating_sub(lanes).min(lanes),
            );
            for (r, row) in acc.iter_mut().enumerate().take(bias.rows) {
                let bias_row = bias.ptr.offset(r as isize * bias.row_stride);
                row[0] = S::add(row[0], S::load_partial(bias_row, low));
                row[1] = S::add(row[1], S::load_partial(bias_row.add(lanes), high));
            }
        }
        for d in 0..head_dim {
            let b0 = S::load(keys_t.add(d * nr));
            let b1 = S::load(keys_t.add(d * nr + lanes));
            for (r, row) in acc.iter_mut().enumerate() {
                let a = S::splat(*q.add(r * q_stride + d));
                row[0] = S::fma(a, b0, row[0]);
                row[1] = S::fma(a, b1, row[1]);
            }
        }
        for (r, row) in acc.iter().enumerate() {
            S::store(scores.add(r * SCORES_STRIDE), row[0]);
            S::store(scores.add(r * SCORES_STRIDE + lanes), row[1]);
        }
        if let Some(row_max) = row_max {
            for (max, row) in row_max.iter_mut().zip(&acc) {
                *max = S::max(row[1], S::max(row[0], *max));
            }
        }
    }
}

/// The additive bias of one register tile of scores.
#[derive(Clone, Copy)]
struct TileBias {
    /// The bias of the tile's first query and key.
    ptr: *const f32,
    /// Between two queries' rows.
    row_stride: isize,
    /// Rows of the tile that have a bias row (the tile's queries).
    rows: usize,
    /// Keys of the bias row from the tile's first key on (NR or more: the whole tile).
    keys: usize,
}

/// `O[r, 0..NR] += Σ_j P[r, j] · V[j, 0..NR]` over `keys` keys for the MR rows of the tile, with
/// the weights P broadcast from the scores tile in place (row stride [`SCORES_STRIDE`]).
///
/// `values`: one V panel at the chunk's first key (row stride NR); `o`: the output tile at this
/// panel's columns (row stride `o_stride`).
///
/// # Safety
/// Only on a CPU with `S`'s instruction set (what a [`Token`](crate::isa::Token) for it proves);
/// `weights` valid for reads of MR rows of `keys` floats [`SCORES_STRIDE`] apart, `values` of
/// `keys` rows of NR = 2 · LANES floats (row stride NR), and `o` valid for reads and writes of MR
/// rows of NR floats `o_stride` apart.
#[inline(always)]
unsafe fn values_tile<S: Simd, const MR: usize>(
    weights: *const f32,
    keys: usize,
    values: *const f32,
    o: *mut f32,
    o_stride: usize,
) {
    // SAFETY: the caller passes the scores tile (MR rows of `keys` weights), a V panel of `keys`
    // rows of NR values and an output tile of MR rows of NR values at `o`.
    unsafe {
        let lanes = S::LANES;
        let nr = 2 * lanes;
        let mut acc = [[S::splat(0.0); 2]; MR];
        for (r, row) in acc.iter_mut().enumerate() {
            row[0] = S::load(o.add(r * o_stride));
            row[1] = S::load(o.add(r * o_stride + lanes));
        }
        for j in 0..keys {
            let b0 = S::load(values.add(j * nr));
            let b1 = S::load(values.add(j * nr + lanes));
            for (r, row) in acc.iter_mut().enumerate() {
                let a = S::splat(*weights.add(r * SCORES_STRIDE + j));
                row[0] = S::fma(a, b0, row[0]);
                row[1] = S::fma(a, b1, row[1]);
            }
        }
        for (r, row) in acc.iter().enumerate() {
            S::store(o.add(r * o_stride), row[0]);
            S::store(o.add(r * o_stride + lanes), row[1]);
        }
    }
}

/// Flash-attention style for one (entry, head), the two products at GEMM speed: Kᵀ packed once
/// into NR-key panels (register transposes), V into NR-column panels; then per tile of MR
/// queries (Q scaled by `scale` on the way in) and chunk of up to [`KEY_CHUNK`] keys:
/// S = Q·Kᵀ by the microkernel's register tile (key padding added as a −∞ mask, each row's
/// maximum taken on the way out), exponentials in place, and O += P·V by the register tile
/// again, reading P where the softmax left it. Between chunks the softmax is online (running
/// maximum and sum, O rescaled when the maximum grows). Keys that only some rows of a tile see
/// (the causal diagonal) are masked and applied per row, so a value no query may see is never
/// read; padding keys' values are packed as zeros. A last tile of at most MR_SMALL queries runs
/// register tiles of MR_SMALL rows (128 = 10 · 12 + 8).
///
/// # Safety
/// Only on a CPU with `S`'s instruction set (what a [`Token`](crate::isa::Token) for it proves);
/// `job` describes live views of the shapes [`check_shapes`](super::check_shapes) accepts (its
/// pointers and strides address every element of them), `b` and `h` are a batch entry and a head of
/// them, `head_dim ≤ q_stride`, and no other thread accesses the output rows of (`b`, `h`) while it
/// runs.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // rows, keys and lanes index several buffers at once
unsafe fn head_gemm_body<S: AttentionSimd, const MR: usize, const MR_SMALL: usize>(
    job: &Job<'_>,
    b: usize,
    h: usize,
    q_stride: usize,
) {
    let lanes = S::LANES;
    let nr = 2 * lanes;
    let head_dim = job.head_dim;
    debug_assert!(head_dim <= q_stride);
    let value_panels = head_dim.div_ceil(nr);
    let out_dim = value_panels * nr; // O tile row length
    let offset = job.keys as isize - job.queries as isize;
    let visible = |i: usize| {
        if job.causal {
            ((i as isize + offset).max(0) as usize + 1).min(job.keys)
        } else {
            job.keys
        }
    };
    let keys = visible(job.queries - 1); // the keys some query sees
    let key_panels = keys.div_ceil(nr);
    let padded_keys = key_panels * nr;

    // scratch: Kᵀ (key panel, head_dim, NR), V (value panel, key, NR), additive key mask (key),
    // Q tile (MR, q_stride), scores (MR, SCORES_STRIDE), O tile (MR, out_dim)
    let lengths = [
        key_panels * head_dim * nr,
        value_panels * keys * nr,
        padded_keys,
        MR * q_stride,
        MR * SCORES_STRIDE,
        MR * out_dim,
    ];
    let total = lengths
        .iter()
        .map(|len| len.next_multiple_of(16))
        .sum::<usize>()
        + 16;
    let mut scratch = SCRATCH.with(|cell| cell.take());
    if scratch.len() < total {
        scratch.resize(total, 0.0);
    }
    let align = scratch.as_ptr().align_offset(64).min(16);
    let mut rest = &mut scratch[align..];
    let keys_t = carve(&mut rest, lengths[0]);
    let values = carve(&mut rest, lengths[1]);
    let key_mask = carve(&mut rest, lengths[2]);
    let q_tile = carve(&mut rest, lengths[3]);
    let scores = carve(&mut rest, lengths[4]);
    let o_tile = carve(&mut rest, lengths[5]);

    let base = |s: &Strided| b as isize * s.strides[0] + h as isize * s.strides[1];
    let [_, _, k_row_stride, k_column_stride] = job.k.strides;
    let [_, _, v_row_stride, v_column_stride] = job.v.strides;
    let [_, _, q_row_stride, q_column_stride] = job.q.strides;
    // SAFETY: (the whole body) every pointer below stays inside this (entry, head)'s rows of the
    // inputs, of its rows of `out`, or inside the scratch parts sized above.
    unsafe {
        let k_base = job.k.ptr.offset(base(&job.k));
        let v_base = job.v.ptr.offset(base(&job.v));
        let q_base = job.q.ptr.offset(base(&job.q));
        let out_base = job
            .out
            .offset(b as isize * job.out_strides[0] + h as isize * job.out_strides[1]);
        // the rows of Q, K, V and the output lie far apart in the models' fused buffers, beyond
        // the hardware prefetcher's reach: each is asked for a little ahead of its use
        let prefetch = |base: *const f32, row_stride: isize, column_stride: isize, rows| {
            if column_stride == 1 {
                prefetch_rows(base, row_stride, rows, head_dim);
            }
        };
        prefetch(
            q_base,
            q_row_stride,
            q_column_stride,
            0..MR.min(job.queries),
        );
        prefetch(k_base, k_row_stride, k_column_stride, 0..lanes.min(keys));

        // the key mask: 0 for a key to attend to, −∞ for padding and for the last panel's
        // missing keys
        for (j, mask) in key_mask.iter_mut().enumerate() {
            let open = j < keys
                && job.padding.is_none_or(|(ptr, strides)| {
                    *ptr.offset(b as isize * strides[0] + j as isize * strides[1]) != 0.0
                });
            *mask = if open { 0.0 } else { f32::NEG_INFINITY };
        }

        // Kᵀ: element (d, j) at (j / NR)·head_dim·NR + d·NR + j % NR; LANES × LANES blocks by
        // register transposes, the edges one by one; masked keys' columns 0 (their scores are
        // then exactly the mask's −∞, whatever K holds)
        let key_t_at = |d: usize, j: usize| (j / nr) * head_dim * nr + d * nr + j % nr;
        let (block_keys, block_dims) = if k_column_stride == 1 {
            (keys / lanes * lanes, head_dim / lanes * lanes)
        } else {
            (0, 0)
        };
        for j0 in (0..block_keys).step_by(lanes) {
            let next = j0 + lanes..(j0 + 2 * lanes).min(keys);
            prefetch(k_base, k_row_stride, k_column_stride, next);
            for d0 in (0..block_dims).step_by(lanes) {
                S::transpose(
                    k_base.offset(j0 as isize * k_row_stride + d0 as isize),
                    k_row_stride,
                    keys_t.as_mut_ptr().add(key_t_at(d0, j0)),
                    nr,
                );
            }
        }
        prefetch(
            v_base,
            v_row_stride,
            v_column_stride,
            0..VALUES_AHEAD.min(keys),
        );
        for j in 0..padded_keys {
            let open = key_mask[j] == 0.0;
            let k_row = k_base.offset(j as isize * k_row_stride);
            let first_dim = if j < block_keys && open {
                block_dims
            } else {
                0
            };
            for d in first_dim..head_dim {
                keys_t[key_t_at(d, j)] = if open {
                    *k_row.offset(d as isize * k_column_stride)
                } else {
                    0.0
                };
            }
        }

        // V: element (j, d) at (d / NR)·keys·NR + j·NR + d % NR; a padding key's value is 0
        // (its weight is exactly 0, and 0 · NaN must not reach the sum)
        for j in 0..keys {
            let open = key_mask[j] == 0.0;
            let ahead = j + VALUES_AHEAD;
            prefetch(
                v_base,
                v_row_stride,
                v_column_stride,
                ahead..(ahead + 1).min(keys),
            );
            let v_row = v_base.offset(j as isize * v_row_stride);
            for panel in 0..value_panels {
                let d0 = panel * nr;
                let dst = values.as_mut_ptr().add(panel * keys * nr + j * nr);
                for c in 0..2 {
                    let first = d0 + c * lanes;
                    let width = lanes.min(head_dim.saturating_sub(first));
                    let value = if open && width > 0 {
                        load_row::<S>(v_row, v_column_stride, first, width)
                    } else {
                        S::splat(0.0)
                    };
                    S::store(dst.add(c * lanes), value);
                }
            }
        }

        let indices = S::load(LANE_INDICES.as_ptr());
        let scale = S::splat(job.scale);
        for i0 in (0..job.queries).step_by(MR) {
            let height = MR.min(job.queries - i0);
            // the Q tile, scaled (the rows past the last query zero)
            for r in 0..MR {
                for first in (0..head_dim).step_by(lanes) {
                    let width = lanes.min(head_dim - first);
                    let value = if r < height {
                        let q_row = q_base.offset((i0 + r) as isize * q_row_stride);
                        S::mul(load_row::<S>(q_row, q_column_stride, first, width), scale)
                    } else {
                        S::splat(0.0)
                    };
                    S::store_partial(q_tile.as_mut_ptr().add(r * q_stride + first), width, value);
                }
            }
            let next = i0 + MR..(i0 + 2 * MR).min(job.queries);
            prefetch(q_base, q_row_stride, q_column_stride, next);
            let (out_row_stride, out_column_stride) = (job.out_strides[2], job.out_strides[3]);
            prefetch(out_base, out_row_stride, out_column_stride, i0..i0 + height);
            o_tile.fill(0.0);
            let mut running_max = [f32::NEG_INFINITY; MR];
            let mut running_sum = [0.0f32; MR];
            let mut saw_nan = [false; MR];
            let tile_first_seen = visible(i0);
            let tile_last_seen = visible(i0 + height - 1);

            for start in (0..tile_last_seen).step_by(KEY_CHUNK) {
                let chunk_keys = KEY_CHUNK.min(tile_last_seen - start);
                let vectors = chunk_keys.div_ceil(lanes);
                // keys every row of the tile sees, and the register tiles made only of them
                // (the last one may end in the mask's −∞ past the last key)
                let shared = tile_first_seen.saturating_sub(start).min(chunk_keys);
                let shared_tiles = if shared == chunk_keys && start + chunk_keys == keys {
                    chunk_keys.div_ceil(nr)
                } else {
                    shared / nr
                };

                // S = Q·Kᵀ + mask for the chunk, NR keys per register tile, each row's maximum
                // over the shared tiles on the way
                let mut row_max = [S::splat(f32::NEG_INFINITY); MR];
                for tile in 0..chunk_keys.div_ceil(nr) {
                    let j0 = tile * nr;
                    let keys_t = keys_t.as_ptr().add(key_t_at(0, start + j0));
                    let mask = key_mask.as_ptr().add(start + j0);
                    let scores = scores.as_mut_ptr().add(j0);
                    let row_max = (tile < shared_tiles).then_some(&mut row_max[..]);
                    let bias = job.bias.map(|(ptr, [head_stride, query_stride])| TileBias {
                        ptr: ptr.offset(
                            h as isize * head_stride
                                + i0 as isize * query_stride
                                + (start + j0) as isize,
                        ),
                        row_stride: query_stride,
                        rows: height,
                        keys: job.keys - (start + j0),
                    });
                    if height <= MR_SMALL {
                        scores_tile::<S, MR_SMALL>(
                            q_tile.as_ptr(),
                            q_stride,
                            head_dim,
                            keys_t,
                            mask,
                            bias,
                            scores,
                            row_max,
                        );
                    } else {
                        scores_tile::<S, MR>(
                            q_tile.as_ptr(),
                            q_stride,
                            head_dim,
                            keys_t,
                            mask,
                            bias,
                            scores,
                            row_max,
                        );
                    }
                }

                // softmax per row, the weights left in place
                for r in 0..height {
                    let seen = visible(i0 + r).saturating_sub(start).min(chunk_keys);
                    let row = scores.as_mut_ptr().add(r * SCORES_STRIDE);
                    // the rest of the maximum: the causal diagonal, hiding keys beyond `seen`
                    let mut max = row_max[r];
                    for c in shared_tiles * 2..vectors {
                        let p = row.add(c * lanes);
                        let first = c * lanes;
                        let beyond = S::lt(S::splat(seen as f32 - 0.5 - first as f32), indices);
                        let score = S::select(beyond, S::splat(f32::NEG_INFINITY), S::load(p));
                        S::store(p, score);
                        max = S::max(score, max);
                    }
                    let new_max = running_max[r].max(S::max_lane(max));
                    if new_max == f32::NEG_INFINITY {
                        // nothing seen in this chunk: weights 0 (a NaN score still makes the row
                        // NaN if the row sees a key elsewhere, as in the reference)
                        for j in 0..seen {
                            saw_nan[r] |= (*row.add(j)).is_nan();
                        }
                        for c in 0..vectors {
                            S::store(row.add(c * lanes), S::splat(0.0));
                        }
                        continue;
                    }
                    let correction = if running_max[r] == f32::NEG_INFINITY {
                        1.0 // O's row is still 0
                    } else {
                        (running_max[r] - new_max).exp()
                    };
                    running_max[r] = new_max;
                    // P = exp(S − max) and its sum (hidden keys give e^−∞ = 0)
                    let max = S::splat(new_max);
                    let mut sum = S::splat(0.0);
                    for c in 0..vectors {
                        let p = row.add(c * lanes);
                        let e = S::exp_nonpositive(S::sub(S::load(p), max));
                        S::store(p, e);
                        sum = S::add(sum, e);
                    }
                    running_sum[r] = running_sum[r] * correction + S::reduce_add(sum);
                    if correction != 1.0 {
                        let correction = S::splat(correction);
                        let o_row = o_tile.as_mut_ptr().add(r * out_dim);
                        for c in 0..out_dim / lanes {
                            let p = o_row.add(c * lanes);
                            S::store(p, S::mul(S::load(p), correction));
                        }
                    }
                }

                // O += P·V over the keys every row of the tile sees, NR output columns per
                // register tile; then the causal diagonal, each row over the keys it sees
                if shared > 0 {
                    for panel in 0..value_panels {
                        let values = values.as_ptr().add(panel * keys * nr + start * nr);
                        let o = o_tile.as_mut_ptr().add(panel * nr);
                        if height <= MR_SMALL {
                            values_tile::<S, MR_SMALL>(scores.as_ptr(), shared, values, o, out_dim);
                        } else {
                            values_tile::<S, MR>(scores.as_ptr(), shared, values, o, out_dim);
                        }
                    }
                }
                for r in 0..height {
                    let seen = visible(i0 + r).saturating_sub(start).min(chunk_keys);
                    let o_row = o_tile.as_mut_ptr().add(r * out_dim);
                    for j in shared..seen {
                        let weight = scores[r * SCORES_STRIDE + j];
                        if weight == 0.0 {
                            continue;
                        }
                        let weight = S::splat(weight);
                        for c in 0..out_dim / lanes {
                            let (panel, column) = (c * lanes / nr, c * lanes % nr);
                            let value = values
                                .as_ptr()
                                .add(panel * keys * nr + (start + j) * nr + column);
                            let o = o_row.add(c * lanes);
                            S::store(o, S::fma(weight, S::load(value), S::load(o)));
                        }
                    }
                }
            }

            for r in 0..height {
                let fully_masked = running_max[r] == f32::NEG_INFINITY;
                let inverse = S::splat(1.0 / running_sum[r]);
                let o_row = o_tile.as_ptr().add(r * out_dim);
                let out_row = out_base.offset((i0 + r) as isize * job.out_strides[2]);
                for first in (0..head_dim).step_by(lanes) {
                    let value = if fully_masked {
                        S::splat(0.0)
                    } else if saw_nan[r] {
                        S::splat(f32::NAN)
                    } else {
                        S::mul(S::load(o_row.add(first)), inverse)
                    };
                    let width = lanes.min(head_dim - first);
                    if job.out_strides[3] == 1 {
                        S::store_partial(out_row.add(first), width, value);
                    } else {
                        let mut lane_values = [0.0f32; 16];
                        S::store(lane_values.as_mut_ptr(), value);
                        for (l, &x) in lane_values.iter().enumerate().take(width) {
                            *out_row.offset((first + l) as isize * job.out_strides[3]) = x;
                        }
                    }
                }
            }
        }
    }
    SCRATCH.with(|cell| cell.set(scratch));
}

/// V rows are asked for this many rows ahead while V is packed.
const VALUES_AHEAD: usize = 8;

/// Asks for `rows` of a matrix (row stride `row_stride`, `row_len` contiguous floats per row) to
/// be brought into L1.
#[inline(always)]
fn prefetch_rows(
    base: *const f32,
    row_stride: isize,
    rows: std::ops::Range<usize>,
    row_len: usize,
) {
    #[cfg(target_arch = "x86_64")]
    for r in rows {
        let row = base.wrapping_offset(r as isize * row_stride);
        for line in (0..row_len).step_by(16) {
            // SAFETY: a prefetch never faults, whatever the address.
            unsafe {
                use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
                _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(line).cast());
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (base, row_stride, rows, row_len);
}

/// `width` (≤ LANES) elements of a strided row from element `first` on; the other lanes 0.
///
/// # Safety
/// Only on a CPU with `S`'s instruction set (what a [`Token`](crate::isa::Token) for it proves);
/// `width ≤ S::LANES` and the elements `first .. first + width` of the row, element `i` at
/// `row.offset(i · stride)`, valid for reads.
#[inline(always)]
unsafe fn load_row<S: Simd>(row: *const f32, stride: isize, first: usize, width: usize) -> S::V {
    // SAFETY: the caller's contract: the row holds elements first .. first + width.
    unsafe {
        if stride == 1 {
            S::load_partial(row.add(first), width)
        } else {
            let mut lane_values = [0.0f32; 16];
            for (l, value) in lane_values.iter_mut().enumerate().take(width) {
                *value = *row.offset((first + l) as isize * stride);
            }
            S::load(lane_values.as_ptr())
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::*;
    use crate::simd::{Avx2, Avx512};

    /// Each method's `# Safety` is that of the [`AttentionSimd`] method it implements, the
    /// instruction set being AVX-512F.
    impl AttentionSimd for Avx512 {
        /// The 16 × 16 transpose in four rounds of shuffles (pairs of floats, of doubles, then
        /// 128-bit lanes twice).
        #[inline(always)]
        unsafe fn transpose(src: *const f32, src_stride: isize, dst: *mut f32, dst_stride: usize) {
            // SAFETY: the caller's contract: LANES rows of LANES values from `src` (row stride
            // `src_stride`) are readable and LANES rows of LANES values from `dst` writable; the
            // intrinsics need AVX-512F, which the caller's CPU has.
            unsafe {
                let mut rows = [_mm512_setzero_ps(); 16];
                for (r, row) in rows.iter_mut().enumerate() {
                    *row = _mm512_loadu_ps(src.offset(r as isize * src_stride));
                }
                // per 128-bit lane k: t[2i] = a₄ₖ b₄ₖ a₄ₖ₊₁ b₄ₖ₊₁, t[2i+1] = a₄ₖ₊₂ b₄ₖ₊₂ a₄ₖ₊₃ b₄ₖ₊₃
                let mut t = [_mm512_setzero_ps(); 16];
                for i in (0..16).step_by(2) {
                    t[i] = _mm512_unpacklo_ps(rows[i], rows[i + 1]);
                    t[i + 1] = _mm512_unpackhi_ps(rows[i], rows[i + 1]);
                }
                // u[4g + c], lane k: rows 4g .. 4g + 4 of column 4k + c
                let mut u = [_mm512_setzero_ps(); 16];
                for g in 0..4 {
                    let t0 = _mm512_castps_pd(t[4 * g]);
                    let t1 = _mm512_castps_pd(t[4 * g + 1]);
                    let t2 = _mm512_castps_pd(t[4 * g + 2]);
                    let t3 = _mm512_castps_pd(t[4 * g + 3]);
                    u[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
                    u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
                    u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
                    u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
                }
                // gather lane k of u[c], u[4 + c], u[8 + c], u[12 + c]: column 4k + c
                for c in 0..4 {
                    let even_low = _mm512_shuffle_f32x4::<0x88>(u[c], u[4 + c]);
                    let odd_low = _mm512_shuffle_f32x4::<0xdd>(u[c], u[4 + c]);
                    let even_high = _mm512_shuffle_f32x4::<0x88>(u[8 + c], u[12 + c]);
                    let odd_high = _mm512_shuffle_f32x4::<0xdd>(u[8 + c], u[12 + c]);
                    let columns = [
                        (c, _mm512_shuffle_f32x4::<0x88>(even_low, even_high)),
                        (4 + c, _mm512_shuffle_f32x4::<0x88>(odd_low, odd_high)),
                        (8 + c, _mm512_shuffle_f32x4::<0xdd>(even_low, even_high)),
                        (12 + c, _mm512_shuffle_f32x4::<0xdd>(odd_low, odd_high)),
                    ];
                    for (column, value) in columns {
                        _mm512_storeu_ps(dst.add(column * dst_stride), value);
                    }
                }
            }
        }

        #[inline(always)]
        unsafe fn max_lane(x: __m512) -> f32 {
            // SAFETY: a register-only AVX-512F reduction; the caller's CPU has AVX-512F.
            unsafe { _mm512_reduce_max_ps(x) }
        }
    }

    /// Each method's `# Safety` is that of the [`AttentionSimd`] method it implements, the
    /// instruction set being AVX2 + FMA.
    impl AttentionSimd for Avx2 {
        /// The 8 × 8 transpose: pairs of floats, pairs of pairs, then 128-bit halves.
        #[inline(always)]
        unsafe fn transpose(src: *const f32, src_stride: isize, dst: *mut f32, dst_stride: usize) {
            // SAFETY: as for AVX-512, with 8 × 8 values and AVX.
            unsafe {
                let mut rows = [_mm256_setzero_ps(); 8];
                for (r, row) in rows.iter_mut().enumerate() {
                    *row = _mm256_loadu_ps(src.offset(r as isize * src_stride));
                }
                let mut t = [_mm256_setzero_ps(); 8];
                for i in (0..8).step_by(2) {
                    t[i] = _mm256_unpacklo_ps(rows[i], rows[i + 1]);
                    t[i + 1] = _mm256_unpackhi_ps(rows[i], rows[i + 1]);
                }
                // u[4g + c], half k: rows 4g .. 4g + 4 of column 4k + c
                let mut u = [_mm256_setzero_ps(); 8];
                for g in 0..2 {
                    let (t0, t1, t2, t3) = (t[4 * g], t[4 * g + 1], t[4 * g + 2], t[4 * g + 3]);
                    u[4 * g] = _mm256_shuffle_ps::<0x44>(t0, t2);
                    u[4 * g + 1] = _mm256_shuffle_ps::<0xee>(t0, t2);
                    u[4 * g + 2] = _mm256_shuffle_ps::<0x44>(t1, t3);
                    u[4 * g + 3] = _mm256_shuffle_ps::<0xee>(t1, t3);
                }
                for c in 0..4 {
                    let low = _mm256_permute2f128_ps::<0x20>(u[c], u[4 + c]);
                    let high = _mm256_permute2f128_ps::<0x31>(u[c], u[4 + c]);
                    _mm256_storeu_ps(dst.add(c * dst_stride), low);
                    _mm256_storeu_ps(dst.add((4 + c) * dst_stride), high);
                }
            }
        }

        #[inline(always)]
        unsafe fn max_lane(x: __m256) -> f32 {
            // SAFETY: the caller's CPU has AVX2.
            unsafe { <Avx2 as Simd>::reduce_max(x) }
        }
    }

    // The row stride of the Q tile is a constant for the usual head sizes, so that the scores'
    // register tile addresses Q with fixed offsets.

    /// # Safety
    /// Only on a CPU with AVX-512F, AVX2 and FMA; `job`, `b`, `h` as [`head_gemm_body`] requires
    /// (with `q_stride` chosen here ≥ `head_dim`).
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(crate) unsafe fn head_avx512(job: &Job<'_>, b: usize, h: usize) {
        // SAFETY: the target features are enabled; the caller's contract covers the job.
        unsafe {
            match job.head_dim {
                0..=64 => head_gemm_body::<Avx512, AVX512_MR, 8>(job, b, h, 64),
                65..=128 => head_gemm_body::<Avx512, AVX512_MR, 8>(job, b, h, 128),
                head_dim => head_gemm_body::<Avx512, AVX512_MR, 8>(job, b, h, head_dim),
            }
        }
    }

    /// # Safety
    /// Only on a CPU with AVX2 and FMA; `job`, `b`, `h` as [`head_gemm_body`] requires (with
    /// `q_stride` chosen here ≥ `head_dim`).
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn head_avx2(job: &Job<'_>, b: usize, h: usize) {
        // SAFETY: as above.
        unsafe {
            match job.head_dim {
                0..=64 => head_gemm_body::<Avx2, AVX2_MR, 4>(job, b, h, 64),
                65..=128 => head_gemm_body::<Avx2, AVX2_MR, 4>(job, b, h, 128),
                head_dim => head_gemm_body::<Avx2, AVX2_MR, 4>(job, b, h, head_dim),
            }
        }
    }
}
