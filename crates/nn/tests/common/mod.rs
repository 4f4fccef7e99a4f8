//! Helpers shared by the integration tests: small safetensors files built in the test.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::Dtype;
use safetensors::tensor::TensorView;

/// Little-endian bytes of f32 values.
pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|value| value.to_le_bytes())
        .collect()
}

/// `count` distinct, non-round f32 values starting at `seed`.
pub fn ramp(count: usize, seed: f32) -> Vec<f32> {
    (0..count)
        .map(|i| seed + 0.25 * i as f32 - 0.01 * (i * i) as f32)
        .collect()
}

/// Writes a safetensors file with the `safetensors` crate's serializer.
pub fn write_safetensors(path: &Path, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) {
    let views: HashMap<String, TensorView<'_>> = tensors
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            let view = TensorView::new(*dtype, shape.clone(), bytes).expect("valid test tensor");
            (name.to_string(), view)
        })
        .collect();
    safetensors::serialize_to_file(&views, None, path).expect("serialize test file");
}

/// Writes a safetensors file by hand: the 8-byte length, `header` verbatim, then `data`.
pub fn write_raw(path: &Path, header: &str, data: &[u8]) {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    std::fs::write(path, bytes).expect("write test file");
}

/// Writes f32 tensors with the serializer into `dir/name` and returns the path.
pub fn write_f32_file(dir: &Path, name: &str, tensors: &[(&str, Vec<usize>)]) -> PathBuf {
    let path = dir.join(name);
    let owned: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .enumerate()
        .map(|(i, (tensor, shape))| {
            let values = ramp(shape.iter().product(), i as f32);
            (*tensor, Dtype::F32, shape.clone(), f32_bytes(&values))
        })
        .collect();
    write_safetensors(&path, &owned);
    path
}

/// The message of an error, for checking what it names.
pub fn message<T: std::fmt::Debug>(result: Result<T, oxformer_nn::Error>) -> String {
    result.expect_err("expected an error").to_string()
}
