//! The targets: one per parser of outside bytes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arbitrary::{Result, Unstructured};
use oxformer_models::ModelConfig;
use oxformer_nn::SafeTensors;
use oxformer_pipelines::generation::{GenerationConfig, OPTION_NAMES};
use oxformer_pipelines::text_generation::TextGenerationPipeline;
use oxformer_pipelines::{Pipeline, Task, pipeline};
use oxformer_tokenizer::{EncodeOptions, Padding, Side, Tokenizer, Truncation};
use serde_json::{Map, Value, json};

use crate::{Target, input, json};

/// Every target's name, in the order `cargo xtask fuzz` runs them.
pub const TARGETS: [&str; 8] = [
    "safetensors",
    "shard_index",
    "config",
    "model_folder",
    "tokenizer",
    "generation_config",
    "pipeline_call",
    "cli_stdin",
];

/// The target `name`, set up with the workspace at `root` (fixtures, the CLI binary).
///
/// # Panics
/// For a name that is not in [`TARGETS`], or when the fixtures cannot be read.
pub fn make(name: &str, root: &Path) -> Box<dyn Target> {
    let scratch = tempfile::tempdir().expect("a scratch folder");
    let fixtures = crate::fixtures(root).join("models");
    match name {
        "safetensors" => Box::new(SafetensorsFile { scratch, fixtures }),
        "shard_index" => Box::new(ShardIndex { scratch, fixtures }),
        "config" => Box::new(Config { fixtures }),
        "model_folder" => Box::new(ModelFolder { scratch, fixtures }),
        "tokenizer" => Box::new(TokenizerFolder { scratch, fixtures }),
        "generation_config" => Box::new(GenerationFolder { scratch, fixtures }),
        "pipeline_call" => Box::new(PipelineCall::new(&fixtures)),
        "cli_stdin" => Box::new(CliStdin::new(root, fixtures)),
        other => panic!("no fuzz target `{other}`; targets: {}", TARGETS.join(", ")),
    }
}

/// An input split into its mode and body.
enum Input<'a> {
    Raw(&'a [u8]),
    Structured(Unstructured<'a>),
}

fn split(data: &[u8]) -> Input<'_> {
    match data.split_first() {
        Some((mode, body)) if mode & 1 == 1 => Input::Structured(Unstructured::new(body)),
        Some((_, body)) => Input::Raw(body),
        None => Input::Raw(&[]),
    }
}

/// An empty folder `name` in `scratch` (emptied if it was used before).
fn fresh_folder(scratch: &tempfile::TempDir, name: &str) -> PathBuf {
    let dir = scratch.path().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("the scratch folder is writable");
    dir
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).expect("the scratch folder is writable");
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn fixture_configs(fixtures: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(fixtures)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok().map(|entry| entry.path().join("config.json")))
                .filter(|path| path.is_file())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

// --- safetensors -------------------------------------------------------------------------------

const DTYPES: &[&str] = &[
    "F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "U16", "U32", "U64", "BOOL",
    "F8_E4M3", "F8_E5M2", "F4", "XX", "",
];

fn dtype_size(dtype: &str) -> u64 {
    match dtype {
        "F64" | "I64" | "U64" => 8,
        "F32" | "I32" | "U32" => 4,
        "F16" | "BF16" | "I16" | "U16" => 2,
        _ => 1,
    }
}

