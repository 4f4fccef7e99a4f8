//! [`Pipeline::call`]: transformers' `pipeline(task)(inputs, **options)` with JSON inputs,
//! options and results, including transformers' choices of when a result is wrapped in a
//! list.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::feature_extraction::FeatureExtractionOptions;
use crate::fill_mask::FillMaskOptions;
use crate::question_answering::{QaInput, QuestionAnsweringOptions};
use crate::sentence_embeddings::SentenceEmbeddingsOptions;
use crate::text_classification::{ClassificationTopK, TextClassificationOptions, TextInput};
use crate::token_classification::TokenClassificationOptions;
use crate::zero_shot_classification::{ZeroShotOptions, parse_labels};
use crate::{Pipeline, Task};

/// Reads typed options out of a JSON object, refusing the keys nobody asked for.
struct Options<'a> {
    task: &'static str,
    map: &'a Map<String, Value>,
    known: Vec<&'static str>,
}

impl<'a> Options<'a> {
    fn new(task: Task, map: &'a Map<String, Value>) -> Self {
        Self {
            task: task.name(),
            map,
            known: Vec::new(),
        }
    }

    fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        self.known.push(key);
        self.map.get(key)
    }

    fn wrong(&self, key: &'static str, expected: &str, found: &Value) -> Error {
        Error::option(
            self.task,
            key,
            format!("expected {expected}, found {found}"),
        )
    }

    fn usize(&mut self, key: &'static str) -> Result<Option<usize>> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => value
                .as_u64()
                .map(|number| Some(number as usize))
                .ok_or_else(|| self.wrong(key, "a non-negative integer", value)),
        }
    }

    fn bool(&mut self, key: &'static str) -> Result<Option<bool>> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(value)) => Ok(Some(*value)),
            Some(value) => Err(self.wrong(key, "true or false", value)),
        }
    }

    fn string(&mut self, key: &'static str) -> Result<Option<&'a str>> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(value)) => Ok(Some(value)),
            Some(value) => Err(self.wrong(key, "a string", value)),
        }
    }

    /// A list of strings, or one string (a one-element list, or `split` applied to it).
    fn strings(
        &mut self,
        key: &'static str,
        split: fn(&str) -> Vec<String>,
    ) -> Result<Option<Vec<String>>> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(value)) => Ok(Some(split(value))),
            Some(Value::Array(values)) => values
                .iter()
                .map(|value| {
                    value
                        .as_str()
                        .map(str::to_string)
                        .ok_or_else(|| self.wrong(key, "a list of strings", value))
                })
                .collect::<Result<Vec<_>>>()
                .map(Some),
            Some(value) => Err(self.wrong(key, "a string or a list of strings", value)),
        }
    }

    /// An error for any key not read.
    fn finish(self) -> Result<()> {
        for key in self.map.keys() {
            if !self.known.contains(&key.as_str()) {
                return Err(Error::InvalidOption {
                    task: self.task,
                    option: "options",
                    reason: format!(
                        "unknown option `{key}`; {} takes {}",
                        self.task,
                        self.known.join(", ")
                    ),
                });
            }
        }
        Ok(())
    }
}

fn to_value(value: impl Serialize) -> Value {
    serde_json::to_value(value).expect("pipeline outputs serialise to JSON")
}

/// One text, or a list of texts; `Err` for anything else.
fn texts(task: Task, inputs: &Value) -> Result<(Vec<&str>, bool)> {
    match inputs {
        Value::String(text) => Ok((vec![text.as_str()], false)),
        Value::Array(values) => values
            .iter()
            .map(|value| {
                value.as_str().ok_or_else(|| {
                    Error::input(task.name(), format!("expected a text, found {value}"))
                })
            })
            .collect::<Result<Vec<_>>>()
            .map(|texts| (texts, true)),
        other => Err(Error::input(
            task.name(),
            format!("expected a text or a list of texts, found {other}"),
        )),
    }
}

/// The result for one input, or the list of results for a list input.
fn one_or_list<T: Serialize>(mut results: Vec<T>, is_list: bool) -> Value {
    if is_list {
        to_value(results)
    } else {
        to_value(results.remove(0))
    }
}

