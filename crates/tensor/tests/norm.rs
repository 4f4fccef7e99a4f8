//! Layer normalisation (with and without the fused residual) and row softmax on every path this
//! CPU has, against their references.

mod common;

use common::{assert_bit_identical, assert_close, available_isas, on_threads, random};
use oxformer_tensor::ndarray::{Array2, s};
use oxformer_tensor::{
    layer_norm_in_place_on, layer_norm_reference, softmax_reference, softmax_rows_on,
};

const SHAPES: &[(usize, usize)] = &[
    (0, 5),
    (5, 0),
    (1, 1),
    (7, 7),
    (63, 63),
    (65, 65),
    (3, 768),
    (4096, 4),
    (4, 4096),
];

#[test]
fn layer_norm_matches_the_reference() {
    for path in available_isas("layer_norm") {
        for (index, &(rows, dim)) in SHAPES.iter().enumerate() {
            let seed = 10 * index as u64;
            let x = random((rows, dim), seed) * 3.0 + 0.5;
            let residual = random((rows, dim), seed + 1);
            let weight = (random(dim, seed + 2) + 1.0).to_vec();
            let bias = random(dim, seed + 3).to_vec();
            for with_residual in [false, true] {
                let residual = with_residual.then(|| residual.view());
                let expected = layer_norm_reference(x.view(), residual, &weight, &bias, 1e-12);
                let mut actual = x.clone();
                layer_norm_in_place_on(path, actual.view_mut(), residual, &weight, &bias, 1e-12);
                assert_close(
                    &actual,
                    &expected,
                    1e-5,
                    &format!("{path:?} {rows}×{dim} residual {with_residual}"),
                );
            }
        }
    }
}

#[test]
fn layer_norm_on_strided_rows_and_special_values() {
    let storage = random((9, 80), 4) * 2.0;
    let residual_storage = random((80, 9), 5);
    let weight = random(40, 6).to_vec();
    let bias = random(40, 7).to_vec();
    let residual = residual_storage.t();
    let residual = residual.slice(s![.., ..;2]);
    let mut special = storage.clone();
    special[[2, 4]] = f32::NAN;
    special[[5, 10]] = f32::INFINITY;
    for path in available_isas("layer_norm strided") {
        for input in [&storage, &special] {
            let x = input.slice(s![.., ..;2]);
            let expected = layer_norm_reference(x, Some(residual), &weight, &bias, 1e-5);
            let mut actual = input.clone();
            layer_norm_in_place_on(
                path,
                actual.slice_mut(s![.., ..;2]),
                Some(residual),
                &weight,
                &bias,
                1e-5,
            );
            assert_close(
                &actual.slice(s![.., ..;2]).to_owned(),
                &expected,
                1e-5,
                &format!("{path:?}"),
            );
            // the columns in between are untouched
            assert_eq!(actual.slice(s![.., 1..;2]), input.slice(s![.., 1..;2]));
        }
    }
}

#[test]
fn layer_norm_bit_identical_for_any_thread_count() {
    let x = random((300, 768), 8);
    let residual = random((300, 768), 9);
    let weight = random(768, 10).to_vec();
    let bias = random(768, 11).to_vec();
    for path in available_isas("layer_norm threads") {
        let run = || {
            let mut out = x.clone();
            layer_norm_in_place_on(
                path,
                out.view_mut(),
                Some(residual.view()),
                &weight,
                &bias,
                1e-12,
            );
            out
        };
        let one = on_threads(1, run);
        for threads in [2, 3] {
            assert_bit_identical(
                &on_threads(threads, run),
                &one,
                &format!("{path:?} {threads}"),
            );
        }
    }
}

#[test]
fn softmax_matches_the_reference() {
    for path in available_isas("softmax") {
        for (index, &(rows, columns)) in SHAPES.iter().enumerate() {
            let x = random((rows, columns), 20 + index as u64) * 10.0;
            let mask: Vec<f32> = (0..columns)
                .map(|j| match j % 5 {
                    0 => f32::NEG_INFINITY,
                    1 => -10_000.0,
                    _ => 0.0,
                })
                .collect();
            for mask in [None, Some(mask.as_slice())] {
                let expected = softmax_reference(x.view(), mask);
                let mut actual = x.clone();
                softmax_rows_on(path, actual.view_mut(), mask);
                assert_close(
                    &actual,
                    &expected,
                    1e-6,
                    &format!("{path:?} {rows}×{columns} mask {}", mask.is_some()),
                );
            }
        }
    }
}

#[test]
fn softmax_special_values_as_in_the_reference() {
    let mut x = random((6, 21), 30);
    x.row_mut(0).fill(f32::NEG_INFINITY); // fully masked: zeros
    x[[1, 3]] = f32::NAN; // NaN row
    x[[2, 20]] = f32::INFINITY; // inf − inf: NaN row
    x[[3, 0]] = f32::NEG_INFINITY; // one dropped column
    x.row_mut(4).fill(f32::NAN);
    let expected = softmax_reference(x.view(), None);
    assert!(expected.row(0).iter().all(|&v| v == 0.0));
    for path in available_isas("softmax special") {
        let mut actual: Array2<f32> = x.clone();
        softmax_rows_on(path, actual.view_mut(), None);
        assert_close(&actual, &expected, 1e-6, &format!("{path:?}"));
        let mut strided = Array2::<f32>::zeros((21, 6));
        strided.assign(&x.t());
        softmax_rows_on(path, strided.view_mut().reversed_axes(), None);
        assert_close(
            &strided.t().to_owned(),
            &expected,
            1e-6,
            &format!("{path:?} strided"),
        );
    }
}
