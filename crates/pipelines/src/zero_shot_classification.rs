//! The zero-shot-classification pipeline, as
//! transformers/pipelines/zero_shot_classification.py: each candidate label becomes an NLI
//! hypothesis, and the entailment logit scores it.

use serde::Serialize;

use oxformer_tokenizer::{EncodeInput, EncodeOptions, Truncation};

use crate::error::{Error, Result};
use crate::model::{Feature, HeadNeed, Loaded, RowOutput};

const TASK: &str = "zero-shot-classification";

/// transformers' default `hypothesis_template`.
pub const DEFAULT_HYPOTHESIS_TEMPLATE: &str = "This example is {}.";

/// Options of [`ZeroShotClassificationPipeline::run`].
#[derive(Debug, Clone)]
pub struct ZeroShotOptions {
    /// `candidate_labels`.
    pub candidate_labels: Vec<String>,
    /// `hypothesis_template`: where `{}` stands for the label.
    pub hypothesis_template: String,
    /// `multi_label`: score each label on its own (entailment against contradiction) instead
    /// of a softmax over the labels' entailment logits.
    pub multi_label: bool,
    /// Premise/hypothesis pairs per forward pass (0: the default, 8).
    pub batch_size: usize,
}

impl ZeroShotOptions {
    /// Options with these labels and transformers' defaults otherwise.
    pub fn new(candidate_labels: Vec<String>) -> Self {
        Self {
            candidate_labels,
            hypothesis_template: DEFAULT_HYPOTHESIS_TEMPLATE.to_string(),
            multi_label: false,
            batch_size: 0,
        }
    }
}

/// Candidate labels given as one comma-separated string (`"politics, economy"`), split and
/// trimmed as transformers' `_parse_labels` does.
pub fn parse_labels(labels: &str) -> Vec<String> {
    labels
        .split(',')
        .map(str::trim)
        .filter(|label| !label.is_empty())
        .map(str::to_string)
        .collect()
}

/// The result for one sequence: `{"sequence", "labels", "scores"}`, best label first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ZeroShotOutput {
    /// The input text.
    pub sequence: String,
    /// The candidate labels, most likely first.
    pub labels: Vec<String>,
    /// Their scores, in the same order.
    pub scores: Vec<f64>,
}

/// zero-shot-classification over an NLI `*ForSequenceClassification` model folder.
pub struct ZeroShotClassificationPipeline {
    loaded: Loaded,
}

impl ZeroShotClassificationPipeline {
    /// Loads a model folder (or id) with a sequence classification (NLI) head and its tokenizer.
    ///
    /// # Errors
    /// When the folder cannot be loaded, or its head is not sequence classification.
    pub fn new(model: &str) -> Result<Self> {
        Self::from_loaded(Loaded::load(model, None)?)
    }

    pub(crate) fn from_loaded(loaded: Loaded) -> Result<Self> {
        loaded.expect_head(TASK, HeadNeed::SequenceClassification)?;
        Ok(Self { loaded })
    }

    /// The loaded model, tokenizer and threads.
    pub fn model(&mut self) -> &mut Loaded {
        &mut self.loaded
    }

    /// `entailment_id`: the first label (in `label2id`) starting with "entail", any case;
    /// like transformers, the last output when there is none.
    fn entailment_id(&self, num_outputs: usize) -> usize {
        self.loaded
            .config()
            .common()
            .label2id
            .iter()
            .find(|(label, _)| label.to_lowercase().starts_with("entail"))
            .map_or(num_outputs.saturating_sub(1), |(_, &id)| id)
    }

    /// Scores every candidate label for each text, in input order.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an empty text; [`Error::InvalidOption`] for no labels or a
    /// template without `{}`; model errors.
    pub fn run(&self, texts: &[&str], options: &ZeroShotOptions) -> Result<Vec<ZeroShotOutput>> {
        let labels = &options.candidate_labels;
        if labels.is_empty() {
            return Err(Error::option(
                TASK,
                "candidate_labels",
                "give at least one label",
            ));
        }
        let template = &options.hypothesis_template;
        if !template.contains("{}") {
            return Err(Error::option(
                TASK,
                "hypothesis_template",
                format!("\"{template}\" has no `{{}}` where the label should go"),
            ));
        }
        let hypotheses: Vec<String> = labels
            .iter()
            .map(|label| template.replace("{}", label))
            .collect();
        let max_length = self.loaded.max_length();
        let encode_options = EncodeOptions {
            truncation: Truncation::OnlyFirst,
            max_length: Some(max_length),
            ..EncodeOptions::default()
        };
        let mut features = Vec::with_capacity(texts.len() * labels.len());
        for text in texts {
            if text.is_empty() {
                return Err(Error::input(TASK, "empty text"));
            }
            for hypothesis in &hypotheses {
                let input = EncodeInput::Pair(text, hypothesis);
                let encoding = self.loaded.tokenizer().encode(input, &encode_options)?;
                features.push(Feature::from_encoding(&encoding));
            }
        }
        let rows = self.loaded.forward(&features, options.batch_size)?;
        let logits: Vec<Vec<f32>> = rows
            .into_iter()
            .map(|row| match row {
                RowOutput::Logits(logits) => logits,
                _ => unreachable!("sequence classification heads give logits"),
            })
            .collect();
        let mut results = Vec::with_capacity(texts.len());
        for (text, per_label) in texts.iter().zip(logits.chunks(labels.len())) {
            let num_outputs = per_label[0].len();
            let entailment = self.entailment_id(num_outputs);
            if entailment >= num_outputs {
                return Err(Error::WrongHead {
                    task: TASK,
                    dir: self.loaded.dir().to_path_buf(),
                    expected: "an NLI head whose labels include the entailment id",
                    found: format!("{num_outputs} outputs, entailment id {entailment}"),
                });
            }
            let scores: Vec<f32> = if options.multi_label || labels.len() == 1 {
                let contradiction = if entailment == 0 {
                    num_outputs.saturating_sub(1)
                } else {
                    0
                };
                per_label
                    .iter()
                    .map(|row| {
                        let pair = crate::text::softmax(&[row[contradiction], row[entailment]]);
                        pair[1]
                    })
                    .collect()
            } else {
                let entail: Vec<f32> = per_label.iter().map(|row| row[entailment]).collect();
                crate::text::softmax(&entail)
            };
            // `reversed(argsort)`: ascending (stable), then reversed.
            let mut order: Vec<usize> = (0..scores.len()).collect();
            order.sort_by(|&a, &b| {
                scores[a]
                    .partial_cmp(&scores[b])
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
            order.reverse();
            results.push(ZeroShotOutput {
                sequence: text.to_string(),
                labels: order.iter().map(|&index| labels[index].clone()).collect(),
                scores: order
                    .iter()
                    .map(|&index| f64::from(scores[index]))
                    .collect(),
            });
        }
        Ok(results)
    }
}