/// A safetensors file whose header mostly agrees with its data: tensors `names` (or made-up
/// ones), shapes from tiny to 2^60 elements, offsets that sometimes overlap or leave gaps, a
/// header length that sometimes lies.
fn safetensors_bytes(u: &mut Unstructured<'_>, names: &[String]) -> Result<Vec<u8>> {
    let count = if names.is_empty() {
        u.int_in_range(0..=5)?
    } else {
        names.len()
    };
    let mut header = Map::new();
    let mut offset = 0u64;
    for index in 0..count {
        let name = match names.get(index) {
            Some(name) => name.clone(),
            None if u.ratio(1, 8)? => json::string(u)?,
            None => format!("layer.{index}.weight"),
        };
        let dtype = if u.ratio(2, 3)? {
            *u.choose(&["F32", "F16", "BF16"])?
        } else {
            *u.choose(DTYPES)?
        };
        let dims = u.int_in_range(0..=4)?;
        let mut shape = Vec::with_capacity(dims);
        for _ in 0..dims {
            shape.push(if u.ratio(1, 16)? {
                *u.choose(&[0u64, 1 << 20, 1 << 31, 1 << 32, 1 << 60, u64::MAX])?
            } else {
                u.int_in_range(0..=9)?
            });
        }
        let elements = shape
            .iter()
            .try_fold(1u64, |product, &dim| product.checked_mul(dim));
        let size = elements
            .and_then(|elements| elements.checked_mul(dtype_size(dtype)))
            .unwrap_or(u64::MAX);
        let start = if u.ratio(9, 10)? {
            offset
        } else {
            u.arbitrary()?
        };
        let end = if u.ratio(9, 10)? {
            start.saturating_add(size)
        } else {
            u.arbitrary()?
        };
        offset = end;
        let mut entry = json!({ "dtype": dtype, "shape": shape, "data_offsets": [start, end] });
        if u.ratio(1, 20)? {
            json::mutate(u, &mut entry)?;
        }
        header.insert(name, entry);
    }
    if u.ratio(1, 4)? {
        header.insert(
            "__metadata__".to_string(),
            Value::Object(json::object_with(u, &["format", "total_size"])?),
        );
    }
    let mut text = serde_json::to_string(&header).unwrap_or_default();
    if u.ratio(1, 4)? {
        // writers pad the header with spaces to 8 bytes
        text.push_str(&" ".repeat(u.int_in_range(0..=7)?));
    }
    let data_length = if u.ratio(9, 10)? {
        offset.min(1 << 16) as usize
    } else {
        u.int_in_range(0..=4096)?
    };
    let claimed = if u.ratio(9, 10)? {
        text.len() as u64
    } else {
        *u.choose(&[
            0,
            1,
            text.len() as u64 - 1.min(text.len() as u64),
            text.len() as u64 + 1,
            1 << 31,
            1 << 60,
            u64::MAX,
        ])?
    };
    let mut bytes = Vec::with_capacity(8 + text.len() + data_length);
    bytes.extend_from_slice(&claimed.to_le_bytes());
    bytes.extend_from_slice(text.as_bytes());
    let fill = u.arbitrary::<u8>()?;
    bytes.resize(8 + text.len() + data_length, fill);
    Ok(bytes)
}

/// Reads every tensor of an opened checkpoint, as a model would.
fn read_all(checkpoint: &SafeTensors) {
    let names: Vec<String> = checkpoint.names().map(str::to_string).collect();
    for name in names {
        if let Ok(tensor) = checkpoint.tensor(&name) {
            let sum: f32 = tensor.as_slice().iter().take(64).sum();
            std::hint::black_box(sum);
        }
    }
}

struct SafetensorsFile {
    scratch: tempfile::TempDir,
    fixtures: PathBuf,
}

impl Target for SafetensorsFile {
    fn run(&mut self, data: &[u8]) -> bool {
        let path = self.scratch.path().join("model.safetensors");
        match split(data) {
            Input::Raw(bytes) => write(&path, bytes),
            Input::Structured(mut u) => {
                let u = &mut u;
                // running out of bytes just ends the input early
                let _ = (|| -> Result<()> {
                    write(&path, &safetensors_bytes(u, &[])?);
                    Ok(())
                })();
            }
        }
        let opened = SafeTensors::open_file(&path);
        if let Ok(checkpoint) = &opened {
            read_all(checkpoint);
        }
        opened.is_ok()
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        let small = self
            .fixtures
            .join("xlmr-qa-sharded/model-00003-of-00003.safetensors");
        vec![input(0, &read(&small))]
    }
}

// --- the shard index ---------------------------------------------------------------------------

const SHARD_NAMES: &[&str] = &[
    "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors",
    "model.safetensors",
    "missing.safetensors",
    "../escape.safetensors",
    "/absolute.safetensors",
    "sub/shard.safetensors",
    "model.safetensors.index.json",
    "",
];

struct ShardIndex {
    scratch: tempfile::TempDir,
    fixtures: PathBuf,
}

