//! The decoding path: for a few queries (decoding with a KV cache), the online softmax over
//! blocks of keys with K and V rows read where they are, no copies.

use super::Job;
use crate::simd::Simd;

#[cfg(target_arch = "x86_64")]
pub(super) use x86::{head_direct_avx2, head_direct_avx512};

/// Up to this many queries, K and V are read in place rather than copied into blocks.
pub(super) const DIRECT_QUERIES: usize = 4;

/// Keys per block of the decoding path: a query's scores against one block are computed,
/// softmaxed and applied before the next.
const KEY_BLOCK: usize = 64;

/// Copies `dst.len()` elements of a strided row into `dst`.
///
/// # Safety
/// `src` valid for reads of `dst.len()` floats `stride` apart (element `i` at `src.offset(i ·
/// stride)`).
#[inline(always)]
unsafe fn copy_row(src: *const f32, stride: isize, dst: &mut [f32]) {
    if stride == 1 {
        // SAFETY: the caller's contract: `src` holds `dst.len()` contiguous elements.
        dst.copy_from_slice(unsafe { std::slice::from_raw_parts(src, dst.len()) });
    } else {
        for (d, value) in dst.iter_mut().enumerate() {
            // SAFETY: the caller's contract: `src` holds `dst.len()` elements `stride` apart.
            *value = unsafe { *src.offset(d as isize * stride) };
        }
    }
}

/// For a few queries (decoding): the same online softmax over blocks of keys, with K and V rows
/// read in place (unit stride along head_dim): scores by dot products, values skipped where the
/// weight is 0, as in the reference.
///
/// # Safety
/// Only on a CPU with `S`'s instruction set (what a [`Token`](crate::isa::Token) for it proves);
/// `job` describes live views of the shapes [`check_shapes`](super::check_shapes) accepts (its
/// pointers and strides address every element of them), with `head_dim ≤ 1024` and K and V
/// contiguous along head_dim (unit stride); `b` and `h` are a batch entry and a head of them, and
/// no other thread accesses the output rows of (`b`, `h`) while it runs.
#[inline(always)]
unsafe fn head_direct_body<S: Simd>(job: &Job<'_>, b: usize, h: usize) {
    let lanes = S::LANES;
    let head_dim = job.head_dim;
    let vectors = head_dim.div_ceil(lanes);
    let offset = job.keys as isize - job.queries as isize;
    // SAFETY: (entry b, head h) is inside the checked key view the job describes.
    let k_base = unsafe {
        job.k
            .ptr
            .offset(b as isize * job.k.strides[0] + h as isize * job.k.strides[1])
    };
    // SAFETY: as for K, inside the checked value view.
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
        // SAFETY: query i of (b, h) is inside the checked query view; `query` holds head_dim.
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
                // SAFETY: (b, key) is inside the checked (batch, keys) padding view.
                let open = job.padding.is_none_or(|(ptr, strides)| unsafe {
                    *ptr.offset(b as isize * strides[0] + key as isize * strides[1]) != 0.0
                });
                *score = if open {
                    // SAFETY: `key` < keys, so its row is inside the key view; each vector reads up to
                    // `width(v)` values of head_dim; the bias index (h, i, key) is inside its checked view.
                    unsafe {
                        let k_row = k_base.offset(key as isize * k_stride);
                        let mut acc = S::splat(0.0);
                        for v in 0..vectors {
                            let q = S::load_partial(query.as_ptr().add(v * lanes), width(v));
                            let k = S::load_partial(k_row.add(v * lanes), width(v));
                            acc = S::fma(q, k, acc);
                        }
                        let bias = job.bias.map_or(0.0, |(ptr, [head_stride, query_stride])| {
                            *ptr.offset(
                                h as isize * head_stride + i as isize * query_stride + key as isize,
                            )
                        });
                        S::reduce_add(acc) * job.scale + bias
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
            // SAFETY: `output` holds `vectors` vectors; the value rows read are keys start..start +
            // seen of (b, h), inside the checked value view.
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
            // SAFETY: (b, h, i, d) is inside the checked output view, which this task alone writes.
            unsafe { *job.out.offset(at) = value };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use crate::simd::{Avx2, Avx512};

    /// # Safety
    /// Only on a CPU with AVX-512F, AVX2 and FMA; `job`, `b`, `h` as [`head_direct_body`] requires.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(crate) unsafe fn head_direct_avx512(job: &Job<'_>, b: usize, h: usize) {
        // SAFETY: the target features are enabled; the caller's contract covers the job.
        unsafe { head_direct_body::<Avx512>(job, b, h) }
    }

    /// # Safety
    /// Only on a CPU with AVX2 and FMA; `job`, `b`, `h` as [`head_direct_body`] requires.
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn head_direct_avx2(job: &Job<'_>, b: usize, h: usize) {
        // SAFETY: as above.
        unsafe { head_direct_body::<Avx2>(job, b, h) }
    }
}
