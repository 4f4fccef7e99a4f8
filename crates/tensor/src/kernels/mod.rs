//! The kernels, one module per operation.

pub mod attention;
pub mod gemm;
pub mod norm;
pub mod screen;
pub mod softmax;