impl Target for ShardIndex {
    fn run(&mut self, data: &[u8]) -> bool {
        let dir = fresh_folder(&self.scratch, "sharded");
        let index_path = dir.join(oxformer_nn::WEIGHTS_INDEX_FILE);
        match split(data) {
            Input::Raw(bytes) => {
                write(&index_path, bytes);
                // the fixture's shards, for an index that names them
                for shard in 1..=3 {
                    let name = format!("model-0000{shard}-of-00003.safetensors");
                    let source = self.fixtures.join("xlmr-qa-sharded").join(&name);
                    let _ = std::os::unix::fs::symlink(source, dir.join(name));
                }
            }
            Input::Structured(mut u) => {
                let u = &mut u;
                // running out of bytes just ends the input early
                let _ = (|| -> Result<()> {
                    let count = u.int_in_range(0..=6)?;
                    let mut map = Map::new();
                    let mut shards: Vec<(String, Vec<String>)> = Vec::new();
                    for index in 0..count {
                        let tensor = format!("layer.{index}.weight");
                        let shard = if u.ratio(3, 4)? {
                            u.choose(&SHARD_NAMES[..2])?
                        } else {
                            u.choose(SHARD_NAMES)?
                        }
                        .to_string();
                        map.insert(tensor.clone(), Value::String(shard.clone()));
                        match shards.iter_mut().find(|(name, _)| *name == shard) {
                            Some((_, tensors)) => tensors.push(tensor),
                            None => shards.push((shard, vec![tensor])),
                        }
                    }
                    let mut index = json!({ "weight_map": map });
                    if u.ratio(1, 2)? {
                        index["metadata"] = json!({ "total_size": json::number(u)? });
                    }
                    if u.ratio(1, 10)? {
                        json::mutate(u, &mut index)?;
                    }
                    write(&index_path, index.to_string().as_bytes());
                    for (shard, tensors) in shards {
                        let plain =
                            !shard.is_empty() && !shard.contains('/') && !shard.ends_with(".json");
                        if plain && u.ratio(7, 8)? {
                            let named = if u.ratio(3, 4)? { tensors } else { Vec::new() };
                            write(&dir.join(&shard), &safetensors_bytes(u, &named)?);
                        }
                    }
                    Ok(())
                })();
            }
        }
        let opened = SafeTensors::open_folder(&dir);
        if let Ok(checkpoint) = &opened {
            read_all(checkpoint);
        }
        opened.is_ok()
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        let index = self
            .fixtures
            .join("xlmr-qa-sharded")
            .join(oxformer_nn::WEIGHTS_INDEX_FILE);
        vec![input(0, &read(&index))]
    }
}

// --- config.json -------------------------------------------------------------------------------

/// Fields of the supported configs (BERT, RoBERTa, XLM-R, DistilBERT, GPT-2) and the common ones.
const CONFIG_FIELDS: &[&str] = &[
    "model_type",
    "architectures",
    "hidden_size",
    "num_attention_heads",
    "num_hidden_layers",
    "intermediate_size",
    "hidden_act",
    "vocab_size",
    "max_position_embeddings",
    "type_vocab_size",
    "layer_norm_eps",
    "position_embedding_type",
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
    "id2label",
    "label2id",
    "num_labels",
    "problem_type",
    "torch_dtype",
    "tie_word_embeddings",
    "dim",
    "n_heads",
    "n_layers",
    "hidden_dim",
    "activation",
    "sinusoidal_pos_embds",
    "n_embd",
    "n_head",
    "n_layer",
    "n_inner",
    "n_positions",
    "n_ctx",
    "activation_function",
    "layer_norm_epsilon",
    "scale_attn_weights",
    "scale_attn_by_inverse_layer_idx",
    "reorder_and_upcast_attn",
    "summary_type",
    "task_specific_params",
];

/// A config.json: a fixture's with a few fields changed, or one built from the known fields.
fn config_value(u: &mut Unstructured<'_>, configs: &[PathBuf]) -> Result<Value> {
    if !configs.is_empty() && u.ratio(2, 3)? {
        let path = u.choose(configs)?;
        let mut value: Value = serde_json::from_slice(&read(path)).unwrap_or(Value::Null);
        if u.ratio(1, 2)?
            && let Value::Object(map) = &mut value
        {
            // a field that sizes the model set to an edge value: parsed, then used
            let field = *u.choose(CONFIG_FIELDS)?;
            map.insert(field.to_string(), json::number(u)?);
        } else {
            json::mutate(u, &mut value)?;
        }
        return Ok(value);
    }
    let mut map = json::object_with(u, CONFIG_FIELDS)?;
    let model_type = *u.choose(&ModelConfig::SUPPORTED_MODEL_TYPES)?;
    map.insert("model_type".to_string(), Value::from(model_type));
    Ok(Value::Object(map))
}

/// Everything a caller may ask a parsed config.
fn exercise(config: &ModelConfig) {
    let common = config.common();
    std::hint::black_box((
        config.model_type(),
        config.hidden_size(),
        config.tie_word_embeddings(),
        common.num_labels(),
        common.label(0),
        common.label(usize::MAX),
        common.eos_token_id(),
    ));
    match config {
        ModelConfig::Bert(bert) | ModelConfig::Roberta(bert) | ModelConfig::XlmRoberta(bert) => {
            std::hint::black_box(bert.head_dim());
        }
        ModelConfig::DistilBert(distilbert) => {
            std::hint::black_box(distilbert.head_dim());
        }
        ModelConfig::Gpt2(gpt2) => {
            std::hint::black_box((gpt2.head_dim(), gpt2.inner_dim()));
        }
        ModelConfig::T5(t5) => {
            std::hint::black_box(t5.inner_dim());
        }
        ModelConfig::Bart(bart) => {
            std::hint::black_box(bart);
        }
        ModelConfig::Marian(marian) => {
            std::hint::black_box(marian.target_vocab_size());
        }
    }
}

