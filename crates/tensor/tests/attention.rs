//! Tiled attention on every path this CPU has, against `attention_reference`.

mod common;

use common::{assert_bit_identical, assert_close, available_isas, on_threads, random};
use oxformer_tensor::ndarray::{Array2, Array4, ArrayView2, ArrayView3, ArrayView4, s};
use oxformer_tensor::{
    AttentionMask, Isa, KeyPadding, attention_into_on, attention_reference, team,
};

fn run(
    path: Isa,
    q: ArrayView4<'_, f32>,
    k: ArrayView4<'_, f32>,
    v: ArrayView4<'_, f32>,
    mask: &AttentionMask<'_>,
    scale: f32,
) -> Array4<f32> {
    let mut out = Array4::<f32>::from_elem(q.dim(), f32::NAN);
    attention_into_on(path, q, k, v, mask, scale, out.view_mut());
    out
}

/// (batch, heads, queries, keys, head_dim)
const SHAPES: &[(usize, usize, usize, usize, usize)] = &[
    (0, 2, 3, 3, 4),
    (1, 1, 0, 5, 4),
    (1, 1, 3, 0, 4),
    (1, 1, 1, 1, 1),
    (1, 2, 7, 7, 7),
    (2, 3, 63, 63, 8),
    (2, 2, 65, 65, 64),
    (1, 2, 1, 65, 64),
    (1, 1, 7, 130, 65),
    (1, 1, 4096, 4, 4),
    (1, 12, 128, 128, 64),
    (1, 1, 20, 40, 130),
    // more keys than one chunk of the tiled path: the softmax is online between chunks
    (2, 2, 30, 1100, 64),
    (1, 1, 600, 600, 16),
];

#[test]
fn every_path_matches_the_reference() {
    for path in available_isas("attention") {
        for (index, &(batch, heads, queries, keys, head_dim)) in SHAPES.iter().enumerate() {
            let seed = 10 * index as u64;
            let q = random((batch, heads, queries, head_dim), seed) * 2.0;
            let k = random((batch, heads, keys, head_dim), seed + 1) * 2.0;
            let v = random((batch, heads, keys, head_dim), seed + 2);
            // padding: the last keys of entry 1 (and every key of entry 2, if any) are padding
            let padding = Array2::from_shape_fn((batch, keys), |(b, j)| {
                let real = match b {
                    0 => keys,
                    1 => keys - keys / 3,
                    _ => 0,
                };
                if j < real { 1.0 } else { 0.0 }
            });
            let scale = 1.0 / (head_dim.max(1) as f32).sqrt();
            for causal in [false, true] {
                for key_padding in [None, Some(padding.view())] {
                    let mask = AttentionMask {
                        key_padding,
                        causal,
                        bias: None,
                    };
                    let expected = attention_reference(q.view(), k.view(), v.view(), &mask, scale);
                    let actual = run(path, q.view(), k.view(), v.view(), &mask, scale);
                    assert_close(
                        &actual,
                        &expected,
                        2e-6,
                        &format!(
                            "{path:?} {batch}×{heads}×{queries}×{keys}×{head_dim} causal {causal} padding {}",
                            mask.key_padding.is_some()
                        ),
                    );
                }
            }
        }
    }
}

#[test]
fn strided_views_of_a_sequence_major_buffer() {
    for queries in [5, 1] {
        strided_case(queries);
    }
}

