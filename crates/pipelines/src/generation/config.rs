//! [`GenerationConfig`]: how to decode, with transformers' names and defaults
//! (transformers/generation/configuration_utils.py `GenerationConfig`).

use std::path::Path;

use serde_json::{Map, Value};

use crate::{Error, Result};

const TASK: &str = "text-generation";

/// When beam search stops (`early_stopping`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EarlyStopping {
    /// `false` (default): stop when no running beam can still beat the finished ones, judged
    /// at the current length.
    #[default]
    Heuristic,
    /// `true`: stop as soon as `num_beams` hypotheses are finished.
    Done,
    /// `"never"`: stop only when no running beam can beat the finished ones at the longest
    /// possible length (the canonical beam search).
    Never,
}

/// Every decoding option of issue 5, named and defaulted as transformers' `GenerationConfig`.
///
/// Build it with [`GenerationConfig::from_folder`] (a model's `generation_config.json`, or the
/// generation fields of its `config.json`), then override fields directly or from JSON with
/// [`GenerationConfig::update`] (transformers' `generate(**kwargs)`).
#[derive(Clone, Debug, PartialEq)]
pub struct GenerationConfig {
    /// `max_length`: total length (prompt + new tokens). `None`: 20 new tokens, at most the
    /// model's positions (transformers' default `max_length` of 20 is counted from the prompt).
    pub max_length: Option<usize>,
    /// `max_new_tokens`: new tokens at most; wins over `max_length`.
    pub max_new_tokens: Option<usize>,
    /// `min_length`: total length before an end-of-sequence token is allowed (0).
    pub min_length: usize,
    /// `min_new_tokens`: new tokens before an end-of-sequence token is allowed.
    pub min_new_tokens: Option<usize>,
    /// `do_sample` (false): sample from the filtered distribution instead of taking the argmax.
    pub do_sample: bool,
    /// `num_beams` (1): beam search when above 1.
    pub num_beams: usize,
    /// `temperature` (1.0), with sampling.
    pub temperature: f32,
    /// `top_k` (50), with sampling; 0 keeps every token.
    pub top_k: usize,
    /// `top_p` (1.0), with sampling.
    pub top_p: f32,
    /// `min_p`, with sampling.
    pub min_p: Option<f32>,
    /// `typical_p` (1.0), with sampling.
    pub typical_p: f32,
    /// `repetition_penalty` (1.0: none).
    pub repetition_penalty: f32,
    /// `no_repeat_ngram_size` (0: none).
    pub no_repeat_ngram_size: usize,
    /// `bad_words_ids`: token sequences that may not be generated.
    pub bad_words_ids: Vec<Vec<u32>>,
    /// `length_penalty` (1.0): beam scores are divided by `length ** length_penalty`.
    pub length_penalty: f32,
    /// `early_stopping` (false).
    pub early_stopping: EarlyStopping,
    /// `num_return_sequences` (1): sequences returned per prompt.
    pub num_return_sequences: usize,
    /// `eos_token_id`: one or several end-of-sequence ids; empty for none.
    pub eos_token_id: Vec<u32>,
    /// `pad_token_id`: fills finished rows; `None`: the first `eos_token_id`, as transformers.
    pub pad_token_id: Option<u32>,
    /// `bos_token_id`.
    pub bos_token_id: Option<u32>,
    /// `forced_bos_token_id`: the first generated token of an encoder-decoder model.
    pub forced_bos_token_id: Option<u32>,
    /// `forced_eos_token_id`: the token(s) forced just before `max_length` (empty: none).
    pub forced_eos_token_id: Vec<u32>,
    /// `decoder_start_token_id`: the decoder's first id for encoder-decoder models (`None`:
    /// `bos_token_id`).
    pub decoder_start_token_id: Option<u32>,
    /// `stop_strings`: stop a row once its text ends with one of these.
    pub stop_strings: Vec<String>,
    /// `use_cache` (true): reuse keys and values; false recomputes the whole sequence each step.
    pub use_cache: bool,
    /// The seed of the sampling generator (oxformer's own; transformers uses torch's global
    /// one). `None`: a seed from the clock.
    pub seed: Option<u64>,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self {
            max_length: None,
            max_new_tokens: None,
            min_length: 0,
            min_new_tokens: None,
            do_sample: false,
            num_beams: 1,
            temperature: 1.0,
            top_k: 50,
            top_p: 1.0,
            min_p: None,
            typical_p: 1.0,
            repetition_penalty: 1.0,
            no_repeat_ngram_size: 0,
            bad_words_ids: Vec::new(),
            length_penalty: 1.0,
            early_stopping: EarlyStopping::Heuristic,
            num_return_sequences: 1,
            eos_token_id: Vec::new(),
            pad_token_id: None,
            bos_token_id: None,
            decoder_start_token_id: None,
            forced_bos_token_id: None,
            forced_eos_token_id: Vec::new(),
            stop_strings: Vec::new(),
            use_cache: true,
            seed: None,
        }
    }
}

