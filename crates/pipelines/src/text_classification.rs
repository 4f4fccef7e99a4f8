//! The text-classification pipeline (alias sentiment-analysis), as
//! transformers/pipelines/text_classification.py.

use oxformer_models::ProblemType;
use oxformer_tokenizer::Side;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::model::{Loaded, RowOutput};
use crate::text::{argmax, sigmoid, softmax};

const TASK: &str = "text-classification";

/// `function_to_apply`: what turns the logits into scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassificationFunction {
    /// Logistic sigmoid of each logit.
    Sigmoid,
    /// Softmax over the labels.
    Softmax,
    /// The raw logits.
    None,
}

impl std::str::FromStr for ClassificationFunction {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "sigmoid" => Ok(Self::Sigmoid),
            "softmax" => Ok(Self::Softmax),
            "none" => Ok(Self::None),
            _ => Err(Error::option(
                TASK,
                "function_to_apply",
                format!("`{name}` is not one of sigmoid, softmax, none"),
            )),
        }
    }
}

/// `top_k` of text classification, whose absence and `None` mean different things in
/// transformers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClassificationTopK {
    /// `top_k` not given: the best label only, as one `{label, score}` per input.
    #[default]
    Best,
    /// `top_k=None`: every label, best first.
    All,
    /// `top_k=k`: the `k` best labels, best first.
    Top(usize),
}

/// Options of [`TextClassificationPipeline::run`].
#[derive(Debug, Clone, Default)]
pub struct TextClassificationOptions {
    /// `top_k`.
    pub top_k: ClassificationTopK,
    /// `function_to_apply`; `None` chooses from the config as transformers does (regression:
    /// none; multi-label or one label: sigmoid; otherwise softmax).
    pub function_to_apply: Option<ClassificationFunction>,
    /// Truncate inputs longer than the model to its maximum length. transformers does not
    /// truncate unless asked (`truncation=True`); without it an over-long input is an error.
    pub truncation: bool,
    /// With `truncation`, cut to this many tokens (transformers' tokenizer argument
    /// `max_length`) instead of the model's length; the model's positions still bound it. Not
    /// used without `truncation`.
    pub max_length: Option<usize>,
    /// Inputs per forward pass (0: the default, 8).
    pub batch_size: usize,
}

/// One input: a text, or a pair (`{"text", "text_pair"}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextInput {
    /// The text.
    pub text: String,
    /// The second text of a pair.
    pub text_pair: Option<String>,
}

impl From<&str> for TextInput {
    fn from(text: &str) -> Self {
        Self {
            text: text.to_string(),
            text_pair: None,
        }
    }
}

impl From<String> for TextInput {
    fn from(text: String) -> Self {
        Self {
            text,
            text_pair: None,
        }
    }
}

/// A label and its score: `{"label": str, "score": float}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelScore {
    /// The label (`id2label`).
    pub label: String,
    /// Its score after `function_to_apply`.
    pub score: f64,
}

/// The result for one input: one `{label, score}` when `top_k` was not given, else a list.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ClassificationOutput {
    /// `top_k` not given.
    Best(LabelScore),
    /// `top_k` given (a number or all).
    Ranked(Vec<LabelScore>),
}

/// text-classification over a `*ForSequenceClassification` model folder.
pub struct TextClassificationPipeline {
    loaded: Loaded,
}

impl TextClassificationPipeline {
    /// Loads a model folder (or id) with a sequence classification head and its tokenizer.
    ///
    /// # Errors
    /// When the folder cannot be loaded, or its head is not sequence classification.
    pub fn new(model: &str) -> Result<Self> {
        Self::from_loaded(Loaded::load(model, None)?)
    }

    pub(crate) fn from_loaded(loaded: Loaded) -> Result<Self> {
        loaded.expect_head(TASK, crate::model::HeadNeed::SequenceClassification)?;
        Ok(Self { loaded })
    }

    /// The loaded model, tokenizer and threads.
    pub fn model(&mut self) -> &mut Loaded {
        &mut self.loaded
    }

    /// Classifies each input; results are in input order.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an empty text or (without truncation) one longer than the
    /// model; [`Error::InvalidOption`] for `top_k` 0; model errors.
    pub fn run(
        &self,
        inputs: &[TextInput],
        options: &TextClassificationOptions,
    ) -> Result<Vec<ClassificationOutput>> {
        self.run_on(inputs, options, None)
    }

    /// As [`Self::run`], truncating (with `options.truncation`) on `side` (`None`: the
    /// tokenizer's `truncation_side`, as [`Self::run`]).
    ///
    /// # Errors
    /// As [`Self::run`].
    pub fn run_on(
        &self,
        inputs: &[TextInput],
        options: &TextClassificationOptions,
        side: Option<Side>,
    ) -> Result<Vec<ClassificationOutput>> {
        if options.top_k == ClassificationTopK::Top(0) {
            return Err(Error::option(TASK, "top_k", "must be at least 1"));
        }
        let mut features = Vec::with_capacity(inputs.len());
        for input in inputs {
            if input.text.is_empty() {
                return Err(Error::input(TASK, "empty text"));
            }
            let feature = self.loaded.encode_single_on(
                TASK,
                &input.text,
                input.text_pair.as_deref(),
                options.truncation,
                options.max_length,
                side,
            )?;
            features.push(feature);
        }
        let rows = self.loaded.forward(&features, options.batch_size)?;
        let function = options
            .function_to_apply
            .unwrap_or_else(|| self.default_function());
        rows.into_iter()
            .map(|row| match row {
                RowOutput::Logits(logits) => Ok(self.postprocess(&logits, function, options.top_k)),
                _ => unreachable!("sequence classification heads give logits"),
            })
            .collect()
    }

    /// The default `function_to_apply` of `postprocess`.
    fn default_function(&self) -> ClassificationFunction {
        let common = self.loaded.config().common();
        match common.problem_type {
            Some(ProblemType::Regression) => ClassificationFunction::None,
            Some(ProblemType::MultiLabelClassification) => ClassificationFunction::Sigmoid,
            _ if common.num_labels() == 1 => ClassificationFunction::Sigmoid,
            _ => ClassificationFunction::Softmax,
        }
    }

    /// `postprocess` for one input's logits.
    fn postprocess(
        &self,
        logits: &[f32],
        function: ClassificationFunction,
        top_k: ClassificationTopK,
    ) -> ClassificationOutput {
        let scores: Vec<f32> = match function {
            ClassificationFunction::Sigmoid => logits.iter().map(|&x| sigmoid(x)).collect(),
            ClassificationFunction::Softmax => softmax(logits),
            ClassificationFunction::None => logits.to_vec(),
        };
        let label = |id: usize| self.loaded.label(id);
        if top_k == ClassificationTopK::Best {
            let best = argmax(&scores);
            return ClassificationOutput::Best(LabelScore {
                label: label(best),
                score: f64::from(scores[best]),
            });
        }
        let mut ranked: Vec<LabelScore> = scores
            .iter()
            .enumerate()
            .map(|(id, &score)| LabelScore {
                label: label(id),
                score: f64::from(score),
            })
            .collect();
        // Stable, best first, like Python's `sort(reverse=True)`.
        ranked.sort_by(|a, b| {
            b.score
                .partial_cmp(&a.score)
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        if let ClassificationTopK::Top(k) = top_k {
            ranked.truncate(k);
        }
        ClassificationOutput::Ranked(ranked)
    }
}
