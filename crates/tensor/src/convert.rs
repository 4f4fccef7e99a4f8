//! Half-precision to f32 conversion through `half`.

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

/// Converts `src` into `dst` (vectorised by `half` where the CPU has F16C).
///
/// # Panics
/// If the lengths differ.
pub fn f16_to_f32(src: &[f16], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len(), "f16_to_f32: lengths differ");
    src.convert_to_f32_slice(dst);
}

/// Converts `src` into `dst`.
///
/// # Panics
/// If the lengths differ.
pub fn bf16_to_f32(src: &[bf16], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len(), "bf16_to_f32: lengths differ");
    src.convert_to_f32_slice(dst);
}
