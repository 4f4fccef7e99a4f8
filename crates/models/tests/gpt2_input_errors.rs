//! GPT-2's bad inputs are the caller's errors (`Error::Input`), never a panic: an empty batch, no
//! positions, ids out of range, a hidden state of the wrong length for the greedy shortcut.

use std::path::Path;

use ndarray::Array2;
use oxformer_models::Error;
use oxformer_models::gpt2::{Gpt2Input, Gpt2LmHeadModel};

fn model() -> Gpt2LmHeadModel {
    Gpt2LmHeadModel::from_folder(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models/gpt2"),
    )
    .unwrap()
}

fn input(ids: &Array2<u32>) -> Gpt2Input<'_> {
    Gpt2Input {
        input_ids: ids.view(),
        position_ids: None,
        attention_mask: None,
    }
}

fn assert_input_error(error: Error, needle: &str) {
    assert!(matches!(error, Error::Input { .. }), "{error:?}");
    assert!(error.to_string().contains(needle), "{error}");
}

#[test]
fn an_empty_batch_is_an_input_error_not_a_division_by_zero() {
    let model = model();
    let empty = Array2::<u32>::zeros((0, 3));
    let error = model
        .transformer()
        .forward(&input(&empty), None, false)
        .unwrap_err();
    assert_input_error(error, "empty batch");
    let error = model.forward(&input(&empty), None, false).unwrap_err();
    assert_input_error(error, "empty batch");
    let error = model.forward_last(&input(&empty), None).unwrap_err();
    assert_input_error(error, "empty batch");

    let no_positions = Array2::<u32>::zeros((2, 0));
    let error = model
        .transformer()
        .forward(&input(&no_positions), None, false)
        .unwrap_err();
    assert_input_error(error, "no input positions");
}

#[test]
fn ids_and_positions_out_of_range_are_input_errors() {
    let model = model();
    let vocab = model.config().vocab_size as u32;
    let ids = Array2::from_elem((1, 2), vocab);
    let error = model.forward(&input(&ids), None, false).unwrap_err();
    assert_input_error(error, &vocab.to_string());

    let ids = Array2::<u32>::zeros((1, model.config().n_positions + 1));
    let error = model.forward(&input(&ids), None, false).unwrap_err();
    assert_input_error(error, &model.config().n_positions.to_string());
}

#[test]
fn greedy_token_of_a_wrong_length_is_an_error_not_undecided() {
    let model = model();
    let embed = model.config().n_embd;
    for length in [0, embed - 1, embed + 1] {
        let error = model.greedy_token(&vec![0.5; length]).unwrap_err();
        assert_input_error(error, &embed.to_string());
    }
    // the right length is decided (Some) or undecided (None), never an error
    assert!(model.greedy_token(&vec![0.5; embed]).is_ok());
}
