//! The definition of attention in plain loops: what the tests compare against, and the
//! [`Isa::Scalar`](crate::Isa::Scalar) path.

use ndarray::{Array4, ArrayView4, ArrayViewMut4};

use super::{AttentionMask, check_shapes};

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

/// [`attention_reference`] writing into `out`.
pub(super) fn attention_reference_into(
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
                        dot * scale + mask.bias.as_ref().map_or(0.0, |bias| bias[[h, i, j]])
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