pub(crate) fn call(
    pipeline: &Pipeline,
    inputs: &Value,
    options: &Map<String, Value>,
) -> Result<Value> {
    if let Pipeline::TextGeneration(pipeline) = pipeline {
        return pipeline.call(inputs, options);
    }
    if let Pipeline::Text2Text(pipeline) = pipeline {
        return pipeline.call(inputs, options);
    }
    let task = pipeline.task();
    let mut reader = Options::new(task, options);
    let batch_size = reader.usize("batch_size")?.unwrap_or(0);
    match pipeline {
        Pipeline::TextClassification(pipeline) => {
            let top_k = match reader.get("top_k") {
                None => ClassificationTopK::Best,
                Some(Value::Null) => ClassificationTopK::All,
                Some(value) => ClassificationTopK::Top(
                    value
                        .as_u64()
                        .ok_or_else(|| reader.wrong("top_k", "an integer or null", value))?
                        as usize,
                ),
            };
            let function_to_apply = reader
                .string("function_to_apply")?
                .map(str::parse)
                .transpose()?;
            let truncation = reader.bool("truncation")?.unwrap_or(false);
            reader.finish()?;
            let typed = TextClassificationOptions {
                top_k,
                function_to_apply,
                truncation,
                max_length: None,
                batch_size,
            };
            let pair = |value: &Value| -> Result<TextInput> {
                match value {
                    Value::String(text) => Ok(TextInput::from(text.as_str())),
                    Value::Object(object) => {
                        let field = |key: &str| object.get(key).and_then(Value::as_str);
                        match (field("text"), field("text_pair")) {
                            (Some(text), pair) => Ok(TextInput {
                                text: text.to_string(),
                                text_pair: pair.map(str::to_string),
                            }),
                            _ => Err(Error::input(
                                task.name(),
                                format!(
                                    "a pair is {{\"text\": ..., \"text_pair\": ...}}, found {value}"
                                ),
                            )),
                        }
                    }
                    other => Err(Error::input(
                        task.name(),
                        format!(
                            "expected a text or a {{\"text\", \"text_pair\"}} object, found {other}"
                        ),
                    )),
                }
            };
            match inputs {
                Value::Array(values) => {
                    let inputs = values.iter().map(pair).collect::<Result<Vec<_>>>()?;
                    Ok(to_value(pipeline.run(&inputs, &typed)?))
                }
                single => {
                    let mut results = pipeline.run(&[pair(single)?], &typed)?;
                    // A single text without `top_k` comes back in a list.
                    if single.is_string() && top_k == ClassificationTopK::Best {
                        Ok(to_value(results))
                    } else {
                        Ok(to_value(results.remove(0)))
                    }
                }
            }
        }
        Pipeline::TokenClassification(pipeline) => {
            let aggregation_strategy = reader
                .string("aggregation_strategy")?
                .map(str::parse)
                .transpose()?;
            let ignore_labels = reader.strings("ignore_labels", |label| vec![label.to_string()])?;
            let stride = reader.usize("stride")?;
            reader.finish()?;
            let typed = TokenClassificationOptions {
                aggregation_strategy,
                ignore_labels,
                stride,
                batch_size,
            };
            let (texts, is_list) = texts(task, inputs)?;
            Ok(one_or_list(pipeline.run(&texts, &typed)?, is_list))
        }
        Pipeline::QuestionAnswering(pipeline) => {
            let defaults = QuestionAnsweringOptions::default();
            let top_k = reader.usize("top_k")?.unwrap_or(defaults.top_k);
            let doc_stride = reader.usize("doc_stride")?;
            let max_answer_len = reader
                .usize("max_answer_len")?
                .unwrap_or(defaults.max_answer_len);
            let max_seq_len = reader.usize("max_seq_len")?;
            let max_question_len = reader
                .usize("max_question_len")?
                .unwrap_or(defaults.max_question_len);
            let handle_impossible_answer = reader
                .bool("handle_impossible_answer")?
                .unwrap_or(defaults.handle_impossible_answer);
            let align_to_words = reader
                .bool("align_to_words")?
                .unwrap_or(defaults.align_to_words);
            reader.finish()?;
            let typed = QuestionAnsweringOptions {
                top_k,
                doc_stride,
                max_answer_len,
                max_seq_len,
                max_question_len,
                handle_impossible_answer,
                align_to_words,
                batch_size,
            };
            let parse = |value: &Value| -> Result<QaInput> {
                serde_json::from_value(value.clone()).map_err(|_| {
                    Error::input(
                        task.name(),
                        format!("expected {{\"question\": ..., \"context\": ...}}, found {value}"),
                    )
                })
            };
            match inputs {
                Value::Array(values) => {
                    let inputs = values.iter().map(parse).collect::<Result<Vec<_>>>()?;
                    // A list of one example gives that example's result, unwrapped.
                    let is_list = inputs.len() != 1;
                    Ok(one_or_list(pipeline.run(&inputs, &typed)?, is_list))
                }
                single => Ok(one_or_list(pipeline.run(&[parse(single)?], &typed)?, false)),
            }
        }
        Pipeline::FillMask(pipeline) => {
            let defaults = FillMaskOptions::default();
            let top_k = reader.usize("top_k")?.unwrap_or(defaults.top_k);
            let targets = reader.strings("targets", |target| vec![target.to_string()])?;
            reader.finish()?;
            let typed = FillMaskOptions {
                top_k,
                targets,
                batch_size,
            };
            let (texts, is_list) = texts(task, inputs)?;
            // A list of one text gives that text's result, unwrapped.
            let is_list = is_list && texts.len() != 1;
            Ok(one_or_list(pipeline.run(&texts, &typed)?, is_list))
        }
        Pipeline::FeatureExtraction(pipeline) => {
            let truncation = reader.bool("truncation")?.unwrap_or(false);
            reader.finish()?;
            let typed = FeatureExtractionOptions {
                truncation,
                max_length: None,
                batch_size,
            };
            let (texts, is_list) = texts(task, inputs)?;
            Ok(one_or_list(pipeline.run(&texts, &typed)?, is_list))
        }
        Pipeline::ZeroShotClassification(pipeline) => {
            let candidate_labels = reader
                .strings("candidate_labels", parse_labels)?
                .ok_or_else(|| Error::option(task.name(), "candidate_labels", "is required"))?;
            let mut typed = ZeroShotOptions::new(candidate_labels);
            if let Some(template) = reader.string("hypothesis_template")? {
                typed.hypothesis_template = template.to_string();
            }
            typed.multi_label = reader.bool("multi_label")?.unwrap_or(false);
            typed.batch_size = batch_size;
            reader.finish()?;
            let (texts, is_list) = texts(task, inputs)?;
            Ok(one_or_list(pipeline.run(&texts, &typed)?, is_list))
        }
        Pipeline::SentenceEmbeddings(pipeline) => {
            let typed = sentence_options(&mut reader, batch_size)?;
            reader.finish()?;
            let (texts, is_list) = texts(task, inputs)?;
            Ok(one_or_list(pipeline.run(&texts, &typed)?, is_list))
        }
        Pipeline::SentenceSimilarity(pipeline) => {
            let typed = sentence_options(&mut reader, batch_size)?;
            reader.finish()?;
            let (source, sentences) = similarity_inputs(inputs)?;
            Ok(to_value(pipeline.similarity(source, &sentences, &typed)?))
        }
        Pipeline::TextGeneration(_) | Pipeline::Text2Text(_) => unreachable!("handled above"),
    }
}

