//! Shared helpers for the criterion benchmarks in `benches/benches/`.

use ndarray::{Array, Dimension, IntoDimension};
use oxformer_tensor::ThreadPool;

/// Threads every benchmark runs on (the machine the bar is set on has two cores).
pub const THREADS: usize = 2;

/// A pool of [`THREADS`] threads for our kernels; also tells matrixmultiply to use as many.
///
/// Call before anything else runs matrixmultiply (it reads `MATMUL_NUM_THREADS` once).
pub fn pool() -> ThreadPool {
    // SAFETY: called from the benchmark's main thread before other threads read the environment.
    unsafe { std::env::set_var("MATMUL_NUM_THREADS", THREADS.to_string()) };
    ThreadPool::new(THREADS).expect("a thread pool of two threads")
}

/// Values in [-0.5, 0.5) from a fixed xorshift sequence.
pub fn filled<D: IntoDimension>(shape: D, seed: u32) -> Array<f32, D::Dim>
where
    D::Dim: Dimension,
{
    let mut state = seed.wrapping_mul(2_654_435_761) | 1;
    Array::from_shape_simple_fn(shape, || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5
    })
}