struct Config {
    fixtures: PathBuf,
}

impl Target for Config {
    fn run(&mut self, data: &[u8]) -> bool {
        let configs = fixture_configs(&self.fixtures);
        let mut text = String::new();
        match split(data) {
            Input::Raw(bytes) => text = String::from_utf8_lossy(bytes).into_owned(),
            Input::Structured(mut u) => {
                let u = &mut u;
                // running out of bytes just ends the input early
                let _ = (|| -> Result<()> {
                    text = config_value(u, &configs)?.to_string();
                    Ok(())
                })();
            }
        }
        let parsed = ModelConfig::from_json_str(&text, "config.json");
        if let Ok(config) = &parsed {
            exercise(config);
        }
        parsed.is_ok()
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        fixture_configs(&self.fixtures)
            .iter()
            .map(|path| input(0, &read(path)))
            .collect()
    }
}

// --- a whole model folder with a fuzzed config.json --------------------------------------------

/// Fixture folders and the task their head answers.
const MODEL_FOLDERS: &[(&str, Option<Task>)] = &[
    ("bert-seqcls-single", Some(Task::TextClassification)),
    ("bert-tokcls", Some(Task::TokenClassification)),
    ("distilbert-qa", Some(Task::QuestionAnswering)),
    ("roberta-mlm", Some(Task::FillMask)),
    ("xlmr-qa-sharded", Some(Task::QuestionAnswering)),
    ("st-mean", Some(Task::FeatureExtraction)),
    ("gpt2", None),
];

struct ModelFolder {
    scratch: tempfile::TempDir,
    fixtures: PathBuf,
}

impl Target for ModelFolder {
    fn run(&mut self, data: &[u8]) -> bool {
        let mut chosen = 0;
        let mut config = Vec::new();
        match split(data) {
            Input::Raw(bytes) => {
                if let Some((which, rest)) = bytes.split_first() {
                    chosen = *which as usize % MODEL_FOLDERS.len();
                    config = rest.to_vec();
                }
            }
            Input::Structured(mut u) => {
                let u = &mut u;
                // running out of bytes just ends the input early
                let _ = (|| -> Result<()> {
                    chosen = u.choose_index(MODEL_FOLDERS.len())?;
                    let path = self
                        .fixtures
                        .join(MODEL_FOLDERS[chosen].0)
                        .join("config.json");
                    let mut value: Value =
                        serde_json::from_slice(&read(&path)).unwrap_or(Value::Null);
                    if let Value::Object(map) = &mut value {
                        // the fields that size the model, set to edge values
                        for _ in 0..u.int_in_range(1..=3)? {
                            let field = *u.choose(CONFIG_FIELDS)?;
                            map.insert(field.to_string(), json::number(u)?);
                        }
                    }
                    if u.ratio(1, 3)? {
                        json::mutate(u, &mut value)?;
                    }
                    config = value.to_string().into_bytes();
                    Ok(())
                })();
            }
        }
        let (name, task) = MODEL_FOLDERS[chosen];
        let dir = fresh_folder(&self.scratch, name);
        let source = self.fixtures.join(name);
        if let Ok(entries) = std::fs::read_dir(&source) {
            for entry in entries.flatten() {
                let file = entry.file_name();
                if file != "config.json" {
                    let _ = std::os::unix::fs::symlink(entry.path(), dir.join(file));
                }
            }
        }
        write(&dir.join("config.json"), &config);
        match task {
            Some(task) => {
                if let Ok(loaded) = pipeline(task, dir.to_str().unwrap_or_default()) {
                    let inputs = match task {
                        Task::QuestionAnswering => {
                            json!({ "question": "who sat?", "context": "the cat sat on the mat" })
                        }
                        Task::FillMask if name.starts_with("roberta") => json!("the <mask> sat"),
                        Task::FillMask => json!("the [MASK] sat"),
                        _ => json!("the cat sat on the mat"),
                    };
                    return loaded.call(&inputs, &Map::new()).is_ok();
                }
                false
            }
            None => TextGenerationPipeline::from_folder(&dir)
                .is_ok_and(|generator| generator.greedy_new_tokens(&[1, 2, 3], 2).is_ok()),
        }
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        MODEL_FOLDERS
            .iter()
            .enumerate()
            .map(|(index, (name, _))| {
                let mut body = vec![index as u8];
                body.extend(read(&self.fixtures.join(name).join("config.json")));
                input(0, &body)
            })
            .collect()
    }
}

