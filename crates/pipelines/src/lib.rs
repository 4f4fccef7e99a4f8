//! oxformer-pipelines: HF transformers' pipelines, with the same options and output shapes.
//!
//! ```no_run
//! use oxformer_pipelines::{Task, pipeline};
//! use oxformer_pipelines::text_classification::TextClassificationOptions;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let classifier = pipeline(Task::TextClassification, "fixtures/models/bert-seqcls-single")?;
//! let classifier = classifier.text_classification().expect("a text-classification pipeline");
//! let results = classifier.run(&["I love this movie!".into()], &TextClassificationOptions::default())?;
//! println!("{}", serde_json::to_string(&results)?);
//! # Ok(())
//! # }
//! ```
//!
//! Each task has a typed pipeline in its module (`TextClassificationPipeline::run` takes typed
//! options and returns serde-serialisable results whose JSON has transformers' keys);
//! [`Pipeline::call`] takes inputs and options as JSON exactly as transformers'
//! `pipeline(task)(inputs, **options)` does and returns what it returns.
//!
//! The encoder pipelines run many inputs at once: inputs (or their windows) are sorted by
//! length, batched (`batch_size`, default 8), padded to the longest of their batch, and the
//! results put back in input order.

mod call;
mod error;
pub mod feature_extraction;
pub mod fill_mask;
pub mod generation;
mod model;
pub mod question_answering;
mod task;
mod text;
pub mod text2text_generation;
pub mod text_classification;
pub mod text_generation;
pub mod token_classification;
pub mod zero_shot_classification;

pub use error::{Error, Result};
pub use model::Loaded;
pub use task::Task;

use feature_extraction::FeatureExtractionPipeline;
use fill_mask::FillMaskPipeline;
use question_answering::QuestionAnsweringPipeline;
use text_classification::TextClassificationPipeline;
use text_generation::TextGenerationPipeline;
use text2text_generation::Text2TextGenerationPipeline;
use token_classification::TokenClassificationPipeline;
use zero_shot_classification::ZeroShotClassificationPipeline;

/// A pipeline for one task, as `pipeline(task, model)` builds it.
pub enum Pipeline {
    /// text-classification.
    TextClassification(TextClassificationPipeline),
    /// token-classification.
    TokenClassification(TokenClassificationPipeline),
    /// question-answering.
    QuestionAnswering(QuestionAnsweringPipeline),
    /// fill-mask.
    FillMask(FillMaskPipeline),
    /// feature-extraction.
    FeatureExtraction(FeatureExtractionPipeline),
    /// zero-shot-classification.
    ZeroShotClassification(ZeroShotClassificationPipeline),
    /// text-generation.
    TextGeneration(Box<TextGenerationPipeline>),
    /// text2text-generation, summarization and translation.
    Text2Text(Box<Text2TextGenerationPipeline>),
}

/// Builds the pipeline for `task` from a model folder, or a model id found in the local
/// Hugging Face cache (see `oxformer_nn::hub::resolve_model`).
///
/// # Errors
/// When the model cannot be found or loaded, or its head does not fit the task.
pub fn pipeline(task: Task, model: &str) -> Result<Pipeline> {
    pipeline_named(task.name(), model)
}

/// As [`pipeline`], with the task by name (as transformers' `pipeline("translation_en_to_de",
/// model)`): any of [`Task::NAMES`], `translation_XX_to_YY` included.
///
/// # Errors
/// [`Error::UnknownTask`]; otherwise as [`pipeline`].
pub fn pipeline_named(task_name: &str, model: &str) -> Result<Pipeline> {
    let task: Task = task_name.parse()?;
    if matches!(
        task,
        Task::Text2TextGeneration | Task::Summarization | Task::Translation
    ) {
        return Ok(Pipeline::Text2Text(Box::new(
            Text2TextGenerationPipeline::new(model, task_name)?,
        )));
    }
    if task == Task::TextGeneration {
        return Ok(Pipeline::TextGeneration(Box::new(
            TextGenerationPipeline::new(model)?,
        )));
    }
    // Feature extraction runs the base model of any checkpoint, as `AutoModel` does.
    let head = (task == Task::FeatureExtraction).then_some(oxformer_heads::HeadKind::Base);
    let loaded = Loaded::load(model, head)?;
    Ok(match task {
        Task::TextClassification => {
            Pipeline::TextClassification(TextClassificationPipeline::from_loaded(loaded)?)
        }
        Task::TokenClassification => {
            Pipeline::TokenClassification(TokenClassificationPipeline::from_loaded(loaded)?)
        }
        Task::QuestionAnswering => {
            Pipeline::QuestionAnswering(QuestionAnsweringPipeline::from_loaded(loaded)?)
        }
        Task::FillMask => Pipeline::FillMask(FillMaskPipeline::from_loaded(loaded)?),
        Task::FeatureExtraction => {
            Pipeline::FeatureExtraction(FeatureExtractionPipeline::from_loaded(loaded)?)
        }
        Task::ZeroShotClassification => {
            Pipeline::ZeroShotClassification(ZeroShotClassificationPipeline::from_loaded(loaded)?)
        }
        Task::TextGeneration
        | Task::Text2TextGeneration
        | Task::Summarization
        | Task::Translation => unreachable!("built above"),
    })
}

