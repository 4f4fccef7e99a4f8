//! Scaled-dot-product attention.

use ndarray::{Array4, ArrayView2, ArrayView4, ArrayViewMut4};

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
pub fn attention_into(
    q: ArrayView4<'_, f32>,
    k: ArrayView4<'_, f32>,
    v: ArrayView4<'_, f32>,
    mask: &AttentionMask<'_>,
    scale: f32,
    out: ArrayViewMut4<'_, f32>,
) {
    attention_reference_into(q, k, v, mask, scale, out);
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