// --- tokenizer folders -------------------------------------------------------------------------

/// Fixture tokenizers: WordPiece (BERT), byte-level BPE (GPT-2), Unigram (XLM-R), and a
/// sentence-transformers folder.
const TOKENIZER_FOLDERS: &[&str] = &["bert-seqcls-single", "gpt2", "xlmr", "st-mean", "roberta"];

const TOKENIZER_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "sentencepiece.bpe.model",
    "spiece.model",
    "config.json",
];

/// Keys of tokenizer_config.json that oxformer reads.
const TOKENIZER_CONFIG_FIELDS: &[&str] = &[
    "model_max_length",
    "do_lower_case",
    "padding_side",
    "truncation_side",
    "pad_token",
    "unk_token",
    "cls_token",
    "sep_token",
    "mask_token",
    "bos_token",
    "eos_token",
    "add_prefix_space",
    "clean_up_tokenization_spaces",
    "tokenizer_class",
    "added_tokens_decoder",
    "strip_accents",
    "tokenize_chinese_chars",
    "model_input_names",
];

fn encode_options(u: &mut Unstructured<'_>) -> Result<EncodeOptions> {
    let small = |u: &mut Unstructured<'_>| -> Result<usize> {
        Ok(if u.ratio(1, 8)? {
            *u.choose(&[0usize, 1, 2, usize::MAX, 1 << 40])?
        } else {
            u.int_in_range(0..=40)?
        })
    };
    Ok(EncodeOptions {
        add_special_tokens: u.arbitrary()?,
        truncation: *u.choose(&[
            Truncation::None,
            Truncation::LongestFirst,
            Truncation::OnlyFirst,
            Truncation::OnlySecond,
        ])?,
        max_length: if u.arbitrary()? {
            Some(small(u)?)
        } else {
            None
        },
        stride: small(u)?,
        return_overflowing: u.arbitrary()?,
        padding: *u.choose(&[Padding::None, Padding::Longest, Padding::MaxLength])?,
        pad_to_multiple_of: if u.arbitrary()? {
            Some(small(u)?)
        } else {
            None
        },
        padding_side: *u.choose(&[None, Some(Side::Left), Some(Side::Right)])?,
        truncation_side: *u.choose(&[None, Some(Side::Left), Some(Side::Right)])?,
    })
}

struct TokenizerFolder {
    scratch: tempfile::TempDir,
    fixtures: PathBuf,
}

impl Target for TokenizerFolder {
    fn run(&mut self, data: &[u8]) -> bool {
        let dir = fresh_folder(&self.scratch, "tokenizer");
        let copy_fixture = |name: &str, skip: &[&str]| {
            for file in TOKENIZER_FILES {
                let source = self.fixtures.join(name).join(file);
                if source.is_file() && !skip.contains(file) {
                    let _ = std::os::unix::fs::symlink(&source, dir.join(file));
                }
            }
        };
        let mut texts = (String::from("Hello, world! The cat sat."), String::new());
        let mut options = EncodeOptions::default();
        match split(data) {
            Input::Raw(bytes) => {
                // byte 0: the fixture folder; byte 1: which of its files the rest replaces
                let (folder, file, rest) = match bytes {
                    [folder, file, rest @ ..] => (*folder as usize, *file as usize, rest),
                    _ => (0, 0, &[][..]),
                };
                let folder = TOKENIZER_FOLDERS[folder % TOKENIZER_FOLDERS.len()];
                let file = TOKENIZER_FILES[file % TOKENIZER_FILES.len()];
                copy_fixture(folder, &[file]);
                write(&dir.join(file), rest);
            }
            Input::Structured(mut u) => {
                let u = &mut u;
                // running out of bytes just ends the input early
                let _ = (|| -> Result<()> {
                    let folder = *u.choose(TOKENIZER_FOLDERS)?;
                    let mutated = *u.choose(&[
                        "tokenizer.json",
                        "tokenizer_config.json",
                        "special_tokens_map.json",
                        "none",
                    ])?;
                    let mut skip = vec![mutated];
                    if u.ratio(1, 6)? {
                        skip.push("tokenizer.json"); // the slow files alone
                    }
                    copy_fixture(folder, &skip);
                    let source = self.fixtures.join(folder).join(mutated);
                    if source.is_file() && !(mutated == "tokenizer.json" && skip.len() > 1) {
                        let mut value: Value =
                            serde_json::from_slice(&read(&source)).unwrap_or(Value::Null);
                        if mutated == "tokenizer_config.json" && u.ratio(1, 2)? {
                            if let Value::Object(map) = &mut value {
                                let key = *u.choose(TOKENIZER_CONFIG_FIELDS)?;
                                map.insert(key.to_string(), json::value(u, 2)?);
                            }
                        } else {
                            json::mutate(u, &mut value)?;
                        }
                        write(&dir.join(mutated), value.to_string().as_bytes());
                    }
                    texts = (
                        json::words(u)?,
                        if u.arbitrary()? {
                            json::words(u)?
                        } else {
                            String::new()
                        },
                    );
                    options = encode_options(u)?;
                    Ok(())
                })();
            }
        }
        let Ok(tokenizer) = Tokenizer::from_folder(&dir) else {
            return false;
        };
        let encoded = if texts.1.is_empty() {
            tokenizer.encode(texts.0.as_str(), &options)
        } else {
            tokenizer.encode((texts.0.as_str(), texts.1.as_str()), &options)
        };
        if let Ok(encoding) = encoded {
            let _ = tokenizer.decode(encoding.ids(), false, None);
            let _ = tokenizer.decode(encoding.ids(), true, Some(true));
        }
        let _ = tokenizer.decode(&[0, 1, u32::MAX], false, None);
        true
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        let mut seeds = Vec::new();
        for (folder_index, folder) in TOKENIZER_FOLDERS.iter().enumerate() {
            for (file_index, file) in TOKENIZER_FILES.iter().enumerate() {
                let path = self.fixtures.join(folder).join(file);
                if path.is_file() && *file != "config.json" {
                    let mut body = vec![folder_index as u8, file_index as u8];
                    body.extend(read(&path));
                    seeds.push(input(0, &body));
                }
            }
        }
        seeds
    }
}

