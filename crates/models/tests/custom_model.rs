//! `examples/custom_model.rs` (a model built from oxformer-nn's layers, weights written by the
//! example itself) against the same model in PyTorch (`fixtures/custom-model/reference.json`,
//! `xtask/python/fixtures_custom_model.py`), every value within 1e-4.

#[allow(dead_code)]
#[path = "../examples/custom_model.rs"]
mod example;

use std::path::Path;

#[test]
fn the_custom_model_example_matches_pytorch() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/custom-model/reference.json");
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let (ids, padding) = example::example_batch();
    assert_eq!(
        reference["ids"],
        serde_json::json!(ids.outer_iter().map(|row| row.to_vec()).collect::<Vec<_>>())
    );
    assert_eq!(
        reference["padding"],
        serde_json::json!(
            padding
                .outer_iter()
                .map(|row| row.iter().map(|&v| v as u32).collect::<Vec<_>>())
                .collect::<Vec<_>>()
        )
    );

    let dir = tempfile::tempdir().unwrap();
    let hidden = example::run(dir.path()).unwrap();
    let expected = &reference["last_hidden_state"];
    let mut worst = (0.0f64, (0, 0, 0));
    for ((b, t, h), &value) in hidden.indexed_iter() {
        let want = expected[b][t][h].as_f64().unwrap();
        let difference = (f64::from(value) - want).abs();
        if difference > worst.0 {
            worst = (difference, (b, t, h));
        }
    }
    assert_eq!(
        hidden.dim(),
        (
            expected.as_array().unwrap().len(),
            expected[0].as_array().unwrap().len(),
            expected[0][0].as_array().unwrap().len()
        )
    );
    assert!(
        worst.0 <= 1e-4,
        "largest difference {:.2e} at {:?}",
        worst.0,
        worst.1
    );
}
