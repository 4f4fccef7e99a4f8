//! Shared helpers of the pipeline tests: the fixture cases of `fixtures/pipelines/<task>/`
//! and a comparison of JSON values with transformers' (floats within a tolerance, everything
//! else exact).

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// Tolerance for scores and features against the reference (absolute).
pub const TOLERANCE: f64 = 1e-4;

/// The workspace's `fixtures/` folder.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// The folder of fixture model `name`.
pub fn model_dir(name: &str) -> String {
    fixtures().join("models").join(name).display().to_string()
}

/// One `fixtures/pipelines/<task>/<case>.json`.
#[derive(Debug)]
pub struct Case {
    pub name: String,
    pub model: String,
    pub inputs: Value,
    pub options: Map<String, Value>,
    pub output: Value,
}

/// Every case of a task, sorted by name.
pub fn cases(task: &str) -> Vec<Case> {
    let dir = fixtures().join("pipelines").join(task);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no cases in {}", dir.display());
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("readable case");
            let value: Value = serde_json::from_str(&text).expect("case is JSON");
            Case {
                name: path.file_stem().unwrap().to_string_lossy().into_owned(),
                model: value["model"].as_str().expect("model").to_string(),
                inputs: value["inputs"].clone(),
                options: value["options"].as_object().cloned().unwrap_or_default(),
                output: value["output"].clone(),
            }
        })
        .collect()
}

/// Compares `actual` with `expected`: same structure and keys, strings and integers equal,
/// floats within `tolerance`. Returns the first difference, with its JSON path.
pub fn compare(actual: &Value, expected: &Value, tolerance: f64) -> Result<(), String> {
    compare_at("$", actual, expected, tolerance)
}

fn compare_at(path: &str, actual: &Value, expected: &Value, tolerance: f64) -> Result<(), String> {
    match (actual, expected) {
        (Value::Number(a), Value::Number(e)) => {
            if e.is_f64() || a.is_f64() {
                let (a, e) = (a.as_f64().unwrap(), e.as_f64().unwrap());
                if (a - e).abs() <= tolerance || (a.is_nan() && e.is_nan()) {
                    Ok(())
                } else {
                    Err(format!(
                        "{path}: {a} vs expected {e} (diff {})",
                        (a - e).abs()
                    ))
                }
            } else if a == e {
                Ok(())
            } else {
                Err(format!("{path}: {a} vs expected {e}"))
            }
        }
        (Value::Array(a), Value::Array(e)) => {
            if a.len() != e.len() {
                return Err(format!("{path}: {} items vs expected {}", a.len(), e.len()));
            }
            for (index, (a, e)) in a.iter().zip(e).enumerate() {
                compare_at(&format!("{path}[{index}]"), a, e, tolerance)?;
            }
            Ok(())
        }
        (Value::Object(a), Value::Object(e)) => {
            let mut a_keys: Vec<&String> = a.keys().collect();
            let mut e_keys: Vec<&String> = e.keys().collect();
            a_keys.sort();
            e_keys.sort();
            if a_keys != e_keys {
                return Err(format!("{path}: keys {a_keys:?} vs expected {e_keys:?}"));
            }
            for key in e_keys {
                compare_at(&format!("{path}.{key}"), &a[key], &e[key], tolerance)?;
            }
            Ok(())
        }
        (a, e) if a == e => Ok(()),
        (a, e) => Err(format!("{path}: {a} vs expected {e}")),
    }
}

/// Runs every case of `task` through `Pipeline::call` and checks it against the reference
/// (the f16 and bf16 checkpoints included: their references were computed in float32, as
/// oxformer computes); panics listing every failing case.
pub fn check_task(task: oxformer_pipelines::Task, folder: &str) {
    let mut failures = Vec::new();
    let cases = cases(folder);
    for case in &cases {
        let result = oxformer_pipelines::pipeline(task, &model_dir(&case.model))
            .and_then(|pipeline| pipeline.call(&case.inputs, &case.options));
        match result {
            Ok(actual) => {
                if let Err(difference) = compare(&actual, &case.output, TOLERANCE) {
                    failures.push(format!("{}: {difference}", case.name));
                }
            }
            Err(error) => failures.push(format!("{}: error: {error}", case.name)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} {folder} cases differ from transformers:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    println!("{} {folder} cases match transformers", cases.len());
}
