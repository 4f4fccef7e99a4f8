//! GPT-2 against transformers' outputs on the tiny random checkpoints in `fixtures/models/gpt2*`:
//! every hidden state and the logits, on a left-padded batch, with and without a KV cache; the
//! blocks one by one through their public `forward`s.

use std::path::PathBuf;

use ndarray::{Array2, Array3, ArrayD, ArrayView3, Ix3, IxDyn, s};
use oxformer_models::Error;
use oxformer_models::gpt2::{Gpt2Attention, Gpt2Block, Gpt2Input, Gpt2LmHeadModel, Gpt2Mlp};
use oxformer_nn::{LayerNorm, Weights};
use safetensors::{Dtype, SafeTensors};

const TOLERANCE: f32 = 1e-4;
const MODELS: [&str; 3] = ["gpt2", "gpt2-scaled-relu", "gpt2-gelu"];

fn folder(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/models")
        .join(name)
}

/// The reference tensors of a folder: ints as i64, floats as f32.
struct Reference {
    bytes: Vec<u8>,
}

impl Reference {
    fn open(name: &str) -> Self {
        let path = folder(name).join("reference.safetensors");
        Self {
            bytes: std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        }
    }

    fn tensors(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).expect("reference.safetensors parses")
    }

    fn ints(&self, name: &str) -> Array2<i64> {
        let tensors = self.tensors();
        let view = tensors.tensor(name).expect(name);
        assert_eq!(view.dtype(), Dtype::I64, "{name}");
        let values = view
            .data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
            .collect();
        Array2::from_shape_vec((view.shape()[0], view.shape()[1]), values).unwrap()
    }

    fn floats(&self, name: &str) -> ArrayD<f32> {
        let tensors = self.tensors();
        let view = tensors.tensor(name).expect(name);
        assert_eq!(view.dtype(), Dtype::F32, "{name}");
        let values = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        ArrayD::from_shape_vec(IxDyn(view.shape()), values).unwrap()
    }
}

/// Max |ours − reference| over the positions where `mask` is 1; panics with the first
/// differing value when it exceeds the tolerance.
fn compare_attended(
    what: &str,
    ours: ArrayView3<f32>,
    reference: ArrayView3<f32>,
    mask: &Array2<i64>,
) {
    assert_eq!(ours.shape(), reference.shape(), "{what}: shape");
    let mut max = 0.0f32;
    for ((b, t, j), &value) in ours.indexed_iter() {
        if mask[[b, t]] == 0 {
            continue;
        }
        let expected = reference[[b, t, j]];
        let difference = (value - expected).abs();
        assert!(
            difference <= TOLERANCE,
            "{what}: first difference at [{b}, {t}, {j}]: ours {value}, reference {expected}"
        );
        max = max.max(difference);
    }
    println!("{what}: max difference {max:e}");
}

fn to_u32(values: &Array2<i64>) -> Array2<u32> {
    values.mapv(|v| u32::try_from(v).unwrap())
}

/// A fixture's batch: ids, positions and attention mask, as `forward` takes them.
struct Inputs {
    mask: Array2<i64>,
    ids: Array2<u32>,
    positions: Array2<u32>,
    mask_f32: Array2<f32>,
}

impl Inputs {
    fn of(reference: &Reference) -> Self {
        let mask = reference.ints("attention_mask");
        Inputs {
            ids: to_u32(&reference.ints("input_ids")),
            positions: to_u32(&reference.ints("position_ids")),
            mask_f32: mask.mapv(|v| v as f32),
            mask,
        }
    }

    fn input(&self) -> Gpt2Input<'_> {
        Gpt2Input {
            input_ids: self.ids.view(),
            position_ids: Some(self.positions.view()),
            attention_mask: Some(self.mask_f32.view()),
        }
    }
}

#[test]
fn every_hidden_state_and_logits_match_transformers() {
    for name in MODELS {
        let model = Gpt2LmHeadModel::from_folder(&folder(name)).unwrap();
        let reference = Reference::open(name);
        let inputs = Inputs::of(&reference);
        let (mask, input) = (&inputs.mask, inputs.input());
        let (logits, output) = model.forward(&input, None, true).unwrap();
        assert_eq!(output.hidden_states.len(), model.config().n_layer + 1);
        for (index, hidden) in output.hidden_states.iter().enumerate() {
            let expected = reference.floats(&format!("hidden_states.{index}"));
            let expected = expected.into_dimensionality::<ndarray::Ix3>().unwrap();
            compare_attended(
                &format!("{name} hidden_states.{index}"),
                hidden.view(),
                expected.view(),
                mask,
            );
        }
        let expected = reference
            .floats("logits")
            .into_dimensionality::<ndarray::Ix3>()
            .unwrap();
        compare_attended(
            &format!("{name} logits"),
            logits.view(),
            expected.view(),
            mask,
        );
    }
}

