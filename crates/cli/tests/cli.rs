//! The `oxformer` binary on the fixture models: `--json` lines equal transformers' pipeline
//! outputs (`fixtures/pipelines/`), and exit statuses 0 / 2 (usage, input) / 1 (other).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const TOLERANCE: f64 = 1e-4;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn model(name: &str) -> String {
    fixtures().join("models").join(name).display().to_string()
}

/// `(inputs, output)` of `fixtures/pipelines/<task>/<case>.json`.
fn case(task: &str, name: &str) -> (Value, Value) {
    let path = fixtures()
        .join("pipelines")
        .join(task)
        .join(format!("{name}.json"));
    let value: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    (value["inputs"].clone(), value["output"].clone())
}

/// Runs `oxformer args...` with `stdin` (or none).
fn oxformer(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_oxformer"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the oxformer binary runs");
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(pipe);
    child.wait_with_output().unwrap()
}

/// The JSON lines of a successful run.
fn json_lines(args: &[&str], stdin: Option<&str>) -> Vec<Value> {
    let output = oxformer(args, stdin);
    assert!(
        output.status.success(),
        "oxformer {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect()
}

/// Same structure, keys, strings and integers; floats within `TOLERANCE`.
fn assert_close(actual: &Value, expected: &Value, path: &str) {
    match (actual, expected) {
        (Value::Number(a), Value::Number(e)) if a.is_f64() || e.is_f64() => {
            let (a, e) = (a.as_f64().unwrap(), e.as_f64().unwrap());
            assert!((a - e).abs() <= TOLERANCE, "{path}: {a} vs expected {e}");
        }
        (Value::Array(a), Value::Array(e)) => {
            assert_eq!(a.len(), e.len(), "{path}: length");
            for (index, (a, e)) in a.iter().zip(e).enumerate() {
                assert_close(a, e, &format!("{path}[{index}]"));
            }
        }
        (Value::Object(a), Value::Object(e)) => {
            let mut a_keys: Vec<_> = a.keys().collect();
            let mut e_keys: Vec<_> = e.keys().collect();
            a_keys.sort();
            e_keys.sort();
            assert_eq!(a_keys, e_keys, "{path}: keys");
            for key in e_keys {
                assert_close(&a[key], &e[key], &format!("{path}.{key}"));
            }
        }
        (a, e) => assert_eq!(a, e, "{path}"),
    }
}

fn texts(inputs: &Value) -> Vec<String> {
    match inputs {
        Value::String(text) => vec![text.clone()],
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().unwrap().to_string())
            .collect(),
        other => panic!("not texts: {other}"),
    }
}

/// Runs the texts of a case as arguments of `oxformer <command>` and checks one line per
/// input against `expected`; `command` may be an alias of `task`.
fn check_texts(command: &str, task: &str, name: &str, flags: &[&str], expected: Vec<Value>) {
    let (inputs, _) = case(task, name);
    let texts = texts(&inputs);
    let mut args: Vec<&str> = vec![command];
    args.extend(flags);
    args.push("--json");
    args.extend(texts.iter().map(String::as_str));
    let lines = json_lines(&args, None);
    assert_eq!(lines.len(), expected.len(), "{name}: one line per input");
    for (index, (line, expected)) in lines.iter().zip(&expected).enumerate() {
        assert_close(line, expected, &format!("{name} line {index}"));
    }
}

fn items(output: Value) -> Vec<Value> {
    output.as_array().unwrap().clone()
}

#[test]
fn text_classification_json_equals_transformers() {
    let seqcls = model("bert-seqcls-single");
    let (_, output) = case("text-classification", "bert-seqcls-single-batch");
    check_texts(
        "text-classification",
        "text-classification",
        "bert-seqcls-single-batch",
        &["--model", &seqcls],
        items(output),
    );
    let (_, output) = case("text-classification", "bert-seqcls-single-top-k-none");
    check_texts(
        "sentiment-analysis",
        "text-classification",
        "bert-seqcls-single-top-k-none",
        &["--model", &seqcls, "--top-k", "all"],
        items(output),
    );
    let multi = model("bert-seqcls-multi");
    let (_, output) = case("text-classification", "bert-seqcls-multi-top-k-2-softmax");
    check_texts(
        "text-classification",
        "text-classification",
        "bert-seqcls-multi-top-k-2-softmax",
        &[
            "--model",
            &multi,
            "--top-k",
            "2",
            "--function-to-apply",
            "softmax",
        ],
        items(output),
    );
}

