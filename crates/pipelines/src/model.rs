//! What every encoder pipeline shares: a model folder loaded with its tokenizer, and batched
//! forward passes with dynamic padding over length-sorted batches.

use std::path::{Path, PathBuf};

use ndarray::{Array2, s};
use oxformer_heads::{EncoderInput, EncoderModel, HeadKind, HeadOutput, SentenceTransformer};
use oxformer_models::ModelConfig;
use oxformer_tokenizer::{EncodeInput, EncodeOptions, Encoding, Side, Tokenizer, Truncation};
use tokenizers::{Decoder, ModelWrapper};

use crate::error::{Error, Result};

/// Inputs per forward pass when the options leave it at 0.
pub(crate) const DEFAULT_BATCH_SIZE: usize = 8;

/// One row of model input: token ids and token types, without padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Feature {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
}

impl Feature {
    /// The real tokens of an encoding (its attended positions).
    pub fn from_encoding(encoding: &Encoding) -> Self {
        let attended = |index: &usize| encoding.attention_mask()[*index] == 1;
        let indices: Vec<usize> = (0..encoding.len()).filter(attended).collect();
        Self {
            ids: indices.iter().map(|&index| encoding.ids()[index]).collect(),
            type_ids: indices
                .iter()
                .map(|&index| encoding.type_ids()[index])
                .collect(),
        }
    }
}

/// The output of one feature, cut to its own length.
#[derive(Debug, Clone)]
pub(crate) enum RowOutput {
    /// Sequence classification logits, (labels,).
    Logits(Vec<f32>),
    /// Token classification logits (tokens, labels), or masked-LM logits (tokens, vocab).
    TokenLogits(Array2<f32>),
    /// Question answering start and end logits, (tokens,) each.
    Span { start: Vec<f32>, end: Vec<f32> },
    /// The last hidden state, (tokens, hidden).
    Hidden(Array2<f32>),
    /// A sentence-transformers embedding, (dim,).
    Sentence(Vec<f32>),
}

/// The head a task needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeadNeed {
    SequenceClassification,
    TokenClassification,
    QuestionAnswering,
    MaskedLm,
    /// A base model (no head) or a sentence-transformers folder.
    Base,
}

enum Backbone {
    Encoder(EncoderModel),
    Sentence(SentenceTransformer),
}

/// A model folder loaded for a pipeline: the model (with its head), its config and its
/// tokenizer, and the threads its forward passes run on.
pub struct Loaded {
    dir: PathBuf,
    backbone: Backbone,
    config: ModelConfig,
    tokenizer: Tokenizer,
    /// `max_seq_length` of a sentence-transformers folder (`sentence_bert_config.json`).
    sentence_max_length: Option<usize>,
}

impl Loaded {
    /// Loads the folder (or model id) `model` as transformers' pipelines do, as an
    /// [`EncoderModel`] with the head its config names, or with `head` when given (feature
    /// extraction loads the base model of any checkpoint, as transformers' `AutoModel` does).
    /// A sentence-transformers folder is read as the plain model folder it also is.
    pub(crate) fn load(model: &str, head: Option<HeadKind>) -> Result<Self> {
        let dir = oxformer_nn::hub::resolve_model(model).map_err(Error::Model)?;
        let backbone = match head {
            Some(head) => Backbone::Encoder(EncoderModel::from_folder_as(&dir, head)?),
            None => Backbone::Encoder(EncoderModel::from_folder(&dir)?),
        };
        Self::with_backbone(dir, backbone, None)
    }

    /// Loads a sentence-transformers folder (or model id) as [`SentenceTransformer`]: its
    /// modules, limits and prompts.
    pub(crate) fn load_sentence_transformer(task: &'static str, model: &str) -> Result<Self> {
        let dir = oxformer_nn::hub::resolve_model(model).map_err(Error::Model)?;
        if !SentenceTransformer::is_sentence_transformers(&dir) {
            return Err(Error::WrongHead {
                task,
                dir,
                expected: "a sentence-transformers folder (with modules.json)",
                found: "a folder without modules.json (feature-extraction gives its token \
                        embeddings)"
                    .to_string(),
            });
        }
        let sentence = SentenceTransformer::from_folder(&dir)?;
        let max_length = sentence.max_seq_length();
        Self::with_backbone(dir, Backbone::Sentence(sentence), max_length)
    }