/// The option names [`GenerationConfig::update`] knows, as transformers spells them.
pub const OPTION_NAMES: [&str; 27] = [
    "max_length",
    "max_new_tokens",
    "min_length",
    "min_new_tokens",
    "do_sample",
    "num_beams",
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "typical_p",
    "repetition_penalty",
    "no_repeat_ngram_size",
    "bad_words_ids",
    "length_penalty",
    "early_stopping",
    "num_return_sequences",
    "eos_token_id",
    "pad_token_id",
    "bos_token_id",
    "decoder_start_token_id",
    "forced_bos_token_id",
    "forced_eos_token_id",
    "stop_strings",
    "use_cache",
    "seed",
    "min_tokens_to_keep",
];

impl GenerationConfig {
    /// The defaults of a model folder, as transformers' `GenerationConfig.from_pretrained`:
    /// `generation_config.json` when present, else the generation fields of `config.json`
    /// (`bos_token_id`, `eos_token_id`, `pad_token_id`, and any decoding option saved there).
    /// Unknown keys are ignored, as transformers keeps them as attributes.
    ///
    /// # Errors
    /// When neither file can be read, is not a JSON object, or a known field has a bad value.
    pub fn from_folder(dir: &Path) -> Result<Self> {
        let mut config = Self::default();
        config.update_from_folder(dir)?;
        Ok(config)
    }