#[test]
fn text_pairs_come_as_json_lines() {
    let (inputs, output) = case("text-classification", "bert-seqcls-single-pair");
    let lines = json_lines(
        &[
            "text-classification",
            "--model",
            &model("bert-seqcls-single"),
            "--top-k",
            "all",
            "--json",
        ],
        Some(&format!("{inputs}\n")),
    );
    assert_eq!(lines.len(), 1);
    assert_close(&lines[0], &output, "pair");
}

#[test]
fn token_classification_json_equals_transformers() {
    let tokcls = model("bert-tokcls");
    let (_, output) = case("token-classification", "bert-tokcls-aggregation-simple");
    check_texts(
        "ner",
        "token-classification",
        "bert-tokcls-aggregation-simple",
        &["--model", &tokcls, "--aggregation-strategy", "simple"],
        vec![output],
    );
    let (_, output) = case("token-classification", "bert-tokcls-stride-16-average");
    check_texts(
        "token-classification",
        "token-classification",
        "bert-tokcls-stride-16-average",
        &[
            "--model",
            &tokcls,
            "--aggregation-strategy",
            "average",
            "--stride",
            "16",
        ],
        vec![output],
    );
}

#[test]
fn question_answering_json_equals_transformers() {
    let qa = model("bert-qa");
    let (inputs, output) = case("question-answering", "bert-qa-top-k-3");
    let lines = json_lines(
        &[
            "question-answering",
            "--model",
            &qa,
            "--top-k",
            "3",
            "--json",
            "--question",
            inputs["question"].as_str().unwrap(),
            "--context",
            inputs["context"].as_str().unwrap(),
        ],
        None,
    );
    assert_eq!(lines.len(), 1);
    assert_close(&lines[0], &output, "top-k-3");

    let (inputs, output) = case("question-answering", "bert-qa-batch");
    let stdin: String = inputs
        .as_array()
        .unwrap()
        .iter()
        .map(|input| format!("{input}\n"))
        .collect();
    let lines = json_lines(
        &["question-answering", "--model", &qa, "--json"],
        Some(&stdin),
    );
    let expected = items(output);
    assert_eq!(lines.len(), expected.len());
    for (index, (line, expected)) in lines.iter().zip(&expected).enumerate() {
        assert_close(line, expected, &format!("batch line {index}"));
    }
}

#[test]
fn fill_mask_json_equals_transformers() {
    let mlm = model("bert-mlm");
    let (inputs, output) = case("fill-mask", "bert-mlm-top-k-2-batch");
    let stdin: String = texts(&inputs)
        .iter()
        .map(|text| format!("{text}\n"))
        .collect();
    let lines = json_lines(
        &["fill-mask", "--model", &mlm, "--top-k", "2", "--json"],
        Some(&stdin),
    );
    let expected = items(output);
    assert_eq!(lines.len(), expected.len());
    for (index, (line, expected)) in lines.iter().zip(&expected).enumerate() {
        assert_close(line, expected, &format!("line {index}"));
    }
    let (_, output) = case("fill-mask", "bert-mlm-targets");
    check_texts(
        "fill-mask",
        "fill-mask",
        "bert-mlm-targets",
        &["--model", &mlm, "--targets", "Paris,London,the"],
        vec![output],
    );
}

#[test]
fn feature_extraction_json_equals_transformers() {
    let (_, output) = case("feature-extraction", "bert-batch");
    check_texts(
        "feature-extraction",
        "feature-extraction",
        "bert-batch",
        &["--model", &model("bert")],
        items(output),
    );
}