    fn with_backbone(
        dir: PathBuf,
        backbone: Backbone,
        sentence_max_length: Option<usize>,
    ) -> Result<Self> {
        let config = match &backbone {
            Backbone::Encoder(model) => model.config().clone(),
            Backbone::Sentence(model) => model.transformer().config().clone(),
        };
        let tokenizer = Tokenizer::from_folder(&dir)?;
        Ok(Self {
            dir,
            backbone,
            config,
            tokenizer,
            sentence_max_length,
        })
    }

    /// The model folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The model's config.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Runs forward passes on `threads` threads (0: one per core) instead of the global pool.
    ///
    /// # Errors
    /// When the operating system refuses the threads.
    pub fn set_threads(&mut self, threads: usize) -> Result<()> {
        match &mut self.backbone {
            Backbone::Encoder(model) => model.set_num_threads(threads)?,
            Backbone::Sentence(model) => model.set_num_threads(threads)?,
        }
        Ok(())
    }

    /// `convert_tokens_to_string`: the tokenizer's decoder applied to token spellings
    /// (`["Hu", "##gging"]` → `"Hugging"`), or the tokens joined by spaces without a decoder.
    pub(crate) fn tokens_to_string(&self, tokens: &[&str]) -> String {
        let owned: Vec<String> = tokens.iter().map(|token| token.to_string()).collect();
        match self.tokenizer.backend().get_decoder() {
            Some(decoder) => decoder.decode(owned).unwrap_or_else(|_| tokens.join(" ")),
            None => tokens.join(" "),
        }
    }

    /// Whether the tokenizer's model marks word continuations (`continuing_subword_prefix`,
    /// WordPiece's `##`), which lets token classification find words exactly.
    pub(crate) fn has_subword_prefix(&self) -> bool {
        match self.tokenizer.backend().get_model() {
            ModelWrapper::WordPiece(model) => !model.continuing_subword_prefix.is_empty(),
            ModelWrapper::BPE(model) => model
                .continuing_subword_prefix
                .as_deref()
                .is_some_and(|prefix| !prefix.is_empty()),
            _ => false,
        }
    }

    /// Computes padded positions as transformers does, instead of leaving them 0 (slower on
    /// padded batches; only outputs that show padded positions need it).
    pub(crate) fn compute_padding(&mut self) {
        if let Backbone::Encoder(model) = &mut self.backbone {
            model.set_skip_padding(false);
        }
    }

    /// The sentence-transformers model, when loaded as one.
    pub(crate) fn sentence_transformer(&self) -> Option<&SentenceTransformer> {
        match &self.backbone {
            Backbone::Sentence(model) => Some(model),
            Backbone::Encoder(_) => None,
        }
    }

    /// Whether this is a sentence-transformers folder.
    pub(crate) fn is_sentence_transformers(&self) -> bool {
        matches!(self.backbone, Backbone::Sentence(_))
    }

    /// The label of output `id` (`id2label`), `LABEL_{id}` when the config has none.
    pub(crate) fn label(&self, id: usize) -> String {
        self.config
            .common()
            .label(id)
            .map_or_else(|| format!("LABEL_{id}"), str::to_string)
    }

