//! The generation engine on the tiny GPT-2 checkpoints against transformers' `generate()`
//! (`fixtures/generation/<model>/<case>.json`): identical sequences for greedy decoding and beam
//! search (with repetition penalty, no-repeat n-gram, eos, min/max lengths), per-step logits
//! within 1e-4 with and without the KV cache, beam scores within 1e-4; seeded sampling.

mod generation_common;

use std::path::Path;

use generation_common::{Fixture, fixtures, read_json, rows};
use oxformer_models::gpt2::Gpt2LmHeadModel;
use oxformer_pipelines::generation::{
    GenerateOutput, Generation, GenerationConfig, Prompts, greedy_decode,
};
use oxformer_tensor::ThreadPool;
use serde_json::Value;

const TOLERANCE: f32 = 1e-4;

fn model_folder(name: &str) -> std::path::PathBuf {
    fixtures().join("models").join(name)
}

/// Runs one fixture case and checks everything it records.
fn check_case(model: &Gpt2LmHeadModel, model_name: &str, path: &Path) {
    let case = read_json(path);
    let name = path.file_stem().unwrap().to_string_lossy().to_string();
    let prompts =
        Prompts::from_padded(rows(&case["input_ids"]), rows(&case["attention_mask"])).unwrap();
    let mut config = GenerationConfig::from_folder(&model_folder(model_name)).unwrap();
    config.update(case["kwargs"].as_object().unwrap()).unwrap();
    let output = Generation::new(model, &prompts, &config)
        .unwrap()
        .record_logits(true)
        .run()
        .unwrap();
    let expected = rows(&case["sequences"]);
    assert_eq!(
        output.sequences, expected,
        "{model_name}/{name}: sequences differ"
    );
    assert_eq!(
        output
            .new_tokens()
            .iter()
            .map(|tokens| tokens.to_vec())
            .collect::<Vec<_>>(),
        rows(&case["new_tokens"]),
        "{model_name}/{name}: new tokens"
    );
    if let Some(scores) = case.get("sequences_scores") {
        let ours = output.sequences_scores.as_ref().expect("beam scores");
        let reference: Vec<f32> = scores
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(ours.len(), reference.len());
        for (a, b) in ours.iter().zip(&reference) {
            assert!(
                (a - b).abs() <= TOLERANCE,
                "{model_name}/{name}: sequences_scores {ours:?} vs {reference:?}"
            );
        }
    }
    if let Some(Value::String(file)) = case.get("logits_file") {
        let tensors = Fixture::open(&path.with_file_name(file));
        check_steps(
            &format!("{model_name}/{name} logits"),
            &output.logits,
            &tensors,
            "logits",
        );
        if tensors.has("scores") {
            check_steps(
                &format!("{model_name}/{name} scores"),
                &output.scores,
                &tensors,
                "scores",
            );
        }
    }
    println!("{model_name}/{name}: ok");
}

fn check_steps(what: &str, ours: &[ndarray::Array2<f32>], tensors: &Fixture, name: &str) {
    let reference = tensors.floats_dyn(name);
    let shape = reference.shape().to_vec(); // (steps, rows, vocab)
    assert_eq!(ours.len(), shape[0], "{what}: number of steps");
    let mut max = 0.0f32;
    for (step, logits) in ours.iter().enumerate() {
        assert_eq!(
            logits.dim(),
            (shape[1], shape[2]),
            "{what}: step {step} shape"
        );
        for ((row, token), &value) in logits.indexed_iter() {
            let expected = reference[[step, row, token]];
            if expected.is_infinite() || value.is_infinite() {
                assert_eq!(value, expected, "{what}: step {step} [{row}, {token}]");
                continue;
            }
            let difference = (value - expected).abs();
            assert!(
                difference <= TOLERANCE,
                "{what}: step {step} [{row}, {token}]: ours {value}, reference {expected}"
            );
            max = max.max(difference);
        }
    }
    println!("{what}: max difference {max:e}");
}

#[test]
fn every_generation_case_matches_transformers() {
    let mut count = 0;
    for model_name in ["gpt2", "gpt2-scaled-relu", "gpt2-gelu"] {
        let model = Gpt2LmHeadModel::from_folder(&model_folder(model_name)).unwrap();
        let mut paths: Vec<_> = std::fs::read_dir(fixtures().join("generation").join(model_name))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|e| e == "json"))
            .collect();
        paths.sort();
        for path in paths {
            check_case(&model, model_name, &path);
            count += 1;
        }
    }
    assert_eq!(count, 14 + 3 + 3, "every fixture case ran");
}