impl Pipeline {
    /// The task.
    pub fn task(&self) -> Task {
        match self {
            Self::TextClassification(_) => Task::TextClassification,
            Self::TokenClassification(_) => Task::TokenClassification,
            Self::QuestionAnswering(_) => Task::QuestionAnswering,
            Self::FillMask(_) => Task::FillMask,
            Self::FeatureExtraction(_) => Task::FeatureExtraction,
            Self::ZeroShotClassification(_) => Task::ZeroShotClassification,
            Self::TextGeneration(_) => Task::TextGeneration,
            Self::Text2Text(pipeline) => pipeline.task(),
        }
    }

    /// Runs forward passes on `threads` threads (0: one per core).
    ///
    /// # Errors
    /// When the operating system refuses the threads.
    pub fn set_threads(&mut self, threads: usize) -> Result<()> {
        match self {
            Self::TextGeneration(pipeline) => pipeline.set_num_threads(threads),
            Self::Text2Text(pipeline) => pipeline.set_num_threads(threads),
            encoder => encoder
                .model()
                .expect("every encoder pipeline has a loaded model")
                .set_threads(threads),
        }
    }

    /// The loaded encoder model and tokenizer (`None` for the generation tasks).
    pub fn model(&mut self) -> Option<&mut Loaded> {
        Some(match self {
            Self::TextClassification(pipeline) => pipeline.model(),
            Self::TokenClassification(pipeline) => pipeline.model(),
            Self::QuestionAnswering(pipeline) => pipeline.model(),
            Self::FillMask(pipeline) => pipeline.model(),
            Self::FeatureExtraction(pipeline) => pipeline.model(),
            Self::ZeroShotClassification(pipeline) => pipeline.model(),
            Self::TextGeneration(_) | Self::Text2Text(_) => return None,
        })
    }

    /// The text-classification pipeline, if this is one.
    pub fn text_classification(&self) -> Option<&TextClassificationPipeline> {
        match self {
            Self::TextClassification(pipeline) => Some(pipeline),
            _ => None,
        }
    }

    /// The token-classification pipeline, if this is one.
    pub fn token_classification(&self) -> Option<&TokenClassificationPipeline> {
        match self {
            Self::TokenClassification(pipeline) => Some(pipeline),
            _ => None,
        }
    }

    /// The question-answering pipeline, if this is one.
    pub fn question_answering(&self) -> Option<&QuestionAnsweringPipeline> {
        match self {
            Self::QuestionAnswering(pipeline) => Some(pipeline),
            _ => None,
        }
    }

    /// The fill-mask pipeline, if this is one.
    pub fn fill_mask(&self) -> Option<&FillMaskPipeline> {
        match self {
            Self::FillMask(pipeline) => Some(pipeline),
            _ => None,
        }
    }

    /// The feature-extraction pipeline, if this is one.
    pub fn feature_extraction(&self) -> Option<&FeatureExtractionPipeline> {
        match self {
            Self::FeatureExtraction(pipeline) => Some(pipeline),
            _ => None,
        }
    }

    /// The text-generation pipeline, if this is one.
    pub fn text_generation(&self) -> Option<&TextGenerationPipeline> {
        match self {
            Self::TextGeneration(pipeline) => Some(pipeline),
            _ => None,
        }
    }

    /// The text2text-generation, summarization or translation pipeline, if this is one.
    pub fn text2text_generation(&self) -> Option<&Text2TextGenerationPipeline> {
        match self {
            Self::Text2Text(pipeline) => Some(pipeline),
            _ => None,
        }
    }

    /// The zero-shot-classification pipeline, if this is one.
    pub fn zero_shot_classification(&self) -> Option<&ZeroShotClassificationPipeline> {
        match self {
            Self::ZeroShotClassification(pipeline) => Some(pipeline),
            _ => None,
        }
    }

    /// Runs the pipeline as transformers' `pipeline(task)(inputs, **options)`: `inputs` and
    /// `options` as JSON (a string, a list, a `{"question", "context"}` object, ...), and the
    /// result shaped exactly as transformers returns it for those inputs.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for an option the task does not have or a value of the wrong
    /// type; [`Error::InvalidInput`] for inputs of the wrong shape; otherwise as the task's
    /// `run`.
    pub fn call(
        &self,
        inputs: &serde_json::Value,
        options: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<serde_json::Value> {
        call::call(self, inputs, options)
    }
}