/// The `encode` case `name` of a sentence-transformers fixture folder: (texts, embeddings).
fn encode_case(folder: &str, name: &str) -> (Vec<String>, Vec<Value>) {
    let path = fixtures()
        .join("models")
        .join(folder)
        .join("reference.json");
    let value: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let case = value["encode"]
        .as_array()
        .unwrap()
        .iter()
        .find(|case| case["case"] == name)
        .unwrap_or_else(|| panic!("{folder}: no encode case {name}"))
        .clone();
    let texts = case["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|text| text.as_str().unwrap().to_string())
        .collect();
    (texts, case["output"].as_array().unwrap().clone())
}

#[test]
fn sentence_embeddings_json_equals_sentence_transformers() {
    let folder = model("st-dense-prompts");
    for (case, flags) in [
        ("default", vec![]),
        ("prompt-name-passage", vec!["--prompt-name", "passage"]),
        ("normalize", vec!["--normalize-embeddings"]),
    ] {
        let (texts, expected) = encode_case("st-dense-prompts", case);
        let mut args = vec!["sentence-embeddings", "--model", &folder, "--json"];
        args.extend(flags);
        // One text per stdin line: surrounding spaces are the pipeline's to strip.
        let lines = json_lines(&args, Some(&texts.join("\n")));
        assert_eq!(lines.len(), expected.len(), "{case}: one line per input");
        for (index, (line, expected)) in lines.iter().zip(&expected).enumerate() {
            assert_close(line, expected, &format!("{case}[{index}]"));
        }
    }
}

#[test]
fn sentence_similarity_reads_inference_api_json() {
    let path = fixtures().join("models/st-mean/reference.json");
    let value: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let case = &value["similarity"][0];
    let request = serde_json::json!({
        "source_sentence": case["source_sentence"],
        "sentences": case["sentences"],
    });
    let lines = json_lines(
        &[
            "sentence-similarity",
            "--model",
            &model("st-mean"),
            "--json",
        ],
        Some(&request.to_string()),
    );
    assert_eq!(lines.len(), 1);
    assert_close(&lines[0], &case["output"], "similarity");

    let output = oxformer(
        &["sentence-similarity", "--model", &model("st-mean")],
        Some("{\"source\": \"a\"}"),
    );
    assert_eq!(output.status.code(), Some(2));
    let output = oxformer(
        &["sentence-embeddings", "--model", &model("bert"), "x"],
        None,
    );
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn zero_shot_json_equals_transformers() {
    let nli = model("bert-nli");
    let (_, output) = case("zero-shot-classification", "bert-nli-batch");
    check_texts(
        "zero-shot-classification",
        "zero-shot-classification",
        "bert-nli-batch",
        &[
            "--model",
            &nli,
            "--candidate-labels",
            "politics,sports,technology",
        ],
        items(output),
    );
    let (_, output) = case("zero-shot-classification", "bert-nli-template");
    check_texts(
        "zero-shot-classification",
        "zero-shot-classification",
        "bert-nli-template",
        &[
            "--model",
            &nli,
            "--candidate-labels",
            "politics, sports, technology",
            "--hypothesis-template",
            "The topic of this text is {}.",
        ],
        vec![output],
    );
}

#[test]
fn readable_output_is_a_table() {
    let output = oxformer(
        &[
            "text-classification",
            "--model",
            &model("bert-seqcls-single"),
            "--top-k",
            "all",
            "--threads",
            "1",
            "Hello!",
        ],
        None,
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("> Hello!"), "{stdout}");
    assert!(
        stdout.contains("NEGATIVE") && stdout.contains("POSITIVE"),
        "{stdout}"
    );
}

fn assert_status(args: &[&str], stdin: Option<&str>, code: i32) {
    let output = oxformer(args, stdin);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(code),
        "oxformer {args:?}: {stderr}"
    );
    assert!(
        output.stdout.is_empty() || code == 0,
        "oxformer {args:?} printed a result"
    );
    if code != 0 {
        assert!(
            !stderr.trim().is_empty(),
            "oxformer {args:?}: no message on stderr"
        );
        assert!(
            !stderr.contains("panicked"),
            "oxformer {args:?} panicked: {stderr}"
        );
    }
}

#[test]
fn bad_usage_exits_2() {
    let seqcls = model("bert-seqcls-single");
    assert_status(&[], None, 2);
    assert_status(&["summarize", "--model", &seqcls, "Hi"], None, 2);
    assert_status(&["text-classification", "Hi"], None, 2);
    assert_status(
        &[
            "text-classification",
            "--model",
            &seqcls,
            "--no-such-flag",
            "Hi",
        ],
        None,
        2,
    );
    assert_status(
        &[
            "text-classification",
            "--model",
            &seqcls,
            "--top-k",
            "many",
            "Hi",
        ],
        None,
        2,
    );
    assert_status(
        &[
            "text-classification",
            "--model",
            &seqcls,
            "--function-to-apply",
            "tanh",
            "Hi",
        ],
        None,
        2,
    );
    assert_status(
        &[
            "token-classification",
            "--model",
            &model("bert-tokcls"),
            "--aggregation-strategy",
            "best",
            "Hi",
        ],
        None,
        2,
    );
    assert_status(
        &[
            "zero-shot-classification",
            "--model",
            &model("bert-nli"),
            "Hi",
        ],
        None,
        2,
    );
    assert_status(
        &[
            "question-answering",
            "--model",
            &model("bert-qa"),
            "--question",
            "Where?",
        ],
        None,
        2,
    );
}

#[test]
fn bad_input_exits_2() {
    let seqcls = model("bert-seqcls-single");
    // No input at all, an empty text, a missing model, the wrong model for the task.
    assert_status(&["text-classification", "--model", &seqcls], Some(""), 2);
    assert_status(&["text-classification", "--model", &seqcls, ""], None, 2);
    assert_status(
        &["text-classification", "--model", "/no/such/model", "Hi"],
        None,
        2,
    );
    assert_status(&["fill-mask", "--model", &seqcls, "Hi [MASK]"], None, 2);
    assert_status(
        &["fill-mask", "--model", &model("bert-mlm"), "No mask here."],
        None,
        2,
    );
    assert_status(
        &["question-answering", "--model", &model("bert-qa"), "--json"],
        Some("not json\n"),
        2,
    );
    let long = "I love this movie. ".repeat(100);
    assert_status(&["text-classification", "--model", &seqcls, &long], None, 2);
}

#[test]
fn broken_model_files_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), "{ not json").unwrap();
    let folder = dir.path().display().to_string();
    assert_status(&["text-classification", "--model", &folder, "Hi"], None, 1);
}

