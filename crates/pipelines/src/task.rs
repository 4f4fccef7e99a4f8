//! The task names of transformers' `pipeline(task)`, with their aliases.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// A pipeline task, named as transformers names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Task {
    /// `text-classification` (alias `sentiment-analysis`).
    TextClassification,
    /// `token-classification` (alias `ner`).
    TokenClassification,
    /// `question-answering`.
    QuestionAnswering,
    /// `fill-mask`.
    FillMask,
    /// `feature-extraction`.
    FeatureExtraction,
    /// `zero-shot-classification`.
    ZeroShotClassification,
    /// `text-generation`.
    TextGeneration,
    /// `text2text-generation`.
    Text2TextGeneration,
    /// `summarization`.
    Summarization,
    /// `translation`, and `translation_XX_to_YY` (the language pair selects the model's
    /// `task_specific_params`; see `Text2TextGenerationPipeline`).
    Translation,
}

impl Task {
    /// Every task name and alias [`Task::from_str`] accepts.
    pub const NAMES: [&'static str; 13] = [
        "text-classification",
        "sentiment-analysis",
        "token-classification",
        "ner",
        "question-answering",
        "fill-mask",
        "feature-extraction",
        "zero-shot-classification",
        "text-generation",
        "text2text-generation",
        "summarization",
        "translation",
        "translation_XX_to_YY",
    ];

    /// The task's canonical name (`text-classification` for `sentiment-analysis`).
    pub fn name(self) -> &'static str {
        match self {
            Self::TextClassification => "text-classification",
            Self::TokenClassification => "token-classification",
            Self::QuestionAnswering => "question-answering",
            Self::FillMask => "fill-mask",
            Self::FeatureExtraction => "feature-extraction",
            Self::ZeroShotClassification => "zero-shot-classification",
            Self::TextGeneration => "text-generation",
            Self::Text2TextGeneration => "text2text-generation",
            Self::Summarization => "summarization",
            Self::Translation => "translation",
        }
    }
}

impl FromStr for Task {
    type Err = Error;

    /// Parses a task name or alias.
    ///
    /// # Errors
    /// [`Error::UnknownTask`] for a name not in [`Task::NAMES`].
    fn from_str(name: &str) -> Result<Self, Error> {
        Ok(match name {
            "text-classification" | "sentiment-analysis" => Self::TextClassification,
            "token-classification" | "ner" => Self::TokenClassification,
            "question-answering" => Self::QuestionAnswering,
            "fill-mask" => Self::FillMask,
            "feature-extraction" => Self::FeatureExtraction,
            "zero-shot-classification" => Self::ZeroShotClassification,
            "text-generation" => Self::TextGeneration,
            "text2text-generation" => Self::Text2TextGeneration,
            "summarization" => Self::Summarization,
            "translation" => Self::Translation,
            other if is_translation_pair(other) => Self::Translation,
            other => {
                return Err(Error::UnknownTask {
                    name: other.to_string(),
                });
            }
        })
    }
}

/// Whether `name` is `translation_XX_to_YY` (as transformers' `check_task` accepts it).
pub(crate) fn is_translation_pair(name: &str) -> bool {
    let parts: Vec<&str> = name.split('_').collect();
    matches!(parts.as_slice(), ["translation", from, "to", to] if !from.is_empty() && !to.is_empty())
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
