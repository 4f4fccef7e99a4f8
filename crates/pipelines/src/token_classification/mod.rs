//! The token-classification pipeline (alias ner), as
//! transformers/pipelines/token_classification.py.

mod postprocess;

use serde::Serialize;

use oxformer_tokenizer::{EncodeInput, EncodeOptions, Truncation};

use crate::error::{Error, Result};
use crate::model::{Feature, HeadNeed, Loaded, RowOutput};
use postprocess::{SubwordRule, TokenView};

const TASK: &str = "token-classification";

/// `aggregation_strategy`: how tokens become entities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AggregationStrategy {
    /// Every token on its own, with its index.
    #[default]
    None,
    /// Adjacent tokens with the same tag (not starting a new `B-`) grouped, mean score.
    Simple,
    /// Each word takes its first token's label, then simple grouping.
    First,
    /// Each word takes the label of its highest-scoring token, then simple grouping.
    Max,
    /// Each word takes the label of its tokens' mean scores, then simple grouping.
    Average,
}

impl std::str::FromStr for AggregationStrategy {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "none" => Ok(Self::None),
            "simple" => Ok(Self::Simple),
            "first" => Ok(Self::First),
            "max" => Ok(Self::Max),
            "average" => Ok(Self::Average),
            _ => Err(Error::option(
                TASK,
                "aggregation_strategy",
                format!("`{name}` is not one of none, simple, first, max, average"),
            )),
        }
    }
}

/// Options of [`TokenClassificationPipeline::run`].
#[derive(Debug, Clone, Default)]
pub struct TokenClassificationOptions {
    /// `aggregation_strategy`; `None` means not given (transformers' default, `none`).
    pub aggregation_strategy: Option<AggregationStrategy>,
    /// `ignore_labels`: labels left out of the result; `None` means `["O"]`.
    pub ignore_labels: Option<Vec<String>>,
    /// `stride`: run texts longer than the model in windows overlapping by this many tokens
    /// (without it they are truncated).
    pub stride: Option<usize>,
    /// Windows per forward pass (0: the default, 8).
    pub batch_size: usize,
}

/// A token with its label (`aggregation_strategy` none).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenEntity {
    /// The label.
    pub entity: String,
    /// Its probability.
    pub score: f64,
    /// The token's index in its window (special tokens counted).
    pub index: usize,
    /// The token as the vocabulary spells it.
    pub word: String,
    /// Character offset of its start in the text.
    pub start: usize,
    /// Character offset of its end.
    pub end: usize,
}

/// A group of tokens or words with one tag (every other strategy).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EntityGroup {
    /// The tag, without `B-` / `I-`.
    pub entity_group: String,
    /// The mean score of the group.
    pub score: f64,
    /// The group's tokens decoded.
    pub word: String,
    /// Character offset of its start in the text.
    pub start: usize,
    /// Character offset of its end.
    pub end: usize,
}

/// One entity of the result: a token or a group, as the strategy gives.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Entity {
    /// `aggregation_strategy` none.
    Token(TokenEntity),
    /// Any other strategy.
    Group(EntityGroup),
}

impl Entity {
    /// The label (`entity`) or tag (`entity_group`).
    pub fn label(&self) -> &str {
        match self {
            Self::Token(token) => &token.entity,
            Self::Group(group) => &group.entity_group,
        }
    }

    /// The score.
    pub fn score(&self) -> f64 {
        match self {
            Self::Token(token) => token.score,
            Self::Group(group) => group.score,
        }
    }

    /// The character offset of the start.
    pub fn start(&self) -> usize {
        match self {
            Self::Token(token) => token.start,
            Self::Group(group) => group.start,
        }
    }

    /// The character offset of the end.
    pub fn end(&self) -> usize {
        match self {
            Self::Token(token) => token.end,
            Self::Group(group) => group.end,
        }
    }

    /// The word.
    pub fn word(&self) -> &str {
        match self {
            Self::Token(token) => &token.word,
            Self::Group(group) => &group.word,
        }
    }
}

/// token-classification over a `*ForTokenClassification` model folder.
pub struct TokenClassificationPipeline {
    loaded: Loaded,
}

