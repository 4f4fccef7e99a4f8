//! The vectorised activations against `Activation::apply` (the scalar definition; GELU through
//! fdlibm's erf in f64), on every path this CPU has.

mod common;

use common::{assert_close, available_isas, random};
use oxformer_tensor::ndarray::{Array2, s};
use oxformer_tensor::{Activation, apply_activation_on};

const ACTIVATIONS: [Activation; 6] = [
    Activation::Identity,
    Activation::Gelu,
    Activation::GeluTanh,
    Activation::Relu,
    Activation::Silu,
    Activation::Tanh,
];

/// A grid over [-12, 12] covering every interval of erf, the tails of tanh and exp, tiny values,
/// and the special values.
fn inputs() -> Array2<f32> {
    let mut values: Vec<f32> = (-24_000..=24_000).map(|i| i as f32 * 5e-4).collect();
    values.extend([
        0.0,
        -0.0,
        1e-30,
        -1e-30,
        1e-6,
        -3e-5,
        40.0,
        -40.0,
        100.0,
        -100.0,
        1e30,
        -1e30,
        f32::MAX,
        f32::MIN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
    ]);
    let columns = 37; // odd, so every row ends in a partial vector
    values.resize(values.len().div_ceil(columns) * columns, 0.5);
    Array2::from_shape_vec((values.len() / columns, columns), values).expect("shape")
}

#[test]
fn every_path_matches_the_scalar_definition() {
    let x = inputs();
    for path in available_isas("activation") {
        for activation in ACTIVATIONS {
            let expected = x.mapv(|value| activation.apply(value));
            let mut actual = x.clone();
            apply_activation_on(path, actual.view_mut(), activation);
            assert_close(
                &actual,
                &expected,
                1e-6,
                &format!("{path:?} {activation:?}"),
            );
        }
    }
}

#[test]
fn strided_views_and_awkward_shapes() {
    for path in available_isas("activation strided") {
        for (rows, columns) in [(0, 5), (1, 1), (7, 7), (63, 65), (65, 63)] {
            let storage = random((rows, columns * 2), 3) * 6.0;
            for activation in ACTIVATIONS {
                let mut actual = storage.clone();
                apply_activation_on(path, actual.slice_mut(s![.., ..;2]), activation);
                let mut expected = storage.clone();
                expected
                    .slice_mut(s![.., ..;2])
                    .mapv_inplace(|value| activation.apply(value));
                assert_close(
                    &actual,
                    &expected,
                    1e-6,
                    &format!("{path:?} {activation:?} {rows}×{columns}"),
                );
            }
        }
    }
}

#[test]
fn large_arrays_on_any_thread_count() {
    let x = random((300, 1000), 4) * 8.0; // above the size that goes over the thread pool
    for path in available_isas("activation threads") {
        for activation in [Activation::Gelu, Activation::Silu] {
            let run = || {
                let mut out = x.clone();
                apply_activation_on(path, out.view_mut(), activation);
                out
            };
            let one = common::on_threads(1, run);
            assert_close(
                &one,
                &x.mapv(|value| activation.apply(value)),
                1e-6,
                &format!("{path:?} {activation:?}"),
            );
            for threads in [2, 3] {
                common::assert_bit_identical(
                    &common::on_threads(threads, run),
                    &one,
                    &format!("{path:?} {activation:?} {threads} threads"),
                );
            }
        }
    }
}

/// erf skips its tail intervals when every lane of a vector is below 1.25: the values it gives
/// there must be the ones the full blend gives, bit for bit, so a result does not depend on its
/// neighbours.
#[test]
fn gelu_is_the_same_with_or_without_a_large_neighbour() {
    let small: Vec<f32> = (0..16).map(|i| (i as f32 - 7.5) * 0.2).collect();
    let mut mixed = small.clone();
    // one large lane in every vector of 8 and of 16
    mixed[7] = 3.0;
    mixed[15] = -5.0;
    for path in available_isas("activation") {
        let mut x = Array2::from_shape_vec((2, 16), [small.clone(), mixed.clone()].concat())
            .expect("shape");
        apply_activation_on(path, x.view_mut(), Activation::Gelu);
        for column in (0..16).filter(|&column| column != 7 && column != 15) {
            assert_eq!(
                x[[0, column]].to_bits(),
                x[[1, column]].to_bits(),
                "{path:?}: GELU({}) depends on its neighbours",
                small[column]
            );
        }
    }
}