/// The prompt fed in two pieces through the cache gives the same logits as all at once:
/// positions continue from the cache.
#[test]
fn cached_chunks_match_transformers() {
    for name in MODELS {
        let model = Gpt2LmHeadModel::from_folder(&folder(name)).unwrap();
        let reference = Reference::open(name);
        let Inputs {
            mask,
            ids,
            positions,
            mask_f32,
        } = Inputs::of(&reference);
        let expected = reference
            .floats("logits")
            .into_dimensionality::<ndarray::Ix3>()
            .unwrap();
        let (batch, seq) = ids.dim();
        let mut cache = model.new_cache(batch, seq + 4);
        // one chunk, then one token at a time: the prefill and decode paths.
        let split = seq - 3;
        let mut start = 0;
        for end in [split, split + 1, split + 2, seq] {
            let input = Gpt2Input {
                input_ids: ids.slice(s![.., start..end]),
                position_ids: Some(positions.slice(s![.., start..end])),
                attention_mask: Some(mask_f32.slice(s![.., ..end])),
            };
            let (logits, _) = model.forward(&input, Some(&mut cache), false).unwrap();
            compare_attended(
                &format!("{name} logits {start}..{end} with cache"),
                logits.view(),
                expected.slice(s![.., start..end, ..]),
                &mask.slice(s![.., start..end]).to_owned(),
            );
            start = end;
        }
        assert_eq!(cache.len(), seq);
    }
}

#[test]
fn forward_last_equals_the_last_position_of_forward() {
    let model = Gpt2LmHeadModel::from_folder(&folder("gpt2")).unwrap();
    let reference = Reference::open("gpt2");
    let inputs = Inputs::of(&reference);
    let (ids, input) = (&inputs.ids, inputs.input());
    let last = model.forward_last(&input, None).unwrap();
    let expected = reference.floats("logits");
    let seq = ids.ncols();
    for ((b, v), &value) in last.indexed_iter() {
        let reference = expected[[b, seq - 1, v]];
        assert!(
            (value - reference).abs() <= TOLERANCE,
            "[{b}, {v}]: {value} vs {reference}"
        );
    }
}

#[test]
fn bad_inputs_are_errors_naming_the_layer() {
    let model = Gpt2LmHeadModel::from_folder(&folder("gpt2")).unwrap();
    let config = model.config().clone();
    let too_long = Array2::<u32>::zeros((1, config.n_positions + 1));
    let error = model
        .forward_last(
            &Gpt2Input {
                input_ids: too_long.view(),
                position_ids: None,
                attention_mask: None,
            },
            None,
        )
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("transformer.wpe") && error.contains("n_positions"),
        "{error}"
    );

    let bad_id = Array2::from_elem((1, 2), config.vocab_size as u32);
    let error = model
        .forward_last(
            &Gpt2Input {
                input_ids: bad_id.view(),
                position_ids: None,
                attention_mask: None,
            },
            None,
        )
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("transformer.wte") && error.contains("vocab_size"),
        "{error}"
    );

    let ids = Array2::<u32>::zeros((1, 3));
    let mut small = model.new_cache(1, 2);
    let error = model
        .forward_last(
            &Gpt2Input {
                input_ids: ids.view(),
                position_ids: None,
                attention_mask: None,
            },
            Some(&mut small),
        )
        .unwrap_err()
        .to_string();
    assert!(error.contains("KV cache"), "{error}");

    let wrong_mask = Array2::<f32>::ones((1, 2));
    let error = model
        .forward_last(
            &Gpt2Input {
                input_ids: ids.view(),
                position_ids: None,
                attention_mask: Some(wrong_mask.view()),
            },
            None,
        )
        .unwrap_err()
        .to_string();
    assert!(error.contains("attention_mask"), "{error}");
}