impl TokenClassificationPipeline {
    /// Loads a model folder (or id) with a token classification head and its tokenizer.
    ///
    /// # Errors
    /// When the folder cannot be loaded, or its head is not token classification.
    pub fn new(model: &str) -> Result<Self> {
        Self::from_loaded(Loaded::load(model, None)?)
    }

    pub(crate) fn from_loaded(loaded: Loaded) -> Result<Self> {
        loaded.expect_head(TASK, HeadNeed::TokenClassification)?;
        Ok(Self { loaded })
    }

    /// The loaded model, tokenizer and threads.
    pub fn model(&mut self) -> &mut Loaded {
        &mut self.loaded
    }

    /// The entities of each text, in input order.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an empty text; [`Error::InvalidOption`] for a stride not
    /// below the model's length or given with `aggregation_strategy` none; model errors.
    pub fn run(
        &self,
        texts: &[&str],
        options: &TokenClassificationOptions,
    ) -> Result<Vec<Vec<Entity>>> {
        let max_length = self.loaded.max_length();
        if let Some(stride) = options.stride {
            if stride >= max_length {
                return Err(Error::option(
                    TASK,
                    "stride",
                    format!("must be less than the model's maximum length {max_length}"),
                ));
            }
            if options.aggregation_strategy == Some(AggregationStrategy::None) {
                return Err(Error::option(
                    TASK,
                    "stride",
                    "was given to process the whole text, but aggregation_strategy \"none\" \
                     cannot merge windows; choose simple, first, max or average",
                ));
            }
        }
        let strategy = options.aggregation_strategy.unwrap_or_default();
        let encode_options = EncodeOptions {
            truncation: Truncation::LongestFirst,
            max_length: Some(max_length),
            stride: options.stride.unwrap_or(0),
            return_overflowing: options.stride.is_some(),
            // transformers pads the windows together; unpadded windows give the same entities.
            ..EncodeOptions::default()
        };
        let mut encodings = Vec::with_capacity(texts.len());
        for text in texts {
            if text.is_empty() {
                return Err(Error::input(TASK, "empty text"));
            }
            encodings.push(
                self.loaded
                    .tokenizer()
                    .encode(EncodeInput::Single(text), &encode_options)?,
            );
        }
        let features: Vec<Feature> = encodings
            .iter()
            .flat_map(|encoding| encoding.windows().map(Feature::from_encoding))
            .collect();
        let mut rows = self
            .loaded
            .forward(&features, options.batch_size)?
            .into_iter();

        let tokenizer = self.loaded.tokenizer();
        let rule = SubwordRule {
            word_aware: self.loaded.has_subword_prefix(),
            unk_id: tokenizer.unk_token_id(),
        };
        let default_ignore = vec!["O".to_string()];
        let ignore_labels = options.ignore_labels.as_ref().unwrap_or(&default_ignore);
        let id2label = |id: usize| self.loaded.label(id);
        let tokens_to_string = |tokens: &[&str]| self.loaded.tokens_to_string(tokens);

        let mut results = Vec::with_capacity(texts.len());
        for (text, encoding) in texts.iter().zip(&encodings) {
            let mut entities = Vec::new();
            let mut windows = 0;
            for window in encoding.windows() {
                windows += 1;
                let Some(RowOutput::TokenLogits(logits)) = rows.next() else {
                    unreachable!("one token-classification row per window");
                };
                let views: Vec<TokenView<'_>> = (0..logits.nrows())
                    .map(|index| TokenView {
                        id: window.ids()[index],
                        token: &window.tokens()[index],
                        offsets: window.offsets()[index],
                        special: window.special_tokens_mask()[index] == 1,
                    })
                    .collect();
                let scores = postprocess::softmax_scores(logits.view());
                let pre_entities = postprocess::gather_pre_entities(text, &views, &scores, rule);
                let grouped =
                    postprocess::aggregate(&pre_entities, strategy, &id2label, &tokens_to_string);
                entities.extend(
                    grouped.into_iter().filter(|entity| {
                        !ignore_labels.iter().any(|label| label == entity.label())
                    }),
                );
            }
            if windows > 1 {
                entities = postprocess::aggregate_overlapping_entities(entities);
            }
            results.push(entities);
        }
        Ok(results)
    }
}