/// `encode()`'s options, for sentence-embeddings and sentence-similarity.
fn sentence_options(
    reader: &mut Options<'_>,
    batch_size: usize,
) -> Result<SentenceEmbeddingsOptions> {
    Ok(SentenceEmbeddingsOptions {
        prompt_name: reader.string("prompt_name")?.map(str::to_string),
        prompt: reader.string("prompt")?.map(str::to_string),
        normalize_embeddings: reader.bool("normalize_embeddings")?.unwrap_or(false),
        truncate_dim: reader.usize("truncate_dim")?,
        max_length: None,
        batch_size,
    })
}

/// The HF Inference API's sentence-similarity inputs:
/// `{"source_sentence": "...", "sentences": ["...", ...]}`.
fn similarity_inputs(inputs: &Value) -> Result<(&str, Vec<&str>)> {
    let task = Task::SentenceSimilarity.name();
    let expected = "expected {\"source_sentence\": text, \"sentences\": [text, ...]}";
    let Value::Object(map) = inputs else {
        return Err(Error::input(task, format!("{expected}, found {inputs}")));
    };
    if let Some(key) = map
        .keys()
        .find(|key| !matches!(key.as_str(), "source_sentence" | "sentences"))
    {
        return Err(Error::input(
            task,
            format!("unknown key `{key}`; {expected}"),
        ));
    }
    let source = map
        .get("source_sentence")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            Error::input(
                task,
                format!("`source_sentence` is missing or not a text; {expected}"),
            )
        })?;
    let sentences = map
        .get("sentences")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            Error::input(
                task,
                format!("`sentences` is missing or not a list; {expected}"),
            )
        })?
        .iter()
        .map(|value| {
            value.as_str().ok_or_else(|| {
                Error::input(
                    task,
                    format!("expected a text in `sentences`, found {value}"),
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((source, sentences))
}