#[test]
fn cached_and_uncached_decoding_agree() {
    let model = Gpt2LmHeadModel::from_folder(&model_folder("gpt2")).unwrap();
    let case = read_json(&fixtures().join("generation/gpt2/greedy-batch.json"));
    let prompts =
        Prompts::from_padded(rows(&case["input_ids"]), rows(&case["attention_mask"])).unwrap();
    let mut config = GenerationConfig::from_folder(&model_folder("gpt2")).unwrap();
    config.max_new_tokens = Some(12);
    config.pad_token_id = Some(1500);
    let run = |use_cache: bool| -> GenerateOutput {
        let config = GenerationConfig {
            use_cache,
            ..config.clone()
        };
        Generation::new(&model, &prompts, &config)
            .unwrap()
            .record_logits(true)
            .run()
            .unwrap()
    };
    let (cached, uncached) = (run(true), run(false));
    assert_eq!(cached.sequences, uncached.sequences);
    for (a, b) in cached.logits.iter().zip(&uncached.logits) {
        let max = (a - b).iter().fold(0.0f32, |m, d| m.max(d.abs()));
        assert!(
            max <= TOLERANCE,
            "cached vs uncached logits differ by {max}"
        );
    }
}

fn sample(model: &Gpt2LmHeadModel, threads: usize, seed: u64, top_k: usize) -> Vec<Vec<u32>> {
    let prompts =
        Prompts::left_padded(&[vec![39, 599, 75, 78, 11], vec![51, 71, 68]], 1500).unwrap();
    let mut config = GenerationConfig::from_folder(&model_folder("gpt2")).unwrap();
    config.do_sample = true;
    config.top_k = top_k;
    config.top_p = 0.9;
    config.temperature = 1.3;
    config.num_return_sequences = 2;
    config.max_new_tokens = Some(16);
    config.seed = Some(seed);
    let pool = ThreadPool::new(threads).unwrap();
    pool.install(|| {
        Generation::new(model, &prompts, &config)
            .unwrap()
            .run()
            .unwrap()
            .sequences
    })
}

#[test]
fn seeded_sampling_is_reproducible_on_any_thread_count() {
    let model = Gpt2LmHeadModel::from_folder(&model_folder("gpt2")).unwrap();
    let one = sample(&model, 1, 7, 0);
    let two = sample(&model, 2, 7, 0);
    assert_eq!(one, two, "same seed, 1 vs 2 threads");
    assert_eq!(one.len(), 4, "two prompts × num_return_sequences 2");
    let other = sample(&model, 2, 8, 0);
    assert_ne!(one, other, "another seed gives other text");
}

/// Sampling with top_k = 1 keeps only the argmax: it must reproduce greedy decoding.
#[test]
fn sampling_with_top_k_1_is_greedy() {
    let model = Gpt2LmHeadModel::from_folder(&model_folder("gpt2")).unwrap();
    let case = read_json(&fixtures().join("generation/gpt2/greedy-batch.json"));
    let prompts =
        Prompts::from_padded(rows(&case["input_ids"]), rows(&case["attention_mask"])).unwrap();
    let mut config = GenerationConfig::from_folder(&model_folder("gpt2")).unwrap();
    config.update(case["kwargs"].as_object().unwrap()).unwrap();
    config.do_sample = true;
    config.top_k = 1;
    config.seed = Some(3);
    let output = Generation::new(&model, &prompts, &config)
        .unwrap()
        .run()
        .unwrap();
    assert_eq!(output.sequences, rows(&case["sequences"]));
}

#[test]
fn streamed_tokens_are_the_generated_ones() {
    let model = Gpt2LmHeadModel::from_folder(&model_folder("gpt2")).unwrap();
    let case = read_json(&fixtures().join("generation/gpt2/eos-batch.json"));
    let prompts =
        Prompts::from_padded(rows(&case["input_ids"]), rows(&case["attention_mask"])).unwrap();
    let mut config = GenerationConfig::from_folder(&model_folder("gpt2")).unwrap();
    config.update(case["kwargs"].as_object().unwrap()).unwrap();
    let mut columns = Vec::new();
    for tokens in Generation::new(&model, &prompts, &config)
        .unwrap()
        .tokens()
        .unwrap()
    {
        columns.push(tokens.unwrap());
    }
    let expected = rows(&case["new_tokens"]);
    for (row, expected_row) in expected.iter().enumerate() {
        let streamed: Vec<u32> = columns.iter().map(|step| step[row]).collect();
        assert_eq!(&streamed, expected_row, "row {row}");
    }
}

#[test]
fn impossible_lengths_are_errors() {
    let model = Gpt2LmHeadModel::from_folder(&model_folder("gpt2")).unwrap();
    let prompts = Prompts::left_padded(&[vec![1, 2, 3]], 1500).unwrap();
    let mut config = GenerationConfig::from_folder(&model_folder("gpt2")).unwrap();
    config.max_length = Some(3);
    let error = Generation::new(&model, &prompts, &config)
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("max_length"), "{error}");
    config.max_length = None;
    config.max_new_tokens = Some(1000);
    let error = Generation::new(&model, &prompts, &config)
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("positions"), "{error}");
    assert!(Prompts::left_padded(&[vec![]], 0).is_err());
    config.max_new_tokens = Some(4);
    config.stop_strings = vec!["x".into()];
    let error = Generation::new(&model, &prompts, &config)
        .unwrap()
        .run()
        .unwrap_err()
        .to_string();
    assert!(error.contains("stop_strings"), "{error}");
}