// --- generation_config.json --------------------------------------------------------------------

struct GenerationFolder {
    scratch: tempfile::TempDir,
    fixtures: PathBuf,
}

impl Target for GenerationFolder {
    fn run(&mut self, data: &[u8]) -> bool {
        let dir = fresh_folder(&self.scratch, "generation");
        let path = dir.join("generation_config.json");
        let mut prompt_length = 3;
        match split(data) {
            Input::Raw(bytes) => write(&path, bytes),
            Input::Structured(mut u) => {
                let u = &mut u;
                // running out of bytes just ends the input early
                let _ = (|| -> Result<()> {
                    let mut value = if u.ratio(1, 2)? {
                        Value::Object(json::object_with(u, &OPTION_NAMES)?)
                    } else {
                        serde_json::from_slice(&read(
                            &self.fixtures.join("gpt2/generation_config.json"),
                        ))
                        .unwrap_or(Value::Null)
                    };
                    json::mutate(u, &mut value)?;
                    write(&path, value.to_string().as_bytes());
                    prompt_length = u.arbitrary()?;
                    Ok(())
                })();
            }
        }
        if let Ok(config) = GenerationConfig::from_folder(&dir)
            && config.validate().is_ok()
        {
            std::hint::black_box((
                config.resolved_max_length(prompt_length, Some(128)),
                config.resolved_max_length(prompt_length, None),
                config.resolved_min_length(prompt_length),
                config.pad_or_eos(),
            ));
            return true;
        }
        false
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        vec![input(
            0,
            &read(&self.fixtures.join("gpt2/generation_config.json")),
        )]
    }
}

// --- Pipeline::call ----------------------------------------------------------------------------

/// Options of the encoder tasks (`call.rs`) and of text generation.
const CALL_OPTIONS: &[&str] = &[
    "aggregation_strategy",
    "align_to_words",
    "batch_size",
    "doc_stride",
    "function_to_apply",
    "handle_impossible_answer",
    "hypothesis_template",
    "max_answer_len",
    "max_question_len",
    "max_seq_len",
    "multi_label",
    "stride",
    "top_k",
    "truncation",
    "targets",
    "ignore_labels",
    "candidate_labels",
    "return_all_scores",
    "tokenize_kwargs",
    "return_tensors",
    "return_full_text",
    "return_text",
    "prefix",
    "max_new_tokens",
    "num_beams",
    "do_sample",
    "num_return_sequences",
];