#[test]
fn a_folder_of_another_model_type_is_refused() {
    let error = Gpt2LmHeadModel::from_folder(&folder("bert"))
        .err()
        .expect("a BERT folder is not GPT-2")
        .to_string();
    assert!(
        error.contains("model_type") && error.contains("gpt2"),
        "{error}"
    );
}

/// The greedy shortcut (`greedy_token`, the 8-bit screen of the LM head) picks, at every attended
/// position of every fixture model, the first largest of our f32 logits, and the token of
/// transformers' logits wherever their top two are further apart than the tolerance: on every
/// instruction set this CPU runs, each in a child process capped by `OXFORMER_ISA` (the kernels
/// read it once per process).
#[test]
fn greedy_token_is_the_argmax_of_the_logits() {
    if let Ok(name) = std::env::var("OXFORMER_TEST_ISA") {
        assert_eq!(
            oxformer_tensor::isa().name(),
            name,
            "the child's instruction set"
        );
        greedy_token_case();
        return;
    }
    let executable = std::env::current_exe().expect("test executable");
    for isa in oxformer_tensor::Isa::ALL {
        if !isa.available() {
            println!("greedy_token: skipped {isa} (not supported by this CPU)");
            continue;
        }
        let output = std::process::Command::new(&executable)
            .args([
                "--exact",
                "greedy_token_is_the_argmax_of_the_logits",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("OXFORMER_ISA", isa.name())
            .env("OXFORMER_TEST_ISA", isa.name())
            .env_remove("OXFORMER_GEMM_PATH")
            .output()
            .expect("run the test executable");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{isa}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            stdout.contains(&format!("greedy_token: instruction set {isa},")),
            "{isa}: the child ran no case: {stdout}"
        );
        println!("greedy_token: ran {isa}");
    }
}

fn greedy_token_case() {
    // the screen runs on AVX-512 and on AVX2 + FMA (with our GEMM), and declines otherwise
    let screened = oxformer_tensor::isa() != oxformer_tensor::Isa::Scalar
        && matches!(
            oxformer_tensor::gemm_path(),
            oxformer_tensor::GemmPath::Avx512 | oxformer_tensor::GemmPath::Avx2
        );
    println!(
        "greedy_token: instruction set {}, screen expected: {screened}",
        oxformer_tensor::isa()
    );
    for name in MODELS {
        let model = Gpt2LmHeadModel::from_folder(&folder(name)).unwrap();
        let reference = Reference::open(name);
        let inputs = Inputs::of(&reference);
        let (mask, input) = (&inputs.mask, inputs.input());
        let (_, output) = model.forward(&input, None, false).unwrap();
        let expected = reference.floats("logits");
        let first_largest = |row: &[f32]| {
            (0..row.len()).fold(0, |best, j| if row[j] > row[best] { j } else { best })
        };
        let mut decided = 0;
        for ((b, t), &attended) in mask.indexed_iter() {
            if attended == 0 {
                continue;
            }
            let hidden = output.last_hidden_state.slice(s![b, t, ..]).to_vec();
            let Some(token) = model.greedy_token(&hidden).unwrap() else {
                assert!(!screened, "{name} [{b}, {t}]: the screen declined");
                continue;
            };
            decided += 1;
            let row = Array2::from_shape_vec((1, hidden.len()), hidden).unwrap();
            let logits = model.logits(row.view()).unwrap();
            let ours = first_largest(logits.row(0).as_slice().unwrap());
            assert_eq!(token as usize, ours, "{name} [{b}, {t}]");
            let theirs: Vec<f32> = expected.slice(s![b, t, ..]).to_vec();
            let top = first_largest(&theirs);
            let runner_up = theirs
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != top)
                .map(|(_, &v)| v)
                .fold(f32::NEG_INFINITY, f32::max);
            if theirs[top] - runner_up > 2.0 * TOLERANCE {
                assert_eq!(
                    token as usize, top,
                    "{name} [{b}, {t}]: transformers' argmax"
                );
            }
        }
        assert!(!screened || decided > 0, "{name}: nothing screened");
    }
}

