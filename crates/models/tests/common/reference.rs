//! Reading `fixtures/models/<name>/reference.safetensors` and comparing against it.

use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayD, ArrayViewD, Dimension, IxDyn};
use safetensors::{Dtype, SafeTensors};

/// `fixtures/models/<name>`.
pub fn model_dir(name: &str) -> PathBuf {
    super::fixtures().join("models").join(name)
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

/// Runs an encoder body on a fixture's inputs and checks every hidden state (embeddings and each
/// layer), the last hidden state and, where the reference has one, the pooler output.
/// `run(input, with_pooler)` builds and runs the model.
pub fn check_body(
    name: &str,
    run: impl Fn(&oxformer_models::EncoderInput<'_>, bool) -> oxformer_models::EncoderOutput,
) {
    let reference = Reference::load(name);
    let input_ids = reference.ids("input_ids");
    let attention_mask = reference.ids("attention_mask");
    let token_type_ids = reference
        .has("token_type_ids")
        .then(|| reference.ids("token_type_ids"));
    let mut input = oxformer_models::EncoderInput::new(input_ids.view(), attention_mask.view());
    if let Some(types) = &token_type_ids {
        input = input.with_token_type_ids(types.view());
    }
    let with_pooler = reference.has("pooler_output");
    let output = run(&input, with_pooler);
    let layers = reference.num_hidden_states();
    assert!(
        layers >= 2,
        "{name}: the reference has {layers} hidden states"
    );
    assert_eq!(
        output.hidden_states.len(),
        layers,
        "{name}: number of hidden states"
    );
    let mut pairs = Vec::new();
    for (index, ours) in output.hidden_states.iter().enumerate() {
        let key = format!("hidden_states.{index}");
        pairs.push((
            format!("{name} {key}"),
            ours.clone().into_dyn(),
            reference.floats(&key),
        ));
    }
    pairs.push((
        format!("{name} last_hidden_state"),
        output.last_hidden_state.clone().into_dyn(),
        reference.floats("last_hidden_state"),
    ));
    if with_pooler {
        let pooler = output
            .pooler_output
            .clone()
            .expect("the model has a pooler");
        pairs.push((
            format!("{name} pooler_output"),
            pooler.into_dyn(),
            reference.floats("pooler_output"),
        ));
    } else {
        assert!(output.pooler_output.is_none(), "{name}: unexpected pooler");
    }
    assert_all_close(pairs, 1e-4);
}

/// As [`check_body`] for a forward pass that skips padding: attended positions of every hidden
/// state must match the reference, padded positions must be 0, and the pooler (on the first
/// token, which right padding keeps real) must match.
pub fn check_body_skipping_padding(
    name: &str,
    run: impl Fn(&oxformer_models::EncoderInput<'_>, bool) -> oxformer_models::EncoderOutput,
) {
    let reference = Reference::load(name);
    let input_ids = reference.ids("input_ids");
    let attention_mask = reference.ids("attention_mask");
    assert!(
        attention_mask.iter().any(|&value| value == 0),
        "{name}: the reference batch has padding"
    );
    let token_type_ids = reference
        .has("token_type_ids")
        .then(|| reference.ids("token_type_ids"));
    let mut input = oxformer_models::EncoderInput::new(input_ids.view(), attention_mask.view());
    if let Some(types) = &token_type_ids {
        input = input.with_token_type_ids(types.view());
    }
    let with_pooler = reference.has("pooler_output");
    let output = run(&input, with_pooler);
    let mut pairs = Vec::new();
    let mut states: Vec<(String, ArrayD<f32>)> = output
        .hidden_states
        .iter()
        .enumerate()
        .map(|(index, state)| (format!("hidden_states.{index}"), state.clone().into_dyn()))
        .collect();
    assert_eq!(states.len(), reference.num_hidden_states(), "{name}");
    states.push((
        "last_hidden_state".to_string(),
        output.last_hidden_state.clone().into_dyn(),
    ));
    for (key, ours) in states {
        let mut expected = reference.floats(&key);
        for ((b, t), &attended) in attention_mask.indexed_iter() {
            if attended == 0 {
                let padded = ours.slice(ndarray::s![b, t, ..]);
                assert!(
                    padded.iter().all(|&value| value == 0.0),
                    "{name} {key}: padded position ({b}, {t}) is not 0"
                );
                expected.slice_mut(ndarray::s![b, t, ..]).fill(0.0);
            }
        }
        pairs.push((format!("{name} {key} (padding skipped)"), ours, expected));
    }
    if with_pooler {
        pairs.push((
            format!("{name} pooler_output (padding skipped)"),
            output.pooler_output.clone().expect("a pooler").into_dyn(),
            reference.floats("pooler_output"),
        ));
    }
    assert_all_close(pairs, 1e-4);
}