/// Beam search with sampling (`do_sample` with `num_beams`): seeded, reproducible, and the
/// returned sequences continue their prompt.
#[test]
fn seeded_beam_sampling_is_reproducible() {
    let model = Gpt2LmHeadModel::from_folder(&model_folder("gpt2")).unwrap();
    let case = read_json(&fixtures().join("generation/gpt2/beam3-batch.json"));
    let prompts =
        Prompts::from_padded(rows(&case["input_ids"]), rows(&case["attention_mask"])).unwrap();
    let mut config = GenerationConfig::from_folder(&model_folder("gpt2")).unwrap();
    config.update(case["kwargs"].as_object().unwrap()).unwrap();
    config.do_sample = true;
    config.num_return_sequences = 2;
    config.seed = Some(11);
    let run = |threads: usize| {
        ThreadPool::new(threads).unwrap().install(|| {
            Generation::new(&model, &prompts, &config)
                .unwrap()
                .run()
                .unwrap()
        })
    };
    let (one, two) = (run(1), run(2));
    assert_eq!(one.sequences, two.sequences);
    assert_eq!(one.sequences_scores, two.sequences_scores);
    assert_eq!(one.sequences.len(), 3 * 2);
    let input = rows(&case["input_ids"]);
    for (index, sequence) in one.sequences.iter().enumerate() {
        assert_eq!(&sequence[..one.prompt_length], &input[index / 2][..]);
    }
}

/// The benchmark loop is greedy decoding: the reference's greedy tokens.
#[test]
fn greedy_decode_reproduces_generate() {
    let model = Gpt2LmHeadModel::from_folder(&model_folder("gpt2")).unwrap();
    let case = read_json(&fixtures().join("generation/gpt2/greedy.json"));
    let prompt = &rows(&case["input_ids"])[0];
    let expected = &rows(&case["new_tokens"])[0];
    assert_eq!(
        &greedy_decode(&model, prompt, expected.len()).unwrap(),
        expected
    );
}

/// [`Generation::with_logprobs`] on greedy decoding: the same tokens as without it, and at each
/// step the chosen token's log-probability and the most likely tokens are `log_softmax` of the
/// model's own logits, from one forward pass over the prompt and the generated tokens.
#[test]
fn step_logprobs_are_the_log_softmax_of_the_model_logits() {
    use oxformer_models::gpt2::Gpt2Input;

    let model = Gpt2LmHeadModel::from_folder(&model_folder("gpt2")).unwrap();
    let prompt = vec![39, 599, 75, 78, 11];
    let prompts = Prompts::left_padded(std::slice::from_ref(&prompt), 1500).unwrap();
    let config = GenerationConfig {
        max_new_tokens: Some(8),
        eos_token_id: Vec::new(),
        pad_token_id: Some(0),
        ..GenerationConfig::default()
    };
    let plain = Generation::new(&model, &prompts, &config)
        .unwrap()
        .run()
        .unwrap()
        .new_tokens()[0]
        .to_vec();
    let top = 3;
    let mut stream = Generation::new(&model, &prompts, &config)
        .unwrap()
        .with_logprobs(top)
        .tokens()
        .unwrap();
    let (mut tokens, mut steps) = (Vec::new(), Vec::new());
    while let Some(step) = stream.next() {
        tokens.push(step.unwrap()[0]);
        steps.push(stream.logprobs()[0].clone());
    }
    assert_eq!(tokens, plain);

    let ids: Vec<u32> = prompt.iter().chain(&tokens).copied().collect();
    let input_ids = ndarray::Array2::from_shape_vec((1, ids.len()), ids).unwrap();
    let input = Gpt2Input {
        input_ids: input_ids.view(),
        position_ids: None,
        attention_mask: None,
    };
    let (logits, _) = model.forward(&input, None, false).unwrap(); // (1, seq, vocab)
    for (step, (token, logprobs)) in tokens.iter().zip(&steps).enumerate() {
        // The logits that predict new token `step`: those of the position before it.
        let row = logits.slice(ndarray::s![0, prompt.len() - 1 + step, ..]);
        let max = row.fold(f64::NEG_INFINITY, |m, &x| m.max(f64::from(x)));
        let log_sum = max
            + row
                .iter()
                .map(|&x| (f64::from(x) - max).exp())
                .sum::<f64>()
                .ln();
        let expected = |id: u32| (f64::from(row[id as usize]) - log_sum) as f32;
        let difference = (logprobs.logprob - expected(*token)).abs();
        assert!(
            difference <= TOLERANCE,
            "step {step}: differs by {difference}"
        );
        let mut ranked: Vec<u32> = (0..row.len() as u32).collect();
        ranked.sort_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]).then(a.cmp(&b)));
        let top_ids: Vec<u32> = logprobs.top.iter().map(|&(id, _)| id).collect();
        assert_eq!(top_ids, ranked[..top], "step {step}");
        assert_eq!(top_ids[0], *token, "greedy takes the most likely token");
        for &(id, value) in &logprobs.top {
            assert!(
                (value - expected(id)).abs() <= TOLERANCE,
                "step {step}, id {id}"
            );
        }
    }
}
