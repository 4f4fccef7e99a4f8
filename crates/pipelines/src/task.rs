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
    /// `sentence-embeddings`: `SentenceTransformer.encode` of a sentence-transformers folder.
    SentenceEmbeddings,
    /// `sentence-similarity`: cosine scores of a source sentence against others, as the HF
    /// Inference API's task of that name.
    SentenceSimilarity,
}

impl Task {
    /// Every task name and alias [`Task::from_str`] accepts.
    pub const NAMES: [&'static str; 11] = [
        "text-classification",
        "sentiment-analysis",
        "token-classification",
        "ner",
        "question-answering",
        "fill-mask",
        "feature-extraction",
        "zero-shot-classification",
        "text-generation",
        "sentence-embeddings",
        "sentence-similarity",
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
            Self::SentenceEmbeddings => "sentence-embeddings",
            Self::SentenceSimilarity => "sentence-similarity",
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
            "sentence-embeddings" => Self::SentenceEmbeddings,
            "sentence-similarity" => Self::SentenceSimilarity,
            other => {
                return Err(Error::UnknownTask {
                    name: other.to_string(),
                });
            }
        })
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