    /// Sets the fields a model folder's `generation_config.json` (else `config.json`) holds,
    /// keeping the others (how pipelines put a model's settings over their own defaults).
    ///
    /// # Errors
    /// As [`GenerationConfig::from_folder`].
    pub fn update_from_folder(&mut self, dir: &Path) -> Result<()> {
        let generation = dir.join("generation_config.json");
        let path = if generation.is_file() {
            generation
        } else {
            dir.join("config.json")
        };
        let text = std::fs::read_to_string(&path).map_err(|error| {
            Error::input(TASK, format!("cannot read {}: {error}", path.display()))
        })?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|error| Error::input(TASK, format!("{}: {error}", path.display())))?;
        let Value::Object(map) = value else {
            return Err(Error::input(
                TASK,
                format!("{} is not a JSON object", path.display()),
            ));
        };
        for (key, value) in &map {
            if OPTION_NAMES.contains(&key.as_str()) {
                self.set(key, value)?;
            }
        }
        Ok(())
    }

    /// Sets options from JSON as transformers' `generate(**kwargs)` takes them
    /// (`{"max_new_tokens": 8, "do_sample": true, "top_p": 0.9}`).
    ///
    /// `min_tokens_to_keep` is accepted and, as in `generate()`, has no effect (the warpers
    /// keep 1 token, or one more than the end-of-sequence ids with beams).
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for an unknown option or a value of the wrong type.
    pub fn update(&mut self, options: &Map<String, Value>) -> Result<()> {
        for (key, value) in options {
            self.set(key, value)?;
        }
        Ok(())
    }

    fn set(&mut self, key: &str, value: &Value) -> Result<()> {
        let Some(&name) = OPTION_NAMES.iter().find(|&&name| name == key) else {
            return Err(Error::InvalidOption {
                task: TASK,
                option: "generate",
                reason: format!(
                    "unknown generation option `{key}`; known: {}",
                    OPTION_NAMES.join(", ")
                ),
            });
        };
        let null = value.is_null();
        match name {
            "max_length" => self.max_length = optional_count(name, value)?,
            "max_new_tokens" => self.max_new_tokens = optional_count(name, value)?,
            "min_length" => self.min_length = optional_count(name, value)?.unwrap_or(0),
            "min_new_tokens" => self.min_new_tokens = optional_count(name, value)?,
            "do_sample" => self.do_sample = !null && boolean(name, value)?,
            "num_beams" => self.num_beams = optional_count(name, value)?.unwrap_or(1),
            "temperature" => self.temperature = optional_float(name, value)?.unwrap_or(1.0),
            "top_k" => self.top_k = optional_count(name, value)?.unwrap_or(0),
            "top_p" => self.top_p = optional_float(name, value)?.unwrap_or(1.0),
            "min_p" => self.min_p = optional_float(name, value)?,
            "typical_p" => self.typical_p = optional_float(name, value)?.unwrap_or(1.0),
            "repetition_penalty" => {
                self.repetition_penalty = optional_float(name, value)?.unwrap_or(1.0)
            }
            "no_repeat_ngram_size" => {
                self.no_repeat_ngram_size = optional_count(name, value)?.unwrap_or(0)
            }
            "bad_words_ids" => {
                self.bad_words_ids = if null {
                    Vec::new()
                } else {
                    serde_json::from_value(value.clone())
                        .map_err(|_| wrong(name, "a list of lists of token ids", value))?
                }
            }
            "length_penalty" => self.length_penalty = optional_float(name, value)?.unwrap_or(1.0),
            "early_stopping" => {
                self.early_stopping = match value {
                    Value::Bool(false) | Value::Null => EarlyStopping::Heuristic,
                    Value::Bool(true) => EarlyStopping::Done,
                    Value::String(text) if text == "never" => EarlyStopping::Never,
                    other => return Err(wrong(name, "true, false or \"never\"", other)),
                }
            }
            "num_return_sequences" => {
                self.num_return_sequences = optional_count(name, value)?.unwrap_or(1)
            }
            "eos_token_id" => self.eos_token_id = token_ids(name, value)?,
            "forced_eos_token_id" => self.forced_eos_token_id = token_ids(name, value)?,
            "forced_bos_token_id" => self.forced_bos_token_id = optional_token(name, value)?,
            "pad_token_id" => self.pad_token_id = optional_token(name, value)?,
            "bos_token_id" => self.bos_token_id = optional_token(name, value)?,
            "decoder_start_token_id" => self.decoder_start_token_id = optional_token(name, value)?,
            "stop_strings" => {
                self.stop_strings = match value {
                    Value::Null => Vec::new(),
                    Value::String(text) => vec![text.clone()],
                    _ => serde_json::from_value(value.clone())
                        .map_err(|_| wrong(name, "a string or a list of strings", value))?,
                }
            }
            "use_cache" => self.use_cache = null || boolean(name, value)?,
            "seed" => {
                self.seed = if null {
                    None
                } else {
                    Some(
                        value
                            .as_u64()
                            .ok_or_else(|| wrong(name, "a non-negative integer", value))?,
                    )
                }
            }
            "min_tokens_to_keep" => {
                optional_count(name, value)?;
            }
            _ => unreachable!("every name of OPTION_NAMES is handled"),
        }
        Ok(())
    }

    /// Takes the model's value of every option this config leaves at transformers' global
    /// default while the model's is not (`GenerationMixin._prepare_generation_config` with
    /// `use_model_defaults`: how a pipeline's defaults and the model's `generation_config.json`
    /// combine). A `max_length` of 20 is the global default.
    pub fn fill_from_model(&mut self, model: &GenerationConfig) {
        let global = GenerationConfig::default();
        let normalise = |length: Option<usize>| length.filter(|&length| length != 20);
        if normalise(self.max_length).is_none() && normalise(model.max_length).is_some() {
            self.max_length = model.max_length;
        }
        macro_rules! fill {
            ($($field:ident),* $(,)?) => {$(
                if self.$field == global.$field && model.$field != global.$field {
                    self.$field = model.$field.clone();
                }
            )*};
        }
        fill!(
            max_new_tokens,
            min_length,
            min_new_tokens,
            do_sample,
            num_beams,
            temperature,
            top_k,
            top_p,
            min_p,
            typical_p,
            repetition_penalty,
            no_repeat_ngram_size,
            bad_words_ids,
            length_penalty,
            early_stopping,
            num_return_sequences,
            eos_token_id,
            pad_token_id,
            bos_token_id,
            decoder_start_token_id,
            forced_bos_token_id,
            forced_eos_token_id,
            stop_strings,
            use_cache,
            seed,
        );
    }

    /// Sets the options of `settings` this config knows and ignores the others, as
    /// transformers' `GenerationConfig.update` (how a pipeline applies
    /// `task_specific_params[task]`).
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for a known option with a value of the wrong type.
    pub fn update_known(&mut self, settings: &Map<String, Value>) -> Result<()> {
        for (key, value) in settings {
            if OPTION_NAMES.contains(&key.as_str()) {
                self.set(key, value)?;
            }
        }
        Ok(())
    }

    /// The token that fills rows that have finished: `pad_token_id`, else the first
    /// `eos_token_id` (transformers warns and does the same).
    pub fn pad_or_eos(&self) -> Option<u32> {
        self.pad_token_id.or(self.eos_token_id.first().copied())
    }

    /// The total length to stop at for a prompt of `prompt_length` tokens:
    /// `prompt_length + max_new_tokens`, else `max_length`, else `prompt_length + 20` capped by
    /// `max_positions` (transformers' `_prepare_generated_length`). A sum past `usize::MAX`
    /// saturates (it cannot be reached anyway).
    pub fn resolved_max_length(&self, prompt_length: usize, max_positions: Option<usize>) -> usize {
        match (self.max_new_tokens, self.max_length) {
            (Some(new), _) => prompt_length.saturating_add(new),
            (None, Some(total)) => total,
            (None, None) => {
                let length = prompt_length.saturating_add(20);
                max_positions.map_or(length, |limit| length.min(limit))
            }
        }
    }

    /// The total length before which end-of-sequence tokens are forbidden:
    /// `prompt_length + min_new_tokens` (saturating), else `min_length`.
    pub fn resolved_min_length(&self, prompt_length: usize) -> usize {
        match self.min_new_tokens {
            Some(new) => prompt_length.saturating_add(new),
            None => self.min_length,
        }
    }

    /// Checks the values as transformers' processors and `generate()` do.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] naming the option and the accepted values.
    pub fn validate(&self) -> Result<()> {
        let invalid = |option: &'static str, reason: String| Error::InvalidOption {
            task: TASK,
            option,
            reason,
        };
        if self.num_beams == 0 {
            return Err(invalid("num_beams", "must be at least 1".into()));
        }
        if self.num_return_sequences == 0 {
            return Err(invalid("num_return_sequences", "must be at least 1".into()));
        }
        if self.max_new_tokens == Some(0) {
            return Err(invalid("max_new_tokens", "must be greater than 0".into()));
        }
        if self.num_beams > 1 && self.num_return_sequences > self.num_beams {
            return Err(invalid(
                "num_return_sequences",
                format!(
                    "{} is more than num_beams {}: beam search returns at most num_beams sequences",
                    self.num_return_sequences, self.num_beams
                ),
            ));
        }
        if self.num_beams == 1 && !self.do_sample && self.num_return_sequences > 1 {
            return Err(invalid(
                "num_return_sequences",
                "greedy decoding returns one sequence; use do_sample or num_beams".into(),
            ));
        }
        if self.repetition_penalty.is_nan() || self.repetition_penalty <= 0.0 {
            return Err(invalid(
                "repetition_penalty",
                format!("must be > 0, got {}", self.repetition_penalty),
            ));
        }
        if self.do_sample {
            if self.temperature.is_nan() || self.temperature <= 0.0 {
                return Err(invalid(
                    "temperature",
                    format!(
                        "must be > 0, got {} (for greedy decoding set do_sample false)",
                        self.temperature
                    ),
                ));
            }
            if !(0.0..=1.0).contains(&self.top_p) {
                return Err(invalid(
                    "top_p",
                    format!("must be in [0, 1], got {}", self.top_p),
                ));
            }
            if let Some(min_p) = self.min_p
                && !(0.0..=1.0).contains(&min_p)
            {
                return Err(invalid("min_p", format!("must be in [0, 1], got {min_p}")));
            }
            if !(self.typical_p > 0.0 && self.typical_p <= 1.0) {
                return Err(invalid(
                    "typical_p",
                    format!("must be in (0, 1], got {}", self.typical_p),
                ));
            }
        }
        if self.bad_words_ids.iter().any(Vec::is_empty) {
            return Err(invalid(
                "bad_words_ids",
                "every banned sequence needs at least one token".into(),
            ));
        }
        if self.stop_strings.iter().any(String::is_empty) {
            return Err(invalid(
                "stop_strings",
                "a stop string may not be empty".into(),
            ));
        }
        Ok(())
    }
}

