//! Encoder-decoder models (T5, BART, Marian) against `fixtures/models/<name>/reference.*`: the
//! encoder's hidden states, the decoder's hidden states and logits in one pass, the logits of
//! each step with the cache, and a batch against its inputs run one by one.

use ndarray::{Array2, ArrayView2, Axis, s};
use oxformer_models::seq2seq::{DecoderOutput, Seq2SeqCache};
use oxformer_models::{EncoderInput, EncoderOutput, Result};
use serde_json::Value;

use super::reference::{Reference, assert_all_close, compare, model_dir};

pub const TOLERANCE: f32 = 1e-4;

/// What the tests call on each model (the three have the same inherent methods).
pub trait Seq2Seq {
    fn encode(&self, input: &EncoderInput<'_>, hidden_states: bool) -> Result<EncoderOutput>;
    fn start(&self, input: &EncoderInput<'_>, rows: usize, capacity: usize)
    -> Result<Seq2SeqCache>;
    fn decode(
        &self,
        ids: ArrayView2<'_, u32>,
        cache: &mut Seq2SeqCache,
        hidden_states: bool,
    ) -> Result<DecoderOutput>;
    fn decode_last(
        &self,
        ids: ArrayView2<'_, u32>,
        cache: &mut Seq2SeqCache,
    ) -> Result<Array2<f32>>;
    fn decode_last_hidden(
        &self,
        ids: ArrayView2<'_, u32>,
        cache: &mut Seq2SeqCache,
    ) -> Result<Array2<f32>>;
    fn greedy_tokens(&self, hidden: ArrayView2<'_, f32>) -> Option<Vec<u32>>;
    fn logits(&self, hidden: ArrayView2<'_, f32>) -> Result<Array2<f32>>;
}

#[macro_export]
macro_rules! impl_seq2seq {
    ($model:ty) => {
        impl common::seq2seq::Seq2Seq for $model {
            fn encode(
                &self,
                input: &oxformer_models::EncoderInput<'_>,
                hidden_states: bool,
            ) -> oxformer_models::Result<oxformer_models::EncoderOutput> {
                <$model>::encode(self, input, hidden_states)
            }
            fn start(
                &self,
                input: &oxformer_models::EncoderInput<'_>,
                rows: usize,
                capacity: usize,
            ) -> oxformer_models::Result<oxformer_models::seq2seq::Seq2SeqCache> {
                <$model>::start(self, input, rows, capacity)
            }
            fn decode(
                &self,
                ids: ndarray::ArrayView2<'_, u32>,
                cache: &mut oxformer_models::seq2seq::Seq2SeqCache,
                hidden_states: bool,
            ) -> oxformer_models::Result<oxformer_models::seq2seq::DecoderOutput> {
                <$model>::decode(self, ids, cache, hidden_states)
            }
            fn decode_last(
                &self,
                ids: ndarray::ArrayView2<'_, u32>,
                cache: &mut oxformer_models::seq2seq::Seq2SeqCache,
            ) -> oxformer_models::Result<ndarray::Array2<f32>> {
                <$model>::decode_last(self, ids, cache)
            }
            fn decode_last_hidden(
                &self,
                ids: ndarray::ArrayView2<'_, u32>,
                cache: &mut oxformer_models::seq2seq::Seq2SeqCache,
            ) -> oxformer_models::Result<ndarray::Array2<f32>> {
                <$model>::decode_last_hidden(self, ids, cache)
            }
            fn greedy_tokens(&self, hidden: ndarray::ArrayView2<'_, f32>) -> Option<Vec<u32>> {
                <$model>::greedy_tokens(self, hidden)
            }
            fn logits(
                &self,
                hidden: ndarray::ArrayView2<'_, f32>,
            ) -> oxformer_models::Result<ndarray::Array2<f32>> {
                <$model>::logits(self, hidden)
            }
        }
    };
}

/// The fixture's `reference.json`.
pub fn reference_json(name: &str) -> Value {
    let path = model_dir(name).join("reference.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn count(reference: &Reference, prefix: &str) -> usize {
    (0..)
        .take_while(|i| reference.has(&format!("{prefix}.{i}")))
        .count()
}

/// Every encoder hidden state, the decoder's hidden states and logits of the whole decoder
/// sequence in one pass, then step by step with the cache: all within 1e-4 of transformers.
pub fn check_against_reference(name: &str, model: &impl Seq2Seq) {
    let reference = Reference::load(name);
    let input_ids = reference.ids("input_ids");
    let attention_mask = reference.ids("attention_mask");
    let input = EncoderInput::new(input_ids.view(), attention_mask.view());
    let mut pairs = Vec::new();

    let encoded = model.encode(&input, true).unwrap();
    let layers = count(&reference, "encoder.hidden_states");
    assert!(layers >= 3, "{name}: {layers} encoder hidden states");
    assert_eq!(
        encoded.hidden_states.len(),
        layers,
        "{name}: encoder hidden states"
    );
    for (index, ours) in encoded.hidden_states.iter().enumerate() {
        let key = format!("encoder.hidden_states.{index}");
        pairs.push((
            format!("{name} {key}"),
            ours.clone().into_dyn(),
            reference.floats(&key),
        ));
    }
    pairs.push((
        format!("{name} encoder.last_hidden_state"),
        encoded.last_hidden_state.clone().into_dyn(),
        reference.floats("encoder.last_hidden_state"),
    ));

    let decoder_ids = reference.ids("decoder_input_ids");
    let (rows, steps) = decoder_ids.dim();
    let mut cache = model.start(&input, 1, steps).unwrap();
    let full = model.decode(decoder_ids.view(), &mut cache, true).unwrap();
    let layers = count(&reference, "decoder.hidden_states");
    assert_eq!(
        full.hidden_states.len(),
        layers,
        "{name}: decoder hidden states"
    );
    for (index, ours) in full.hidden_states.iter().enumerate() {
        let key = format!("decoder.hidden_states.{index}");
        pairs.push((
            format!("{name} {key}"),
            ours.clone().into_dyn(),
            reference.floats(&key),
        ));
    }
    pairs.push((
        format!("{name} logits (no cache)"),
        full.logits.clone().into_dyn(),
        reference.floats("logits"),
    ));

    let mut cache = model.start(&input, 1, steps).unwrap();
    for step in 0..steps {
        let logits = model
            .decode_last(decoder_ids.slice(s![.., step..step + 1]), &mut cache)
            .unwrap();
        assert_eq!(logits.nrows(), rows);
        let key = format!("logits.step.{step}");
        pairs.push((
            format!("{name} {key} (cached)"),
            logits.into_dyn(),
            reference.floats(&key),
        ));
    }
    assert_eq!(cache.len(), steps);
    assert_all_close(pairs, TOLERANCE);
}

/// The cached decoder (one id per step) against the same model's uncached pass over the whole
/// sequence, and a batch against each input run alone (unpadded).
pub fn check_cache_and_batch(name: &str, model: &impl Seq2Seq) {
    let reference = Reference::load(name);
    let input_ids = reference.ids("input_ids");
    let attention_mask = reference.ids("attention_mask");
    let input = EncoderInput::new(input_ids.view(), attention_mask.view());
    let decoder_ids = reference.ids("decoder_input_ids");
    let (rows, steps) = decoder_ids.dim();

    let mut cache = model.start(&input, 1, steps).unwrap();
    let full = model.decode(decoder_ids.view(), &mut cache, false).unwrap();
    let mut cache = model.start(&input, 1, steps).unwrap();
    let mut failures = Vec::new();
    for step in 0..steps {
        let cached = model
            .decode_last(decoder_ids.slice(s![.., step..step + 1]), &mut cache)
            .unwrap();
        let uncached = full.logits.index_axis(Axis(1), step).to_owned();
        if let Err(failure) = compare(
            &format!("{name} step {step}: cached vs uncached"),
            cached.view().into_dyn(),
            uncached.view().into_dyn(),
            TOLERANCE,
        ) {
            failures.push(failure);
        }
    }

    for row in 0..rows {
        let length = attention_mask
            .row(row)
            .iter()
            .filter(|&&value| value == 1)
            .count();
        let ids = input_ids.slice(s![row..row + 1, ..length]).to_owned();
        let mask = attention_mask.slice(s![row..row + 1, ..length]).to_owned();
        let single = EncoderInput::new(ids.view(), mask.view());
        let mut cache = model.start(&single, 1, steps).unwrap();
        let alone = model
            .decode(decoder_ids.slice(s![row..row + 1, ..]), &mut cache, false)
            .unwrap();
        if let Err(failure) = compare(
            &format!("{name} input {row}: alone vs in the batch"),
            alone.logits.index_axis(Axis(0), 0).into_dyn(),
            full.logits.index_axis(Axis(0), row).into_dyn(),
            TOLERANCE,
        ) {
            failures.push(failure);
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Beam-style rows: each input's encoder output serves `beams` decoder rows; after a reorder
/// within each input, every row's next logits are those of the row it was copied from.
pub fn check_rows_per_input(name: &str, model: &impl Seq2Seq) {
    let reference = Reference::load(name);
    let input_ids = reference.ids("input_ids");
    let attention_mask = reference.ids("attention_mask");
    let input = EncoderInput::new(input_ids.view(), attention_mask.view());
    let decoder_ids = reference.ids("decoder_input_ids");
    let (inputs, steps) = decoder_ids.dim();
    let beams = 3;
    // row r = input r / beams; beam b of an input reads the input's ids shifted by b steps
    let beam_ids = |step: usize| {
        Array2::from_shape_fn((inputs * beams, 1), |(row, _)| {
            let (input, beam) = (row / beams, row % beams);
            decoder_ids[[input, (step + beam * (step > 0) as usize) % steps]]
        })
    };
    let mut cache = model.start(&input, beams, steps).unwrap();
    assert_eq!(cache.rows(), inputs * beams);
    let half = steps / 2;
    let mut last = Array2::zeros((0, 0));
    for step in 0..half {
        last = model
            .decode_last(beam_ids(step).view(), &mut cache)
            .unwrap();
    }
    assert!(last.nrows() == inputs * beams);
    // every row takes beam 2's past within its own input
    let order: Vec<usize> = (0..inputs * beams)
        .map(|row| row / beams * beams + 2)
        .collect();
    cache.reorder_rows(&order).unwrap();
    let next_ids = beam_ids(half);
    let same_ids = Array2::from_shape_fn((inputs * beams, 1), |(row, _)| next_ids[[order[row], 0]]);
    let reordered = model.decode_last(same_ids.view(), &mut cache).unwrap();
    // reference: run beam 2's history alone, as one row per input
    let mut single = model.start(&input, 1, steps).unwrap();
    let mut expected = Array2::zeros((0, 0));
    for step in 0..=half {
        let ids = Array2::from_shape_fn((inputs, 1), |(input, _)| {
            beam_ids(step)[[input * beams + 2, 0]]
        });
        expected = model.decode_last(ids.view(), &mut single).unwrap();
    }
    let mut failures = Vec::new();
    for row in 0..inputs * beams {
        if let Err(failure) = compare(
            &format!("{name} row {row} after the reorder"),
            reordered.row(row).into_dyn(),
            expected.row(row / beams).into_dyn(),
            TOLERANCE,
        ) {
            failures.push(failure);
        }
    }
    // rows may not move across inputs
    let across: Vec<usize> = (0..inputs * beams).rev().collect();
    assert!(
        cache.reorder_rows(&across).is_err(),
        "{name}: a reorder across inputs"
    );
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// A copy of a fixture folder with `edit` applied to its config and `drop` left out of the weights.
pub fn broken_copy(
    name: &str,
    edit: impl Fn(&mut serde_json::Value),
    drop: &str,
) -> tempfile::TempDir {
    let source = model_dir(name);
    let dir = tempfile::tempdir().unwrap();
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(source.join("config.json")).unwrap())
            .unwrap();
    edit(&mut config);
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let bytes = std::fs::read(source.join("model.safetensors")).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .tensors()
        .into_iter()
        .filter(|(tensor, _)| tensor != drop)
        .collect();
    safetensors::serialize_to_file(kept, None, &dir.path().join("model.safetensors")).unwrap();
    dir
}

/// The greedy screen's ids against the argmax of the head's logits at every step of the
/// reference decoder sequence; `expect_screen` false: the model must decline (a non-zero bias).
pub fn check_greedy_screen(name: &str, model: &impl Seq2Seq, expect_screen: bool) {
    let reference = Reference::load(name);
    let input_ids = reference.ids("input_ids");
    let attention_mask = reference.ids("attention_mask");
    let input = EncoderInput::new(input_ids.view(), attention_mask.view());
    let decoder_ids = reference.ids("decoder_input_ids");
    let steps = decoder_ids.ncols();
    let mut cache = model.start(&input, 1, steps).unwrap();
    for step in 0..steps {
        let hidden = model
            .decode_last_hidden(decoder_ids.slice(s![.., step..step + 1]), &mut cache)
            .unwrap();
        let logits = model.logits(hidden.view()).unwrap();
        let argmax: Vec<u32> = logits
            .rows()
            .into_iter()
            .map(|row| {
                let mut best = 0;
                for (index, &value) in row.iter().enumerate() {
                    if value > row[best] {
                        best = index;
                    }
                }
                best as u32
            })
            .collect();
        let screened = model.greedy_tokens(hidden.view());
        if expect_screen {
            assert_eq!(screened, Some(argmax), "{name} step {step}");
        } else {
            assert_eq!(screened, None, "{name} step {step}: a head with a bias");
        }
    }
}
