//! A model's input errors are the caller's errors (`is_user_error`: the CLI's exit status 2),
//! whichever crate's error carries them.

use std::path::Path;

use ndarray::Array2;
use oxformer_models::gpt2::{Gpt2Input, Gpt2LmHeadModel};

#[test]
fn gpt2_input_errors_are_user_errors() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models/gpt2");
    let model = Gpt2LmHeadModel::from_folder(&folder).unwrap();
    let vocab = model.config().vocab_size as u32;
    for ids in [
        Array2::<u32>::zeros((0, 2)),
        Array2::from_elem((1, 2), vocab),
    ] {
        let input = Gpt2Input {
            input_ids: ids.view(),
            position_ids: None,
            attention_mask: None,
        };
        let error = model.forward_last(&input, None).unwrap_err();
        let as_pipeline = oxformer_pipelines::Error::from(error);
        assert!(as_pipeline.is_user_error(), "{as_pipeline:?}");
        let through_heads = oxformer_pipelines::Error::from(oxformer_heads::Error::from(
            model.forward_last(&input, None).unwrap_err(),
        ));
        assert!(through_heads.is_user_error(), "{through_heads:?}");
    }
    let error = model.greedy_token(&[0.0; 3]).unwrap_err();
    assert!(oxformer_pipelines::Error::from(error).is_user_error());
}
