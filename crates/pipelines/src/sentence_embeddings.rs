//! The `sentence-embeddings` and `sentence-similarity` tasks over a sentence-transformers folder:
//! what `SentenceTransformer(folder).encode(texts)` gives (sentence-transformers 5.1,
//! `SentenceTransformer.py`), and the cosine scores of the HF Inference API's
//! `sentence-similarity` task (`util.cos_sim` of those embeddings).
//!
//! As `encode()`: the prompt (`prompt`, else the folder's prompt named `prompt_name`, else its
//! `default_prompt_name`) goes before each text; the text is stripped of surrounding
//! whitespace, lower-cased when the folder says `do_lower_case`, and cut to its
//! `max_seq_length`; the folder's modules (pooling, Dense, Normalize) make the embedding;
//! `truncate_dim` keeps its first values, and `normalize_embeddings` scales it to unit length.

pub use oxformer_heads::normalize;
use std::collections::BTreeMap;

use oxformer_tokenizer::Side;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::model::{Loaded, RowOutput};

const TASK: &str = "sentence-embeddings";
const SIMILARITY_TASK: &str = "sentence-similarity";

/// Options of [`SentenceEmbeddingsPipeline::run`], named as `encode()`'s arguments.
#[derive(Debug, Clone, Default)]
pub struct SentenceEmbeddingsOptions {
    /// The name of one of the folder's prompts (`config_sentence_transformers.json`).
    pub prompt_name: Option<String>,
    /// A prompt to put before each text; wins over `prompt_name`, as in `encode()`.
    pub prompt: Option<String>,
    /// Scale each embedding to unit length (after `truncate_dim`).
    pub normalize_embeddings: bool,
    /// Keep only the first this many values of each embedding (Matryoshka models).
    pub truncate_dim: Option<usize>,
    /// Cut each input to this many tokens instead of the folder's `max_seq_length`
    /// (sentence-transformers: setting `model.max_seq_length`); the model's positions still
    /// bound it.
    pub max_length: Option<usize>,
    /// Texts per forward pass, grouped by length (0: 8). Results do not depend on it beyond
    /// float rounding.
    pub batch_size: usize,
}

/// One input of [`SentenceEmbeddingsPipeline::run_inputs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddingInput<'a> {
    /// A text, prepared and tokenized as [`SentenceEmbeddingsPipeline::run`] does.
    Text(&'a str),
    /// Token ids as the folder's tokenizer makes them, special tokens included: the model's
    /// input as they are (TEI's token-id inputs). They take no prompt.
    TokenIds(&'a [u32]),
}

/// The scores of [`SentenceEmbeddingsPipeline::similarity`]: one per sentence, in order.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct SimilarityScores(pub Vec<f32>);

/// What a text becomes before the tokenizer sees it, as `encode()` makes it: the chosen prompt
/// put before it, then stripped of surrounding whitespace and lower-cased when the folder says
/// `do_lower_case`. Owned (see [`SentenceEmbeddingsPipeline::preparation`]), so that a caller
/// can count an input's tokens as the pipeline will feed them, away from the pipeline.
#[derive(Debug, Clone, Default)]
pub struct TextPreparation {
    prompts: BTreeMap<String, String>,
    default_prompt_name: Option<String>,
    lower_case: bool,
}

impl TextPreparation {
    /// `encode()`'s choice of prompt for `options`: `prompt`, else the named one, else the
    /// folder's default one.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for a `prompt_name` the folder does not have.
    pub fn prompt<'a>(
        &'a self,
        task: &'static str,
        options: &'a SentenceEmbeddingsOptions,
    ) -> Result<Option<&'a str>> {
        if let Some(prompt) = &options.prompt {
            return Ok(Some(prompt));
        }
        if let Some(name) = &options.prompt_name {
            return match self.prompts.get(name) {
                Some(prompt) => Ok(Some(prompt)),
                None => Err(Error::option(
                    task,
                    "prompt_name",
                    format!(
                        "`{name}` is not one of the folder's prompts ({})",
                        if self.prompts.is_empty() {
                            "it has none".to_string()
                        } else {
                            self.prompts
                                .keys()
                                .map(String::as_str)
                                .collect::<Vec<_>>()
                                .join(", ")
                        }
                    ),
                )),
            };
        }
        Ok(self
            .default_prompt_name
            .as_ref()
            .and_then(|name| self.prompts.get(name))
            .map(String::as_str))
    }

    /// `text` after `prompt`, as the tokenizer is given it (Transformer.py `tokenize`).
    pub fn text(&self, prompt: Option<&str>, text: &str) -> String {
        let prompted = match prompt {
            Some(prompt) => format!("{prompt}{text}"),
            None => text.to_string(),
        };
        let trimmed = prompted.trim();
        if self.lower_case {
            trimmed.to_lowercase()
        } else {
            trimmed.to_string()
        }
    }
}

