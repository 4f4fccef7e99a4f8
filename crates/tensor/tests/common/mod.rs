//! Helpers shared by the kernel tests: deterministic inputs, paths, comparisons.

#![allow(dead_code)]

use oxformer_tensor::ndarray::{Array, Dimension, IntoDimension};
use oxformer_tensor::{GemmPath, Isa, ThreadPool, cpu_isas, cpu_paths};

/// Values in [-1, 1) from a fixed xorshift sequence: the same array on every run.
pub fn random<D: IntoDimension>(shape: D, seed: u64) -> Array<f32, D::Dim> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    Array::from_shape_simple_fn(shape, || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    })
}

/// The SIMD/portable/reference paths this CPU runs; prints the ones it skips.
pub fn available_paths(test: &str) -> Vec<GemmPath> {
    let mut paths = Vec::new();
    for (path, available) in cpu_paths() {
        if available {
            paths.push(path);
        } else {
            println!("{test}: skipped {path:?} (not supported by this CPU)");
        }
    }
    paths
}

/// The instruction sets this CPU runs (scalar included), most capable first; prints the ones it
/// skips. `OXFORMER_ISA` does not narrow this: tests run every set the CPU has.
pub fn available_isas(test: &str) -> Vec<Isa> {
    let mut isas = Vec::new();
    for (isa, available) in cpu_isas() {
        if available {
            isas.push(isa);
        } else {
            println!("{test}: skipped {isa} (not supported by this CPU)");
        }
    }
    isas
}

/// Runs `work` on a pool of `threads` threads.
pub fn on_threads<R: Send>(threads: usize, work: impl FnOnce() -> R + Send) -> R {
    ThreadPool::new(threads).expect("thread pool").install(work)
}

/// Whether `actual` matches `expected` within `tolerance · (1 + |expected|)`, NaN matching NaN
/// and infinities matching exactly.
pub fn close(actual: f32, expected: f32, tolerance: f32) -> bool {
    if expected.is_nan() || actual.is_nan() {
        return expected.is_nan() && actual.is_nan();
    }
    if expected.is_infinite() || actual.is_infinite() {
        return expected == actual;
    }
    (actual - expected).abs() <= tolerance * (1.0 + expected.abs())
}

/// Asserts every element is [`close`]; on failure names the first differing index and the
/// largest difference.
pub fn assert_close<D: Dimension>(
    actual: &Array<f32, D>,
    expected: &Array<f32, D>,
    tolerance: f32,
    what: &str,
) {
    assert_eq!(actual.shape(), expected.shape(), "{what}: shape");
    let mut first = None;
    let mut max_difference = 0.0f32;
    for ((index, &a), &e) in actual.indexed_iter().zip(expected.iter()) {
        if !close(a, e, tolerance) {
            first.get_or_insert((index, a, e));
        }
        if a.is_finite() && e.is_finite() {
            max_difference = max_difference.max((a - e).abs());
        }
    }
    if let Some((index, a, e)) = first {
        panic!(
            "{what}: first difference at {index:?}: {a} vs reference {e}; max difference {max_difference}"
        );
    }
}

/// Asserts bit-identical arrays (NaN payloads included).
pub fn assert_bit_identical<D: Dimension>(a: &Array<f32, D>, b: &Array<f32, D>, what: &str) {
    assert_eq!(a.shape(), b.shape(), "{what}: shape");
    for ((index, x), y) in a.indexed_iter().zip(b.iter()) {
        assert_eq!(
            x.to_bits(),
            y.to_bits(),
            "{what}: differs at {:?}: {x} vs {y}",
            index
        );
    }
}