    /// An error unless the model's head is what `task` needs.
    pub(crate) fn expect_head(&self, task: &'static str, need: HeadNeed) -> Result<()> {
        let head = match &self.backbone {
            Backbone::Encoder(model) => Some(model.head()),
            Backbone::Sentence(_) => None,
        };
        let (ok, expected) = match need {
            HeadNeed::SequenceClassification => (
                matches!(head, Some(HeadKind::SequenceClassification)),
                "a *ForSequenceClassification head",
            ),
            HeadNeed::TokenClassification => (
                matches!(head, Some(HeadKind::TokenClassification)),
                "a *ForTokenClassification head",
            ),
            HeadNeed::QuestionAnswering => (
                matches!(head, Some(HeadKind::QuestionAnswering)),
                "a *ForQuestionAnswering head",
            ),
            HeadNeed::MaskedLm => (
                matches!(head, Some(HeadKind::MaskedLm)),
                "a *ForMaskedLM head",
            ),
            HeadNeed::Base => (
                matches!(head, None | Some(HeadKind::Base)),
                "no task head (a base model such as BertModel, or a sentence-transformers folder)",
            ),
        };
        if ok {
            return Ok(());
        }
        let architectures = &self.config.common().architectures;
        Err(Error::WrongHead {
            task,
            dir: self.dir.clone(),
            expected,
            found: if self.is_sentence_transformers() {
                "a sentence-transformers model".to_string()
            } else if architectures.is_empty() {
                "a model without `architectures`".to_string()
            } else {
                architectures.join(", ")
            },
        })
    }

    /// The most positions the model itself can take.
    fn position_limit(&self) -> usize {
        match &self.config {
            ModelConfig::Bert(config) => config.max_position_embeddings,
            // Positions start after the padding index.
            ModelConfig::Roberta(config) | ModelConfig::XlmRoberta(config) => config
                .max_position_embeddings
                .saturating_sub(config.common.pad_token_id.unwrap_or(1) as usize + 1),
            ModelConfig::DistilBert(config) => config.max_position_embeddings,
            ModelConfig::Gpt2(config) => config.n_positions,
            // relative positions: no limit of its own
            ModelConfig::T5(_) => usize::MAX,
            ModelConfig::Bart(config) => config.max_position_embeddings,
            ModelConfig::Marian(config) => config.max_position_embeddings,
        }
    }

    /// The most tokens one sequence may have: the tokenizer's `model_max_length`, capped by the
    /// model's position embeddings (and by a sentence-transformers folder's `max_seq_length`).
    pub(crate) fn max_length(&self) -> usize {
        let positions = self.position_limit();
        let limit = self
            .tokenizer
            .model_max_length()
            .map_or(positions, |limit| limit.min(positions));
        self.sentence_max_length
            .map_or(limit, |sentence| sentence.min(limit))
    }

    /// The length `truncation` cuts an input to: `max_length` when given (transformers'
    /// tokenizer argument, which wins over the tokenizer's `model_max_length`), at most the
    /// model's positions; otherwise [`Loaded::max_length`].
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for a `max_length` of 0.
    fn cut_length(&self, task: &'static str, max_length: Option<usize>) -> Result<usize> {
        match max_length {
            None => Ok(self.max_length()),
            Some(0) => Err(Error::option(task, "max_length", "must be at least 1")),
            // transformers would cut at `max_length` and then fail in the position embeddings.
            Some(length) => Ok(length.min(self.position_limit())),
        }
    }

    /// Encodes one text (or pair) for a whole-sequence task: with `truncation` cut to
    /// [`Loaded::max_length`] (longest first), otherwise an error when it does not fit the
    /// model's positions (transformers runs a text longer than the tokenizer's
    /// `model_max_length` if the model can take it).
    pub(crate) fn encode_single(
        &self,
        task: &'static str,
        text: &str,
        pair: Option<&str>,
        truncation: bool,
    ) -> Result<Feature> {
        self.encode_single_on(task, text, pair, truncation, None, None)
    }