fn strided_case(queries: usize) {
    // (batch, seq, heads, head_dim) buffers seen as (batch, heads, seq, head_dim), as a model
    // splits its fused QKV projection, and queries shorter than keys (a KV cache)
    let (batch, heads, keys, head_dim) = (2, 4, 70, 16);
    let q_storage = random((batch, queries, heads, head_dim), 1);
    let kv_storage = random((batch, keys, 2, heads, head_dim), 2);
    let q = q_storage.view().permuted_axes([0, 2, 1, 3]);
    let k = kv_storage
        .index_axis(oxformer_tensor::ndarray::Axis(2), 0)
        .permuted_axes([0, 2, 1, 3]);
    let v = kv_storage
        .index_axis(oxformer_tensor::ndarray::Axis(2), 1)
        .permuted_axes([0, 2, 1, 3]);
    let mask = AttentionMask {
        key_padding: None,
        causal: true,
        bias: None,
    };
    let expected = attention_reference(q, k, v, &mask, 0.25);
    for path in available_isas("attention strided") {
        let mut storage = Array4::<f32>::zeros((batch, queries, heads, head_dim));
        attention_into_on(
            path,
            q,
            k,
            v,
            &mask,
            0.25,
            storage.view_mut().permuted_axes([0, 2, 1, 3]),
        );
        let actual = storage.permuted_axes([0, 2, 1, 3]).to_owned();
        assert_close(
            &actual,
            &expected,
            2e-6,
            &format!("{path:?} {queries} queries"),
        );
    }
}

#[test]
fn nan_and_infinity_propagate_as_in_the_reference() {
    // 6 queries take the tiled path, 2 (decoding) the one reading K and V in place; 700 keys
    // are two chunks of the tiled path
    for (queries, keys) in [(6, 150), (2, 150), (6, 700)] {
        nan_and_infinity_case(queries, keys);
    }
}

fn nan_and_infinity_case(queries: usize, keys: usize) {
    let (batch, heads, head_dim) = (1, 4, 8);
    let real = keys * 4 / 5;
    let q = random((batch, heads, queries, head_dim), 3);
    let mut k = random((batch, heads, keys, head_dim), 4);
    let mut v = random((batch, heads, keys, head_dim), 5);
    k[[0, 0, 100, 2]] = f32::NAN; // one NaN score per query of head 0
    k[[0, 1, 3, 0]] = f32::INFINITY; // ±inf scores in head 1
    v[[0, 2, 7, 5]] = f32::NAN; // NaN in one value column of head 2
    v[[0, 3, real + 20, 1]] = f32::NAN; // NaN value behind padding in head 3: never read
    k[[0, 3, real + 10, 0]] = f32::INFINITY; // and an infinite key behind padding: never scored
    let padding = Array2::from_shape_fn((batch, keys), |(_, j)| if j < real { 1.0 } else { 0.0 });
    let mask = AttentionMask {
        key_padding: Some(padding.view()),
        causal: false,
        bias: None,
    };
    let expected = attention_reference(q.view(), k.view(), v.view(), &mask, 0.3);
    assert!(expected.iter().any(|x| x.is_nan()));
    assert!(expected.iter().any(|x| x.is_finite()));
    for path in available_isas("attention nan") {
        let actual = run(path, q.view(), k.view(), v.view(), &mask, 0.3);
        assert_close(
            &actual,
            &expected,
            2e-6,
            &format!("{path:?} {queries} queries, {keys} keys"),
        );
    }
}

#[test]
fn padding_before_the_keys_longer_than_a_chunk() {
    // entry 0 sees only its last 300 of 1100 keys, entry 1 none at all: a row sees nothing in
    // the first chunks of the tiled path, then keys in the last one
    let (batch, heads, queries, keys, head_dim) = (2, 3, 40, 1100, 64);
    let q = random((batch, heads, queries, head_dim), 11) * 2.0;
    let k = random((batch, heads, keys, head_dim), 12) * 2.0;
    let v = random((batch, heads, keys, head_dim), 13);
    let padding = Array2::from_shape_fn((batch, keys), |(b, j)| {
        if b == 0 && j >= keys - 300 { 1.0 } else { 0.0 }
    });
    let mask = AttentionMask {
        key_padding: Some(padding.view()),
        causal: false,
        bias: None,
    };
    let expected = attention_reference(q.view(), k.view(), v.view(), &mask, 0.125);
    for path in available_isas("attention left padding") {
        let actual = run(path, q.view(), k.view(), v.view(), &mask, 0.125);
        assert_close(&actual, &expected, 2e-6, &format!("{path:?}"));
    }
}