fn wrong(option: &'static str, expected: &str, value: &Value) -> Error {
    Error::InvalidOption {
        task: TASK,
        option,
        reason: format!("expected {expected}, got {value}"),
    }
}

fn optional_count(option: &'static str, value: &Value) -> Result<Option<usize>> {
    match value {
        Value::Null => Ok(None),
        _ => value
            .as_u64()
            .map(|count| Some(count as usize))
            .ok_or_else(|| wrong(option, "a non-negative integer", value)),
    }
}

fn optional_float(option: &'static str, value: &Value) -> Result<Option<f32>> {
    match value {
        Value::Null => Ok(None),
        _ => value
            .as_f64()
            .map(|number| Some(number as f32))
            .ok_or_else(|| wrong(option, "a number", value)),
    }
}

fn boolean(option: &'static str, value: &Value) -> Result<bool> {
    value
        .as_bool()
        .ok_or_else(|| wrong(option, "true or false", value))
}

fn token_id(option: &'static str, value: &Value) -> Result<u32> {
    value
        .as_u64()
        .and_then(|id| u32::try_from(id).ok())
        .ok_or_else(|| wrong(option, "a token id", value))
}

/// A token id or a list of them; none for null.
fn token_ids(option: &'static str, value: &Value) -> Result<Vec<u32>> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Array(_) => serde_json::from_value(value.clone())
            .map_err(|_| wrong(option, "a token id or a list of them", value)),
        _ => Ok(vec![token_id(option, value)?]),
    }
}

fn optional_token(option: &'static str, value: &Value) -> Result<Option<u32>> {
    match value {
        Value::Null => Ok(None),
        _ => token_id(option, value).map(Some),
    }
}

#[cfg(test)]
mod overflow_tests {
    use super::*;

    /// Found by afl-fuzz (generation_config): `max_new_tokens` near `usize::MAX` overflowed the
    /// sum (a panic with overflow checks, a wrapped, tiny length without).
    #[test]
    fn huge_new_token_counts_saturate_instead_of_wrapping() {
        let config = GenerationConfig {
            max_new_tokens: Some(usize::MAX - 1),
            min_new_tokens: Some(usize::MAX),
            ..GenerationConfig::default()
        };
        assert_eq!(config.resolved_max_length(5, Some(128)), usize::MAX);
        assert_eq!(config.resolved_min_length(5), usize::MAX);
        let default = GenerationConfig::default();
        assert_eq!(
            default.resolved_max_length(usize::MAX - 3, None),
            usize::MAX
        );
    }
}
