//! Helpers shared by the head tests: reading `fixtures/` references and comparing against them
//! (oxformer-models' `tests/common/reference.rs`, included as it is).
#![allow(dead_code)]

use std::path::PathBuf;

use ndarray::Array2;

/// The workspace's `fixtures/`.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

#[path = "../../../models/tests/common/reference.rs"]
mod reference;

pub use reference::*;

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