#[test]
fn text_generation_json_equals_transformers() {
    let gpt2 = model("gpt2");
    let greedy = [
        "--model",
        gpt2.as_str(),
        "--do-sample",
        "false",
        "--max-new-tokens",
        "8",
    ];
    let (_, output) = case("text-generation", "gpt2-default");
    check_texts(
        "text-generation",
        "text-generation",
        "gpt2-default",
        &greedy,
        vec![output],
    );
    let (_, output) = case("text-generation", "gpt2-list");
    check_texts(
        "text-generation",
        "text-generation",
        "gpt2-list",
        &greedy,
        items(output),
    );
    let mut flags = greedy.to_vec();
    flags.extend(["--num-beams", "3"]);
    let (_, output) = case("text-generation", "gpt2-beam3");
    check_texts(
        "text-generation",
        "text-generation",
        "gpt2-beam3",
        &flags,
        vec![output],
    );
    let mut flags = greedy.to_vec();
    flags.extend([
        "--return-full-text",
        "false",
        "--prefix",
        "Once upon a time. ",
    ]);
    let (_, output) = case("text-generation", "gpt2-prefix-new-text");
    check_texts(
        "text-generation",
        "text-generation",
        "gpt2-prefix-new-text",
        &flags,
        vec![output],
    );
}

#[test]
fn text_generation_streams_the_same_text() {
    let (inputs, output) = case("text-generation", "gpt2-default");
    let prompt = inputs.as_str().unwrap();
    let result = oxformer(
        &[
            "text-generation",
            "--model",
            &model("gpt2"),
            "--do-sample",
            "false",
            "--max-new-tokens",
            "8",
            "--threads",
            "1",
            "--stream",
            prompt,
        ],
        None,
    );
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let streamed = String::from_utf8(result.stdout).unwrap();
    assert_eq!(
        streamed.trim_end_matches('\n'),
        output[0]["generated_text"].as_str().unwrap()
    );
}