    /// [`Loaded::encode_single`], with `truncation` cut to `max_length` tokens (`None`: the
    /// model's length; see [`Loaded::cut_length`]) on `side` (`None`: the tokenizer's
    /// `truncation_side`). Without `truncation`, `max_length` is not used.
    ///
    /// # Errors
    /// An input longer than the model's positions without `truncation`; a `max_length` of 0,
    /// or below the special tokens the tokenizer adds; tokenizer errors.
    pub(crate) fn encode_single_on(
        &self,
        task: &'static str,
        text: &str,
        pair: Option<&str>,
        truncation: bool,
        max_length: Option<usize>,
        side: Option<Side>,
    ) -> Result<Feature> {
        let input = match pair {
            Some(pair) => EncodeInput::Pair(text, pair),
            None => EncodeInput::Single(text),
        };
        let max_length = if truncation {
            self.cut_length(task, max_length)?
        } else {
            self.position_limit()
        };
        let options = EncodeOptions {
            truncation: if truncation {
                Truncation::LongestFirst
            } else {
                Truncation::None
            },
            // A `max_length` without truncation would truncate anyway (as in transformers).
            max_length: truncation.then_some(max_length),
            truncation_side: side,
            ..EncodeOptions::default()
        };
        let encoding = self.tokenizer.encode(input, &options)?;
        if encoding.len() > max_length {
            return Err(Error::input(
                task,
                format!(
                    "the input has {} tokens but the model takes at most {max_length}; \
                     ask for truncation to cut it",
                    encoding.len()
                ),
            ));
        }
        Ok(Feature::from_encoding(&encoding))
    }

    /// The feature of token ids given by a client (special tokens included, as the tokenizer
    /// makes them): with `truncation` cut to `max_length` (`None`: the model's length; see
    /// [`Loaded::cut_length`]) on `side` (`None`: the tokenizer's `truncation_side`), as the
    /// tokenizer truncates an encoding made without special tokens; otherwise an error when
    /// they do not fit the model's positions.
    pub(crate) fn feature_from_ids(
        &self,
        task: &'static str,
        ids: &[u32],
        truncation: bool,
        max_length: Option<usize>,
        side: Option<Side>,
    ) -> Result<Feature> {
        if ids.is_empty() {
            return Err(Error::input(task, "empty token ids"));
        }
        if let Some(id) = ids
            .iter()
            .find(|&&id| self.tokenizer.id_to_token(id).is_none())
        {
            return Err(Error::input(
                task,
                format!("token id {id} is not one of the tokenizer's"),
            ));
        }
        let keep = if truncation {
            ids.len().min(self.cut_length(task, max_length)?)
        } else if ids.len() > self.position_limit() {
            return Err(Error::input(
                task,
                format!(
                    "the input has {} tokens but the model takes at most {}; ask for \
                     truncation to cut it",
                    ids.len(),
                    self.position_limit()
                ),
            ));
        } else {
            ids.len()
        };
        let kept = match side.unwrap_or(self.tokenizer.truncation_side()) {
            Side::Right => &ids[..keep],
            Side::Left => &ids[ids.len() - keep..],
        };
        Ok(Feature {
            ids: kept.to_vec(),
            type_ids: vec![0; kept.len()],
        })
    }

    /// Runs the model on every feature, in batches of `batch_size` (0: the default) of similar
    /// lengths, each padded to its longest row; returns one output per feature, in order.
    ///
    /// # Errors
    /// Model errors, and an empty feature (no tokens at all).
    pub(crate) fn forward(
        &self,
        features: &[Feature],
        batch_size: usize,
    ) -> Result<Vec<RowOutput>> {
        self.forward_after_prompt(features, batch_size, 0)
    }

    /// As [`Loaded::forward`] for texts that each start with a prompt of `prompt_length` tokens
    /// (sentence-transformers folders whose pooling leaves the prompt out).
    pub(crate) fn forward_after_prompt(
        &self,
        features: &[Feature],
        batch_size: usize,
        prompt_length: usize,
    ) -> Result<Vec<RowOutput>> {
        let batch_size = if batch_size == 0 {
            DEFAULT_BATCH_SIZE
        } else {
            batch_size
        };
        let mut order: Vec<usize> = (0..features.len()).collect();
        // Longest first, so that a batch's rows have similar lengths (stable: ties in order).
        order.sort_by_key(|&index| std::cmp::Reverse(features[index].ids.len()));
        let mut outputs: Vec<Option<RowOutput>> = (0..features.len()).map(|_| None).collect();
        for chunk in order.chunks(batch_size) {
            let rows: Vec<&Feature> = chunk.iter().map(|&index| &features[index]).collect();
            let results = self.forward_batch_padded(&rows, false, prompt_length)?;
            for (&index, result) in chunk.iter().zip(results) {
                outputs[index] = Some(result);
            }
        }
        Ok(outputs
            .into_iter()
            .map(|output| output.expect("every feature belongs to one batch"))
            .collect())
    }

