//! Helpers shared by the generation tests: fixture paths and safetensors reading.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayD, Ix2, IxDyn};
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A reference safetensors file: ints as i64, floats as f32.
pub struct Fixture {
    bytes: Vec<u8>,
}

impl Fixture {
    pub fn open(path: &Path) -> Self {
        Self {
            bytes: std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        }
    }

    fn tensors(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).expect("the fixture parses")
    }

    pub fn has(&self, name: &str) -> bool {
        self.tensors().names().contains(&name)
    }

    pub fn ints(&self, name: &str) -> Array2<i64> {
        let tensors = self.tensors();
        let view = tensors.tensor(name).expect(name);
        assert_eq!(view.dtype(), Dtype::I64, "{name}");
        let values = view
            .data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
            .collect();
        Array2::from_shape_vec((view.shape()[0], view.shape()[1]), values).unwrap()
    }

    pub fn floats_dyn(&self, name: &str) -> ArrayD<f32> {
        let tensors = self.tensors();
        let view = tensors.tensor(name).expect(name);
        assert_eq!(view.dtype(), Dtype::F32, "{name}");
        let values = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        ArrayD::from_shape_vec(IxDyn(view.shape()), values).unwrap()
    }

    pub fn floats(&self, name: &str) -> Array2<f32> {
        self.floats_dyn(name).into_dimensionality::<Ix2>().unwrap()
    }
}

/// A JSON array of arrays of integers as rows of u32.
pub fn rows(value: &Value) -> Vec<Vec<u32>> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect()
        })
        .collect()
}