/// Sentence embeddings from a sentence-transformers folder.
pub struct SentenceEmbeddingsPipeline {
    loaded: Loaded,
    preparation: TextPreparation,
}

impl SentenceEmbeddingsPipeline {
    /// Loads a sentence-transformers folder (or model id) and its tokenizer.
    ///
    /// # Errors
    /// When the folder cannot be loaded, or has no `modules.json` (it is then not a
    /// sentence-transformers folder: `feature-extraction` gives its token embeddings).
    pub fn new(model: &str) -> Result<Self> {
        Self::for_task(TASK, model)
    }

    pub(crate) fn for_task(task: &'static str, model: &str) -> Result<Self> {
        let loaded = Loaded::load_sentence_transformer(task, model)?;
        let sentence = loaded
            .sentence_transformer()
            .expect("loaded as a sentence-transformers folder");
        let preparation = TextPreparation {
            prompts: sentence.prompts().clone(),
            default_prompt_name: sentence.default_prompt_name().map(str::to_string),
            lower_case: sentence.do_lower_case(),
        };
        Ok(Self {
            loaded,
            preparation,
        })
    }

    /// How a text is prepared (prompt, whitespace, case) before it is tokenized.
    pub fn preparation(&self) -> &TextPreparation {
        &self.preparation
    }

    /// The loaded model, tokenizer and threads.
    pub fn model(&mut self) -> &mut Loaded {
        &mut self.loaded
    }

    /// The width of each embedding (before `truncate_dim`).
    pub fn embedding_dimension(&self) -> usize {
        self.sentence().embedding_dimension()
    }

    fn sentence(&self) -> &oxformer_heads::SentenceTransformer {
        self.loaded
            .sentence_transformer()
            .expect("loaded as a sentence-transformers folder")
    }

    /// The embedding of each text, in input order, as `encode(texts, **options)`.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for a `prompt_name` the folder does not have or a
    /// `truncate_dim` of 0; [`Error::InvalidInput`] for an empty text; model errors.
    pub fn run(
        &self,
        texts: &[&str],
        options: &SentenceEmbeddingsOptions,
    ) -> Result<Vec<Vec<f32>>> {
        self.embed(TASK, texts, options)
    }