#[test]
fn bit_identical_for_any_thread_count() {
    let q = random((2, 3, 100, 32), 6);
    let k = random((2, 3, 100, 32), 7);
    let v = random((2, 3, 100, 32), 8);
    let mask = AttentionMask {
        key_padding: None,
        causal: true,
        bias: None,
    };
    for path in available_isas("attention threads") {
        let one = on_threads(1, || run(path, q.view(), k.view(), v.view(), &mask, 0.2));
        for threads in [2, 3] {
            let many = on_threads(threads, || {
                run(path, q.view(), k.view(), v.view(), &mask, 0.2)
            });
            assert_bit_identical(&many, &one, &format!("{path:?} {threads} threads"));
            let teamed = on_threads(threads, || {
                team(|| run(path, q.view(), k.view(), v.view(), &mask, 0.2))
            });
            assert_bit_identical(&teamed, &one, &format!("{path:?} a team of {threads}"));
        }
    }
}

/// `softmax(scale · q·kᵀ + bias[h] + padding)·v` spelled out in plain loops, independently of
/// `attention_reference`: the definition the additive bias is checked against.
fn biased_by_hand(
    q: ArrayView4<'_, f32>,
    k: ArrayView4<'_, f32>,
    v: ArrayView4<'_, f32>,
    bias: ArrayView3<'_, f32>,
    padding: Option<ArrayView2<'_, f32>>,
    scale: f32,
) -> Array4<f32> {
    let (batch, heads, queries, head_dim) = q.dim();
    let keys = k.dim().2;
    let mut out = Array4::<f32>::zeros(q.dim());
    for b in 0..batch {
        for h in 0..heads {
            for i in 0..queries {
                let scores: Vec<f32> = (0..keys)
                    .map(|j| {
                        if padding.is_some_and(|p| p[[b, j]] == 0.0) {
                            return f32::NEG_INFINITY;
                        }
                        let dot: f32 = (0..head_dim)
                            .map(|d| q[[b, h, i, d]] * k[[b, h, j, d]])
                            .sum();
                        dot * scale + bias[[h, i, j]]
                    })
                    .collect();
                let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                if max == f32::NEG_INFINITY {
                    continue;
                }
                let weights: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
                let sum: f32 = weights.iter().sum();
                for (j, weight) in weights.iter().enumerate() {
                    for d in 0..head_dim {
                        out[[b, h, i, d]] += weight / sum * v[[b, h, j, d]];
                    }
                }
            }
        }
    }
    out
}

/// The additive bias (T5's position bias): per head, (queries, keys), the same for every batch
/// entry, with −∞ entries (a causal pattern, and one query that sees nothing); on the decoding
/// path (≤ 4 queries), the tiled path (one and several chunks of keys), with and without key
/// padding and the causal flag, and given as a strided view (copied) or a permuted one.
#[test]
fn additive_bias_matches_a_plain_reference() {
    // (batch, heads, queries, keys, head_dim)
    let shapes = [
        (2, 3, 1, 9, 8),
        (2, 2, 4, 37, 64),
        (2, 3, 7, 7, 8),
        (2, 2, 65, 65, 64),
        (1, 2, 30, 700, 16),
    ];
    for (index, &(batch, heads, queries, keys, head_dim)) in shapes.iter().enumerate() {
        let seed = 500 + 10 * index as u64;
        let q = random((batch, heads, queries, head_dim), seed);
        let k = random((batch, heads, keys, head_dim), seed + 1);
        let v = random((batch, heads, keys, head_dim), seed + 2);
        let padding = Array2::from_shape_fn((batch, keys), |(b, j)| {
            if b == 1 && j >= keys - keys / 3 {
                0.0
            } else {
                1.0
            }
        });
        // stored (queries, keys, heads): the (heads, queries, keys) view has key stride `heads`
        let mut storage = random((queries, keys, heads), seed + 3) * 3.0;
        let offset = keys - queries;
        for ((i, j, _), value) in storage.indexed_iter_mut() {
            if j > i + offset {
                *value = f32::NEG_INFINITY; // the causal pattern, in the bias
            }
        }
        if queries > 2 {
            storage.slice_mut(s![1, .., ..]).fill(f32::NEG_INFINITY); // query 1 sees nothing
        }
        let strided = storage.view().permuted_axes([2, 0, 1]);
        let contiguous = strided.as_standard_layout().into_owned();
        for bias in [strided, contiguous.view()] {
            for key_padding in [None, Some(padding.view())] {
                for causal in [false, true] {
                    let mask = AttentionMask {
                        key_padding,
                        causal,
                        bias: Some(bias),
                    };
                    let expected =
                        biased_by_hand(q.view(), k.view(), v.view(), bias, key_padding, 0.5);
                    let what = format!(
                        "{batch}×{heads}×{queries}×{keys}×{head_dim} padding {} causal {causal} \
                         bias strides {:?}",
                        key_padding.is_some(),
                        bias.strides()
                    );
                    let reference = attention_reference(q.view(), k.view(), v.view(), &mask, 0.5);
                    assert_close(&reference, &expected, 2e-6, &format!("reference {what}"));
                    for path in available_isas("attention bias") {
                        let actual = run(path, q.view(), k.view(), v.view(), &mask, 0.5);
                        assert_close(&actual, &expected, 2e-6, &format!("{path:?} {what}"));
                    }
                }
            }
        }
    }
}