/// Inputs shaped as the tasks take them, with arbitrary contents.
fn call_inputs(u: &mut Unstructured<'_>) -> Result<Value> {
    let text = |u: &mut Unstructured<'_>| -> Result<Value> {
        Ok(Value::String(if u.ratio(3, 4)? {
            json::words(u)?
        } else {
            json::string(u)?
        }))
    };
    Ok(match u.int_in_range(0..=6)? {
        0 | 1 => text(u)?,
        2 => {
            let count = u.int_in_range(0..=4)?;
            let mut items = Vec::new();
            for _ in 0..count {
                items.push(text(u)?);
            }
            Value::Array(items)
        }
        3 => json!({ "question": text(u)?, "context": text(u)? }),
        4 => json!({ "text": text(u)?, "text_pair": text(u)? }),
        5 => json!([{ "question": text(u)?, "context": text(u)? }, text(u)?]),
        _ => json::value(u, 3)?,
    })
}

struct PipelineCall {
    pipelines: Vec<Pipeline>,
    generator: Option<TextGenerationPipeline>,
}

impl PipelineCall {
    fn new(fixtures: &Path) -> Self {
        let load = |task, name: &str| {
            pipeline(task, fixtures.join(name).to_str().unwrap_or_default())
                .unwrap_or_else(|error| panic!("fixture {name}: {error}"))
        };
        Self {
            pipelines: vec![
                load(Task::TextClassification, "bert-seqcls-single"),
                load(Task::TokenClassification, "bert-tokcls"),
                load(Task::QuestionAnswering, "bert-qa"),
                load(Task::FillMask, "bert-mlm"),
                load(Task::FeatureExtraction, "st-mean"),
                load(Task::ZeroShotClassification, "bert-nli"),
                load(Task::TextGeneration, "gpt2"),
            ],
            generator: TextGenerationPipeline::from_folder(&fixtures.join("gpt2")).ok(),
        }
    }
}

impl Target for PipelineCall {
    fn run(&mut self, data: &[u8]) -> bool {
        let mut chosen = 0;
        let mut inputs = Value::Null;
        let mut options = Map::new();
        match split(data) {
            Input::Raw(bytes) => {
                // byte 0: the pipeline; the rest: `{"inputs": ..., "options": {...}}` or inputs
                if let Some((which, rest)) = bytes.split_first() {
                    chosen = *which as usize;
                    match serde_json::from_slice::<Value>(rest) {
                        Ok(Value::Object(mut map)) if map.contains_key("inputs") => {
                            inputs = map.remove("inputs").unwrap_or(Value::Null);
                            if let Some(Value::Object(given)) = map.remove("options") {
                                options = given;
                            }
                        }
                        Ok(value) => inputs = value,
                        Err(_) => inputs = Value::String(String::from_utf8_lossy(rest).into()),
                    }
                }
            }
            Input::Structured(mut u) => {
                let u = &mut u;
                // running out of bytes just ends the input early
                let _ = (|| -> Result<()> {
                    chosen = u.arbitrary()?;
                    inputs = call_inputs(u)?;
                    options = json::object_with(u, CALL_OPTIONS)?;
                    if u.ratio(1, 3)? {
                        let extra = json::object_with(u, &OPTION_NAMES)?;
                        options.extend(extra);
                    }
                    Ok(())
                })();
            }
        }
        let count = self.pipelines.len() + 1;
        match self.pipelines.get(chosen % count) {
            Some(pipeline) => pipeline.call(&inputs, &options).is_ok(),
            None => self
                .generator
                .as_ref()
                .is_some_and(|generator| generator.call(&inputs, &options).is_ok()),
        }
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        let cases = [
            (
                0u8,
                json!({"inputs": "I love this", "options": {"top_k": 2}}),
            ),
            (
                1,
                json!({"inputs": "Paris is in France", "options": {"aggregation_strategy": "simple"}}),
            ),
            (
                2,
                json!({"inputs": {"question": "where?", "context": "in Paris"}, "options": {"top_k": 2}}),
            ),
            (
                3,
                json!({"inputs": "the [MASK] sat", "options": {"top_k": 3}}),
            ),
            (4, json!({"inputs": ["a", "b c"], "options": {}})),
            (
                5,
                json!({"inputs": "a match", "options": {"candidate_labels": ["sport", "art"]}}),
            ),
            (
                6,
                json!({"inputs": "Once", "options": {"max_new_tokens": 3, "do_sample": false}}),
            ),
        ];
        cases
            .iter()
            .map(|(which, case)| {
                let mut body = vec![*which];
                body.extend(case.to_string().into_bytes());
                input(0, &body)
            })
            .collect()
    }
}

// --- the CLI's stdin ---------------------------------------------------------------------------