/// Each block through its public `forward` turns transformers' hidden state before it into the
/// one after it (the last one followed by `ln_f`, as transformers reports it); so do its
/// attention and MLP put together by hand with `ln_1`, `ln_2` and the residuals.
#[test]
fn blocks_one_by_one_match_transformers() {
    for name in MODELS {
        let model = Gpt2LmHeadModel::from_folder(&folder(name)).unwrap();
        let config = model.config().clone();
        let weights = Weights::from_folder(&folder(name)).unwrap();
        let weights = weights.sub_if_present("transformer");
        let reference = Reference::open(name);
        let inputs = Inputs::of(&reference);
        let hidden_state = |index: usize| {
            reference
                .floats(&format!("hidden_states.{index}"))
                .into_dimensionality::<Ix3>()
                .unwrap()
        };
        let (dim, eps) = (config.n_embd, config.layer_norm_epsilon);
        let layer_norm = |prefix: &Weights, hidden: &Array3<f32>| {
            let norm = LayerNorm::load(prefix, dim, eps).unwrap();
            let (batch, seq, _) = hidden.dim();
            let rows = hidden
                .view()
                .into_shape_with_order((batch * seq, dim))
                .unwrap();
            let normed = norm.forward(rows, None).unwrap();
            normed.into_shape_with_order((batch, seq, dim)).unwrap()
        };
        let ln_f = weights.sub("ln_f");
        let mask = Some(inputs.mask_f32.view());
        for index in 0..config.n_layer {
            let prefix = weights.sub("h").sub(index);
            let input = hidden_state(index);
            let expected = hidden_state(index + 1);
            let last = index + 1 == config.n_layer;
            let after = |output: Array3<f32>| {
                if last {
                    layer_norm(&ln_f, &output)
                } else {
                    output
                }
            };

            let block = Gpt2Block::load(&prefix, &config).unwrap();
            let output = after(block.forward(input.view(), mask).unwrap());
            compare_attended(
                &format!("{name} block {index}"),
                output.view(),
                expected.view(),
                &inputs.mask,
            );

            let attention = Gpt2Attention::load(&prefix.sub("attn"), &config).unwrap();
            let mlp = Gpt2Mlp::load(&prefix.sub("mlp"), &config).unwrap();
            let normed = layer_norm(&prefix.sub("ln_1"), &input);
            let attended = &input + &attention.forward(normed.view(), mask).unwrap();
            let normed = layer_norm(&prefix.sub("ln_2"), &attended);
            let output = after(&attended + &mlp.forward(normed.view()).unwrap());
            compare_attended(
                &format!("{name} block {index} from its parts"),
                output.view(),
                expected.view(),
                &inputs.mask,
            );
        }
    }
}

/// A block's bad inputs are the caller's errors, naming the block.
#[test]
fn blocks_reject_bad_masks_widths_and_empty_batches() {
    let model = Gpt2LmHeadModel::from_folder(&folder("gpt2")).unwrap();
    let config = model.config().clone();
    let weights = Weights::from_folder(&folder("gpt2")).unwrap();
    let prefix = weights.sub_if_present("transformer").sub("h").sub(0);
    let block = Gpt2Block::load(&prefix, &config).unwrap();
    let attention = Gpt2Attention::load(&prefix.sub("attn"), &config).unwrap();
    let mlp = Gpt2Mlp::load(&prefix.sub("mlp"), &config).unwrap();
    let hidden = Array3::<f32>::zeros((2, 3, config.n_embd));

    let wrong_mask = Array2::<f32>::ones((2, 4));
    for (what, error) in [
        (
            "Gpt2Block",
            block.forward(hidden.view(), Some(wrong_mask.view())),
        ),
        (
            "Gpt2Attention",
            attention.forward(hidden.view(), Some(wrong_mask.view())),
        ),
    ] {
        let error = error.unwrap_err();
        assert!(
            matches!(&error, Error::Input { model, .. } if model == what),
            "{what}: {error}"
        );
    }

    let empty = Array3::<f32>::zeros((0, 3, config.n_embd));
    for error in [
        block.forward(empty.view(), None),
        attention.forward(empty.view(), None),
    ] {
        assert!(matches!(error, Err(Error::Input { .. })), "{error:?}");
    }

    let narrow = Array3::<f32>::zeros((2, 3, config.n_embd - 1));
    for (what, result) in [
        ("block", block.forward(narrow.view(), None)),
        ("attention", attention.forward(narrow.view(), None)),
        ("mlp", mlp.forward(narrow.view())),
    ] {
        assert!(result.is_err(), "{what} took a width of n_embd - 1");
    }
}
