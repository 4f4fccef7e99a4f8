//! f16/bf16 → f32 conversion and the embedding gather.

use half::{bf16, f16};
use oxformer_tensor::ndarray::Array2;
use oxformer_tensor::{Error, bf16_to_f32, f16_to_f32, gather_rows};

#[test]
fn half_precision_converts_exactly() {
    // every f16 bit pattern, and a spread of bf16 ones, including infinities and NaN
    let halves: Vec<f16> = (0..=u16::MAX).map(f16::from_bits).collect();
    let mut out = vec![0.0f32; halves.len()];
    f16_to_f32(&halves, &mut out);
    for (h, x) in halves.iter().zip(&out) {
        let expected = h.to_f32();
        assert!(
            expected.to_bits() == x.to_bits() || (expected.is_nan() && x.is_nan()),
            "f16 {:#06x}: {x} vs {expected}",
            h.to_bits()
        );
    }
    let brains: Vec<bf16> = (0..=u16::MAX).step_by(7).map(bf16::from_bits).collect();
    let mut out = vec![0.0f32; brains.len()];
    bf16_to_f32(&brains, &mut out);
    for (h, x) in brains.iter().zip(&out) {
        let expected = h.to_f32();
        assert!(
            expected.to_bits() == x.to_bits() || (expected.is_nan() && x.is_nan()),
            "bf16 {:#06x}: {x} vs {expected}",
            h.to_bits()
        );
    }
}

#[test]
fn gather_takes_rows_in_order_and_rejects_bad_ids() {
    let table = Array2::from_shape_fn((5, 3), |(i, j)| (10 * i + j) as f32);
    let rows = gather_rows(table.view(), &[4, 0, 4]).expect("ids in range");
    assert_eq!(rows.row(0), table.row(4));
    assert_eq!(rows.row(1), table.row(0));
    assert_eq!(rows.row(2), table.row(4));
    assert_eq!(gather_rows(table.view(), &[]).expect("empty").dim(), (0, 3));
    match gather_rows(table.view(), &[1, 5]) {
        Err(Error::IndexOutOfRange { index: 5, rows: 5 }) => {}
        other => panic!("expected IndexOutOfRange, got {other:?}"),
    }
}