    /// transformers' own batching (`batch_size` > 1 in a pipeline call): `batch_size`
    /// consecutive features padded together, and each output keeps its batch's padded length
    /// (what transformers' feature-extraction returns).
    pub(crate) fn forward_in_order_padded(
        &self,
        features: &[Feature],
        batch_size: usize,
    ) -> Result<Vec<RowOutput>> {
        let mut outputs = Vec::with_capacity(features.len());
        for chunk in features.chunks(batch_size.max(1)) {
            let rows: Vec<&Feature> = chunk.iter().collect();
            outputs.extend(self.forward_batch_padded(&rows, true, 0)?);
        }
        Ok(outputs)
    }

    /// One padded batch through the model; outputs keep the padded length when
    /// `keep_padding`, else are cut to each row's length.
    fn forward_batch_padded(
        &self,
        rows: &[&Feature],
        keep_padding: bool,
        prompt_length: usize,
    ) -> Result<Vec<RowOutput>> {
        let longest = rows.iter().map(|row| row.ids.len()).max().unwrap_or(0);
        let pad_id = self.tokenizer.pad_token_id().unwrap_or(0);
        let mut input_ids = Array2::<u32>::from_elem((rows.len(), longest), pad_id);
        let mut attention_mask = Array2::<u32>::zeros((rows.len(), longest));
        let mut token_type_ids = Array2::<u32>::zeros((rows.len(), longest));
        for (row_index, row) in rows.iter().enumerate() {
            let length = row.ids.len();
            for position in 0..length {
                input_ids[[row_index, position]] = row.ids[position];
                attention_mask[[row_index, position]] = 1;
                token_type_ids[[row_index, position]] = row.type_ids[position];
            }
        }
        // Token types go to the model only when the tokenizer returns them
        // (`model_input_names`), as in transformers: RoBERTa/XLM-R/DistilBERT take none.
        let uses_token_types = self
            .tokenizer
            .model_input_names()
            .iter()
            .any(|name| name == "token_type_ids");
        let input = EncoderInput {
            input_ids: input_ids.view(),
            attention_mask: attention_mask.view(),
            token_type_ids: uses_token_types.then(|| token_type_ids.view()),
        };
        let lengths: Vec<usize> = rows
            .iter()
            .map(|row| if keep_padding { longest } else { row.ids.len() })
            .collect();
        match &self.backbone {
            Backbone::Encoder(model) => Ok(split_rows(model.forward(&input)?, &lengths)),
            Backbone::Sentence(model) => Ok(model
                .forward_with_prompt(&input, prompt_length)?
                .sentence_embedding
                .rows()
                .into_iter()
                .map(|row| RowOutput::Sentence(row.to_vec()))
                .collect()),
        }
    }
}

/// Cuts a batch's output into its rows, each to its own length.
fn split_rows(output: HeadOutput, lengths: &[usize]) -> Vec<RowOutput> {
    match output {
        HeadOutput::SequenceClassification { logits } => logits
            .rows()
            .into_iter()
            .map(|row| RowOutput::Logits(row.to_vec()))
            .collect(),
        HeadOutput::TokenClassification { logits } | HeadOutput::MaskedLm { logits } => lengths
            .iter()
            .enumerate()
            .map(|(row, &length)| {
                RowOutput::TokenLogits(logits.slice(s![row, ..length, ..]).to_owned())
            })
            .collect(),
        HeadOutput::QuestionAnswering {
            start_logits,
            end_logits,
        } => lengths
            .iter()
            .enumerate()
            .map(|(row, &length)| RowOutput::Span {
                start: start_logits.slice(s![row, ..length]).to_vec(),
                end: end_logits.slice(s![row, ..length]).to_vec(),
            })
            .collect(),
        HeadOutput::Base {
            last_hidden_state, ..
        } => lengths
            .iter()
            .enumerate()
            .map(|(row, &length)| {
                RowOutput::Hidden(last_hidden_state.slice(s![row, ..length, ..]).to_owned())
            })
            .collect(),
    }
}
