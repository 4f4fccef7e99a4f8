//! Config defaults against transformers: `fixtures/configs/defaults.json` holds partial configs
//! and the full `to_dict()` transformers 4.57.6 makes of them (xtask/python/fixtures_configs.py).

mod common;

use common::{common_fields, fixtures, model_fields, reference_value, same};
use oxformer_models::{HiddenAct, ModelConfig};
use serde_json::Value;

#[test]
fn defaults_match_transformers() {
    let path = fixtures().join("configs/defaults.json");
    let document: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let cases = document["cases"].as_object().unwrap();
    assert!(cases.len() >= 10, "{} cases", cases.len());
    let mut mismatches = Vec::new();
    let mut compared = 0;
    for (name, case) in cases {
        let input = case["input"].as_object().unwrap();
        let reference = &case["config"];
        let config = ModelConfig::from_json_map(input, name).unwrap();
        assert_eq!(config.model_type(), input["model_type"].as_str().unwrap());
        assert_eq!(
            config.common().num_labels() as u64,
            case["num_labels"].as_u64().unwrap(),
            "{name}: num_labels"
        );
        let (fields, activations) = model_fields(&config);
        for (key, ours) in fields.iter().chain(&common_fields(config.common())) {
            let expected = reference_value(reference, key);
            // transformers leaves label2id null when only id2label is given; we invert id2label.
            if *key == "label2id" && expected.is_null() {
                continue;
            }
            compared += 1;
            if !same(ours, &expected) {
                mismatches.push(format!(
                    "{name}: {key}: ours {ours}, transformers {expected}"
                ));
            }
        }
        for (key, ours) in activations {
            compared += 1;
            let expected = reference[key].as_str().unwrap();
            if HiddenAct::from_name(expected) != Some(ours) {
                mismatches.push(format!(
                    "{name}: {key}: ours {ours:?}, transformers {expected}"
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{compared} fields compared, {} differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