    /// As [`Self::run`] for texts or token ids, an over-long input cut to the model's length
    /// on `side` (`None`: the tokenizer's `truncation_side`, as [`Self::run`]): token ids keep
    /// their first (`Right`) or last (`Left`) tokens, as the tokenizer truncates an encoding
    /// made without special tokens.
    ///
    /// # Errors
    /// As [`Self::run`]; [`Error::InvalidInput`] for empty token ids, an id the tokenizer does
    /// not know, or token ids while a prompt applies (`prompt`, `prompt_name` or the folder's
    /// default prompt).
    pub fn run_inputs(
        &self,
        inputs: &[EmbeddingInput<'_>],
        options: &SentenceEmbeddingsOptions,
        side: Option<Side>,
    ) -> Result<Vec<Vec<f32>>> {
        self.embed_inputs(TASK, inputs, options, side)
    }

    /// The cosine similarity of `source`'s embedding with each of `sentences`' (the HF
    /// Inference API's `sentence-similarity`), embeddings made as [`Self::run`] makes them.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for no sentences or an empty text; as [`Self::run`].
    pub fn similarity(
        &self,
        source: &str,
        sentences: &[&str],
        options: &SentenceEmbeddingsOptions,
    ) -> Result<SimilarityScores> {
        self.similarity_on(source, sentences, options, None)
    }

    /// As [`Self::similarity`], an over-long text cut on `side` (`None`: the tokenizer's
    /// `truncation_side`, as [`Self::similarity`]).
    ///
    /// # Errors
    /// As [`Self::similarity`].
    pub fn similarity_on(
        &self,
        source: &str,
        sentences: &[&str],
        options: &SentenceEmbeddingsOptions,
        side: Option<Side>,
    ) -> Result<SimilarityScores> {
        if sentences.is_empty() {
            return Err(Error::input(SIMILARITY_TASK, "`sentences` is empty"));
        }
        let mut inputs = Vec::with_capacity(sentences.len() + 1);
        inputs.push(EmbeddingInput::Text(source));
        inputs.extend(sentences.iter().map(|&text| EmbeddingInput::Text(text)));
        let embeddings = self.embed_inputs(SIMILARITY_TASK, &inputs, options, side)?;
        let (source, others) = embeddings.split_first().expect("at least two texts");
        Ok(SimilarityScores(
            others.iter().map(|other| cosine(source, other)).collect(),
        ))
    }

    fn embed(
        &self,
        task: &'static str,
        texts: &[&str],
        options: &SentenceEmbeddingsOptions,
    ) -> Result<Vec<Vec<f32>>> {
        let inputs: Vec<EmbeddingInput<'_>> = texts
            .iter()
            .map(|text| EmbeddingInput::Text(text))
            .collect();
        self.embed_inputs(task, &inputs, options, None)
    }

    fn embed_inputs(
        &self,
        task: &'static str,
        inputs: &[EmbeddingInput<'_>],
        options: &SentenceEmbeddingsOptions,
        side: Option<Side>,
    ) -> Result<Vec<Vec<f32>>> {
        if options.truncate_dim == Some(0) {
            return Err(Error::option(task, "truncate_dim", "must be at least 1"));
        }
        let prompt = self.preparation.prompt(task, options)?;
        let prompt_length = match prompt {
            Some(prompt) if !prompt.is_empty() => {
                self.prompt_length(task, prompt, options.max_length)?
            }
            _ => 0,
        };
        let mut features = Vec::with_capacity(inputs.len());
        for input in inputs {
            let feature = match *input {
                EmbeddingInput::Text(text) => {
                    if text.is_empty() {
                        return Err(Error::input(task, "empty text"));
                    }
                    self.loaded.encode_single_on(
                        task,
                        &self.preparation.text(prompt, text),
                        None,
                        true,
                        options.max_length,
                        side,
                    )?
                }
                EmbeddingInput::TokenIds(ids) => {
                    if prompt_length > 0 {
                        return Err(Error::input(
                            task,
                            "token ids take no prompt; this folder has a default prompt or one \
                             was asked for: send text",
                        ));
                    }
                    self.loaded
                        .feature_from_ids(task, ids, true, options.max_length, side)?
                }
            };
            features.push(feature);
        }
        let rows =
            self.loaded
                .forward_after_prompt(&features, options.batch_size, prompt_length)?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let RowOutput::Sentence(mut embedding) = row else {
                    unreachable!("a sentence-transformers model gives sentence embeddings")
                };
                if let Some(dim) = options.truncate_dim {
                    embedding.truncate(dim);
                }
                if options.normalize_embeddings {
                    normalize(&mut embedding);
                }
                embedding
            })
            .collect())
    }

    /// `_get_prompt_length`: the prompt's tokens with the leading special token, without a
    /// trailing special one (cut to the same length as the texts).
    fn prompt_length(
        &self,
        task: &'static str,
        prompt: &str,
        max_length: Option<usize>,
    ) -> Result<usize> {
        let feature = self.loaded.encode_single_on(
            task,
            &self.preparation.text(None, prompt),
            None,
            true,
            max_length,
            None,
        )?;
        let special = self.loaded.tokenizer().all_special_ids();
        let ends_special = feature.ids.last().is_some_and(|id| special.contains(id));
        Ok(feature.ids.len() - usize::from(ends_special))
    }
}

/// `util.cos_sim` of two embeddings: each normalised (eps 1e-12), then their dot product.
fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    let (norm_a, norm_b) = (norm(a), norm(b));
    a.iter()
        .zip(b)
        .map(|(x, y)| (x / norm_a) * (y / norm_b))
        .sum()
}