/// Subcommands, their fixture model and flags worth trying.
const CLI_TASKS: &[(&str, &str, &[&str])] = &[
    (
        "text-classification",
        "bert-seqcls-single",
        &["--top-k", "2", "--truncation"],
    ),
    (
        "token-classification",
        "bert-tokcls",
        &["--aggregation-strategy", "simple"],
    ),
    ("question-answering", "bert-qa", &["--top-k", "2"]),
    ("fill-mask", "bert-mlm", &["--top-k", "2"]),
    ("feature-extraction", "st-mean", &["--truncation"]),
    (
        "zero-shot-classification",
        "bert-nli",
        &["--candidate-labels", "sport,art"],
    ),
    ("text-generation", "gpt2", &["--max-new-tokens", "2"]),
];

/// A stdin line: words, JSON shaped as the task reads it, or anything.
fn stdin_line(u: &mut Unstructured<'_>) -> Result<String> {
    Ok(match u.int_in_range(0..=4)? {
        0 | 1 => json::words(u)?,
        2 => call_inputs(u)?.to_string(),
        3 => json::string(u)?,
        _ => json::value(u, 2)?.to_string(),
    }
    .replace('\n', " "))
}

struct CliStdin {
    binary: PathBuf,
    fixtures: PathBuf,
}

impl CliStdin {
    fn new(root: &Path, fixtures: PathBuf) -> Self {
        let binary = std::env::var_os("OXFORMER_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target/test-release/oxformer"));
        assert!(
            binary.is_file(),
            "{} is missing: build it with `cargo build -p oxformer-cli --profile test-release` \
             or set OXFORMER_BIN",
            binary.display()
        );
        Self { binary, fixtures }
    }
}

impl Target for CliStdin {
    fn run(&mut self, data: &[u8]) -> bool {
        let mut chosen = 0;
        let mut flags: Vec<String> = Vec::new();
        let mut stdin = Vec::new();
        match split(data) {
            Input::Raw(bytes) => {
                if let Some((which, rest)) = bytes.split_first() {
                    chosen = *which as usize;
                    stdin = rest.to_vec();
                }
            }
            Input::Structured(mut u) => {
                let u = &mut u;
                // running out of bytes just ends the input early
                let _ = (|| -> Result<()> {
                    chosen = u.arbitrary()?;
                    let (_, _, task_flags) = CLI_TASKS[chosen % CLI_TASKS.len()];
                    if u.arbitrary()? {
                        flags.push("--json".to_string());
                    }
                    if u.arbitrary()? {
                        flags.extend(task_flags.iter().map(|flag| flag.to_string()));
                    }
                    if u.ratio(1, 4)? {
                        flags.push("--batch-size".to_string());
                        flags.push(u.int_in_range(0u32..=5)?.to_string());
                    }
                    for _ in 0..u.int_in_range(1..=6)? {
                        stdin.extend(stdin_line(u)?.into_bytes());
                        stdin.push(b'\n');
                    }
                    Ok(())
                })();
            }
        }
        let (task, model, _) = CLI_TASKS[chosen % CLI_TASKS.len()];
        let mut child = Command::new(&self.binary)
            .arg(task)
            .arg("--model")
            .arg(self.fixtures.join(model))
            .args(&flags)
            .env("HF_HUB_OFFLINE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the oxformer binary starts");
        if let Some(mut pipe) = child.stdin.take() {
            // a child that exits early closes the pipe: not a finding by itself
            let _ = std::io::Write::write_all(&mut pipe, &stdin);
        }
        // read stderr while the child runs: a full pipe would stall it
        let reader = child.stderr.take().map(|mut pipe| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = std::io::Read::read_to_string(&mut pipe, &mut text);
                text
            })
        });
        let start = Instant::now();
        let status = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break status;
            }
            if start.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                panic!("oxformer {task} {flags:?} did not finish in 20 s");
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let stderr = reader
            .and_then(|reader| reader.join().ok())
            .unwrap_or_default();
        let crashed = status.code().is_none_or(|code| code == 101) || stderr.contains("panicked");
        assert!(
            !crashed,
            "oxformer {task} {flags:?} crashed ({status}): {stderr}\nstdin: {:?}",
            String::from_utf8_lossy(&stdin)
        );
        status.success()
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        let lines: [&[u8]; 7] = [
            b"I love this\nI hate this\n",
            b"Paris is in France\n",
            b"{\"question\": \"where?\", \"context\": \"in Paris\"}\n",
            b"the [MASK] sat\n",
            b"a\nb c\n",
            b"a match\n",
            b"Once upon\n",
        ];
        lines
            .iter()
            .enumerate()
            .map(|(which, stdin)| {
                let mut body = vec![which as u8];
                body.extend_from_slice(stdin);
                input(0, &body)
            })
            .collect()
    }
}