/// Attention over a padded batch through [`KeyPadding`]'s masks equals attention over each input
/// alone, cut to its own tokens (the queries of real tokens; padded ones are not compared).
#[test]
fn key_padding_masks_equal_each_input_alone() {
    let (heads, keys, head_dim) = (3, 7, 8);
    let lengths = [7, 4, 1];
    let attention_mask = Array2::from_shape_fn((lengths.len(), keys), |(row, key)| {
        u32::from(key < lengths[row])
    });
    let padding = KeyPadding::from_attention_mask(attention_mask.view()).unwrap();
    assert_eq!(padding, KeyPadding::from_lengths(&lengths, keys).unwrap());
    let q = random((lengths.len(), heads, keys, head_dim), 31);
    let k = random((lengths.len(), heads, keys, head_dim), 32);
    let v = random((lengths.len(), heads, keys, head_dim), 33);
    for (mask, causal) in [(padding.mask(), false), (padding.causal_mask(), true)] {
        let batched = attention_reference(q.view(), k.view(), v.view(), &mask, 0.3);
        for (row, &length) in lengths.iter().enumerate() {
            let alone = |x: &Array4<f32>| x.slice(s![row..=row, .., ..length, ..]).to_owned();
            let expected = attention_reference(
                alone(&q).view(),
                alone(&k).view(),
                alone(&v).view(),
                &AttentionMask {
                    causal,
                    ..AttentionMask::default()
                },
                0.3,
            );
            let what = format!("row {row} of {length} tokens, causal {causal}");
            assert_close(&alone(&batched), &expected, 1e-6, &what);
        }
    }
}

/// Left padding from an `attention_mask` hides the leading keys.
#[test]
fn key_padding_from_a_left_padded_attention_mask() {
    let padding = KeyPadding::from_attention_mask(
        Array2::from_shape_vec((2, 3), vec![0, 1, 1, 1, 1, 1])
            .unwrap()
            .view(),
    )
    .unwrap();
    assert_eq!(
        padding.view(),
        Array2::from_shape_vec((2, 3), vec![0.0, 1.0, 1.0, 1.0, 1.0, 1.0]).unwrap()
    );
    assert_eq!(padding.mask().key_padding, Some(padding.view()));
    assert!(!padding.mask().causal && padding.causal_mask().causal);
}

#[test]
fn key_padding_rejects_what_is_not_a_padding() {
    let error = KeyPadding::from_attention_mask(
        Array2::from_shape_vec((2, 2), vec![1, 1, 1, 2])
            .unwrap()
            .view(),
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("attention_mask[1][1] is 2"), "{error}");
    let error = KeyPadding::from_lengths(&[3, 5], 4)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("row 1 has 5 tokens, more than the 4 keys"),
        "{error}"
    );
    let empty = KeyPadding::from_lengths(&[], 4).unwrap();
    assert_eq!(empty.view().dim(), (0, 4));
}
