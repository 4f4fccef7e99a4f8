//! The kernels, one module per operation.

pub mod attention;
// TODO(gemm owner): six unsafe fns of gemm/microkernel.rs (write_out, microkernel_prefetching,
// tile_body, prefetch_line_l1, prefetch_line, gemv_body) still lack a `# Safety` section; this
// allow goes once they have one.
#[allow(clippy::missing_safety_doc)]
pub mod gemm;
pub mod norm;
pub mod screen;
pub mod softmax;