/// `case` of `fixtures/pipelines/seq2seq/<model>.json`: (task, inputs, options, output).
fn seq2seq_case(model: &str, name: &str) -> (String, Vec<String>, Value) {
    let path = fixtures().join(format!("pipelines/seq2seq/{model}.json"));
    let value: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let case = &value["cases"][name];
    let inputs = case["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|text| text.as_str().unwrap().to_string())
        .collect();
    (
        case["task"].as_str().unwrap().to_string(),
        inputs,
        case["output"].clone(),
    )
}

#[test]
fn seq2seq_tasks_print_transformers_json_one_line_per_input() {
    for (checkpoint, name, flags) in [
        (
            "t5",
            "translation_en_to_fr-greedy",
            &["--num-beams", "1", "--max-new-tokens", "8"][..],
        ),
        ("t5", "translation-default", &[][..]),
        (
            "t5",
            "summarization-return-2",
            &[
                "--num-beams",
                "3",
                "--num-return-sequences",
                "2",
                "--max-new-tokens",
                "12",
            ][..],
        ),
        (
            "t5",
            "text2text-no-repeat-repetition",
            &[
                "--no-repeat-ngram-size",
                "2",
                "--repetition-penalty",
                "1.5",
                "--max-new-tokens",
                "20",
            ][..],
        ),
        (
            "bart",
            "summarization-greedy-clean-up",
            &[
                "--num-beams",
                "1",
                "--max-new-tokens",
                "12",
                "--min-length",
                "0",
                "--clean-up-tokenization-spaces",
            ][..],
        ),
        (
            "marian",
            "translation-beams-3-penalty",
            &[
                "--num-beams",
                "3",
                "--max-new-tokens",
                "20",
                "--length-penalty",
                "0.7",
                "--no-repeat-ngram-size",
                "2",
            ][..],
        ),
    ] {
        let (task, inputs, output) = seq2seq_case(checkpoint, name);
        let folder = model(checkpoint);
        let mut args = vec![task.as_str(), "--model", folder.as_str(), "--json"];
        args.extend_from_slice(flags);
        let stdin = inputs.join("\n");
        let lines = json_lines(&args, Some(&stdin));
        assert_eq!(Value::Array(lines), output, "{checkpoint}/{name}");
    }
}

#[test]
fn seq2seq_streaming_prints_the_greedy_text_and_errors_are_clear() {
    let (_, inputs, output) = seq2seq_case("marian", "translation-greedy");
    let folder = model("marian");
    let result = oxformer(
        &[
            "translation",
            "--model",
            &folder,
            "--num-beams",
            "1",
            "--max-new-tokens",
            "15",
            "--stream",
            &inputs[0],
        ],
        None,
    );
    assert!(result.status.success());
    assert_eq!(
        String::from_utf8(result.stdout)
            .unwrap()
            .trim_end_matches('\n'),
        output[0]["translation_text"].as_str().unwrap()
    );
    assert_status(
        &["summarization", "--model", &model("gpt2"), "Hello"],
        None,
        2,
    );
    assert_status(
        &[
            "summarization",
            "--model",
            &folder,
            "--early-stopping",
            "maybe",
            "Hello",
        ],
        None,
        2,
    );
}

#[test]
fn stdin_lines_are_answered_as_they_arrive() {
    use std::io::{BufRead, BufReader};
    // One line in, its answer out, while stdin is still open: a Unix filter, not read-to-end.
    let mut child = Command::new(env!("CARGO_BIN_EXE_oxformer"))
        .args([
            "sentiment-analysis",
            "--model",
            &model("bert-seqcls-single"),
            "--json",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let (reply_sender, replies) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        while stdout.read_line(&mut line).unwrap_or(0) > 0 {
            if reply_sender.send(std::mem::take(&mut line)).is_err() {
                break;
            }
        }
    });
    let (_, expected) = case("text-classification", "bert-seqcls-single-batch");
    let (inputs, _) = case("text-classification", "bert-seqcls-single-batch");
    for (index, text) in inputs.as_array().unwrap().iter().take(2).enumerate() {
        writeln!(stdin, "{}", text.as_str().unwrap()).unwrap();
        stdin.flush().unwrap();
        let reply = replies
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("an answer before stdin closes");
        let reply: Value = serde_json::from_str(&reply).unwrap();
        assert_close(&reply, &expected[index], &format!("line {index}"));
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

/// transformers' tokenizer only warns about a T5 input over its `model_max_length` (T5's
/// positions are relative) and the model runs it whole; so does oxformer, with one warning on
/// stderr for the run.
#[test]
fn over_long_t5_input_runs_with_one_warning() {
    let folder = model("t5");
    let long = "word ".repeat(700);
    let stdin = format!("{long}\n{long}\n");
    let args = [
        "text2text-generation",
        "--model",
        folder.as_str(),
        "--json",
        "--num-beams",
        "1",
        "--max-new-tokens",
        "2",
    ];
    let output = oxformer(&args, Some(&stdin));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(
        stderr
            .matches("more than the tokenizer's model_max_length 512")
            .count(),
        1,
        "{stderr}"
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 2);
}
