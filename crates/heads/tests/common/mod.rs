//! Helpers shared by the head tests: reading `fixtures/` references and comparing against them
//! (the same as oxformer-models' `tests/common/reference.rs`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayD, ArrayViewD, Dimension, IxDyn};
use safetensors::{Dtype, SafeTensors};

/// `fixtures/models/<name>`.
pub fn model_dir(name: &str) -> PathBuf {
    fixtures().join("models").join(name)
}

/// The workspace's `fixtures/`.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// The reference outputs of one fixture folder.
pub struct Reference {
    name: String,
    bytes: Vec<u8>,
}

impl Reference {
    pub fn load(name: &str) -> Self {
        Self::from_file(&model_dir(name).join("reference.safetensors"), name)
    }

    pub fn from_file(path: &Path, name: &str) -> Self {
        let bytes =
            std::fs::read(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        Self {
            name: name.to_string(),
            bytes,
        }
    }

    fn tensors(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).expect("reference.safetensors parses")
    }

    pub fn has(&self, tensor: &str) -> bool {
        self.tensors().names().contains(&tensor)
    }

    /// An int64 input as (batch, seq) u32.
    pub fn ids(&self, tensor: &str) -> Array2<u32> {
        let tensors = self.tensors();
        let view = tensors
            .tensor(tensor)
            .unwrap_or_else(|_| panic!("{}: no `{tensor}`", self.name));
        assert_eq!(view.dtype(), Dtype::I64);
        let values: Vec<u32> = view
            .data()
            .chunks_exact(8)
            .map(|chunk| i64::from_le_bytes(chunk.try_into().unwrap()) as u32)
            .collect();
        let shape = view.shape();
        Array2::from_shape_vec((shape[0], shape[1]), values).unwrap()
    }

    /// A float32 output.
    pub fn floats(&self, tensor: &str) -> ArrayD<f32> {
        let tensors = self.tensors();
        let view = tensors
            .tensor(tensor)
            .unwrap_or_else(|_| panic!("{}: no `{tensor}`", self.name));
        assert_eq!(view.dtype(), Dtype::F32);
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|chunk| f32::from_le_bytes(chunk.try_into().unwrap()))
            .collect();
        ArrayD::from_shape_vec(IxDyn(view.shape()), values).unwrap()
    }

    /// Number of `hidden_states.<i>` tensors.
    pub fn num_hidden_states(&self) -> usize {
        (0..)
            .take_while(|i| self.has(&format!("hidden_states.{i}")))
            .count()
    }
}

/// Checks the shape, then every element within `tolerance`; on failure reports the first
/// differing values and the largest difference. Returns a description of the failure.
pub fn compare(
    what: &str,
    ours: ArrayViewD<'_, f32>,
    expected: ArrayViewD<'_, f32>,
    tolerance: f32,
) -> Result<f32, String> {
    if ours.shape() != expected.shape() {
        return Err(format!(
            "{what}: shape {:?}, reference {:?}",
            ours.shape(),
            expected.shape()
        ));
    }
    let mut max_difference = 0.0f32;
    let mut first = Vec::new();
    for ((index, &a), &b) in ours.indexed_iter().zip(expected.iter()) {
        let difference = (a - b).abs();
        if (difference > tolerance || difference.is_nan()) && first.len() < 5 {
            first.push(format!("{:?}: ours {a} reference {b}", index.slice()));
        }
        if difference > max_difference || difference.is_nan() {
            max_difference = difference;
        }
    }
    if first.is_empty() {
        Ok(max_difference)
    } else {
        Err(format!(
            "{what}: max difference {max_difference} > {tolerance}; first: {}",
            first.join("; ")
        ))
    }
}

/// Runs [`compare`] over several pairs and panics listing every failure (layer by layer).
pub fn assert_all_close(pairs: Vec<(String, ArrayD<f32>, ArrayD<f32>)>, tolerance: f32) {
    let mut failures = Vec::new();
    for (what, ours, expected) in &pairs {
        match compare(what, ours.view(), expected.view(), tolerance) {
            Ok(max) => eprintln!("{what}: max difference {max:e}"),
            Err(failure) => failures.push(failure),
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// The fixture's inputs: ids, mask and token types (where the model takes them).
pub struct Inputs {
    pub input_ids: Array2<u32>,
    pub attention_mask: Array2<u32>,
    pub token_type_ids: Option<Array2<u32>>,
}

impl Inputs {
    pub fn of(reference: &Reference) -> Self {
        Self {
            input_ids: reference.ids("input_ids"),
            attention_mask: reference.ids("attention_mask"),
            token_type_ids: reference
                .has("token_type_ids")
                .then(|| reference.ids("token_type_ids")),
        }
    }

    pub fn view(&self) -> oxformer_heads::EncoderInput<'_> {
        let input =
            oxformer_heads::EncoderInput::new(self.input_ids.view(), self.attention_mask.view());
        match &self.token_type_ids {
            Some(types) => input.with_token_type_ids(types.view()),
            None => input,
        }
    }
}
