//! The question-answering pipeline, as transformers/pipelines/question_answering.py (fast
//! tokenizer path): contexts longer than `max_seq_len` run in windows overlapping by
//! `doc_stride` tokens.

mod postprocess;

use serde::Serialize;

use oxformer_tokenizer::{EncodeInput, EncodeOptions, Encoding, Truncation};

use crate::error::{Error, Result};
use crate::model::{Feature, HeadNeed, Loaded, RowOutput};
use crate::text::python_slice;

const TASK: &str = "question-answering";

/// Options of [`QuestionAnsweringPipeline::run`], with transformers' defaults.
#[derive(Debug, Clone)]
pub struct QuestionAnsweringOptions {
    /// `top_k`: answers per input (default 1).
    pub top_k: usize,
    /// `doc_stride`: tokens each window repeats from the previous one (default
    /// `min(max_seq_len / 2, 128)`).
    pub doc_stride: Option<usize>,
    /// `max_answer_len`: longest answer in tokens (default 15).
    pub max_answer_len: usize,
    /// `max_seq_len`: tokens per window, question included (default
    /// `min(model_max_length, 384)`).
    pub max_seq_len: Option<usize>,
    /// `max_question_len` (default 64). Accepted for compatibility: like transformers with a
    /// fast tokenizer, it changes nothing.
    pub max_question_len: usize,
    /// `handle_impossible_answer`: also rank the empty answer (default false).
    pub handle_impossible_answer: bool,
    /// `align_to_words`: widen answers to whole words (default true).
    pub align_to_words: bool,
    /// Windows per forward pass (0: the default, 8).
    pub batch_size: usize,
}

impl Default for QuestionAnsweringOptions {
    fn default() -> Self {
        Self {
            top_k: 1,
            doc_stride: None,
            max_answer_len: 15,
            max_seq_len: None,
            max_question_len: 64,
            handle_impossible_answer: false,
            align_to_words: true,
            batch_size: 0,
        }
    }
}

/// A question and the context to find its answer in.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct QaInput {
    /// The question.
    pub question: String,
    /// The context.
    pub context: String,
}

/// An answer: `{"score", "start", "end", "answer"}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Answer {
    /// Probability of the span (summed over windows that found the same text).
    pub score: f64,
    /// Character offset of the answer's start in the context.
    pub start: usize,
    /// Character offset of its end.
    pub end: usize,
    /// The answer: `context[start:end]`.
    pub answer: String,
}

/// The result for one input: one answer, or a list when there are several (transformers
/// returns a bare dict exactly when one answer is left).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum QaOutput {
    /// Exactly one answer.
    One(Answer),
    /// Zero or several answers, best first.
    Many(Vec<Answer>),
}

impl QaOutput {
    /// The answers, best first.
    pub fn answers(&self) -> &[Answer] {
        match self {
            Self::One(answer) => std::slice::from_ref(answer),
            Self::Many(answers) => answers,
        }
    }
}

/// question-answering over a `*ForQuestionAnswering` model folder.
pub struct QuestionAnsweringPipeline {
    loaded: Loaded,
}

impl QuestionAnsweringPipeline {
    /// Loads a model folder (or id) with a question answering head and its tokenizer.
    ///
    /// # Errors
    /// When the folder cannot be loaded, or its head is not question answering.
    pub fn new(model: &str) -> Result<Self> {
        Self::from_loaded(Loaded::load(model, None)?)
    }

    pub(crate) fn from_loaded(loaded: Loaded) -> Result<Self> {
        loaded.expect_head(TASK, HeadNeed::QuestionAnswering)?;
        Ok(Self { loaded })
    }

    /// The loaded model, tokenizer and threads.
    pub fn model(&mut self) -> &mut Loaded {
        &mut self.loaded
    }

    /// Answers each question from its context, in input order.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an empty question or context, or a question too long to
    /// leave room for the context; [`Error::InvalidOption`] for `top_k` or `max_answer_len` 0,
    /// or `doc_stride` larger than `max_seq_len`; model errors.
    pub fn run(
        &self,
        inputs: &[QaInput],
        options: &QuestionAnsweringOptions,
    ) -> Result<Vec<QaOutput>> {
        if options.top_k < 1 {
            return Err(Error::option(TASK, "top_k", "must be at least 1"));
        }
        if options.max_answer_len < 1 {
            return Err(Error::option(TASK, "max_answer_len", "must be at least 1"));
        }
        let max_seq_len = options
            .max_seq_len
            .unwrap_or_else(|| self.loaded.max_length().min(384));
        if max_seq_len > self.loaded.max_length() {
            return Err(Error::option(
                TASK,
                "max_seq_len",
                format!(
                    "{max_seq_len} is more than the model's maximum length {}",
                    self.loaded.max_length()
                ),
            ));
        }
        let doc_stride = options.doc_stride.unwrap_or((max_seq_len / 2).min(128));
        if doc_stride > max_seq_len {
            return Err(Error::option(
                TASK,
                "doc_stride",
                format!("{doc_stride} is larger than max_seq_len {max_seq_len}"),
            ));
        }
        let encode_options = EncodeOptions {
            truncation: Truncation::OnlySecond,
            max_length: Some(max_seq_len),
            stride: doc_stride,
            return_overflowing: true,
            ..EncodeOptions::default()
        };
        let mut encodings = Vec::with_capacity(inputs.len());
        for input in inputs {
            if input.question.is_empty() {
                return Err(Error::input(TASK, "`question` cannot be empty"));
            }
            if input.context.is_empty() {
                return Err(Error::input(TASK, "`context` cannot be empty"));
            }
            let encoding = self
                .loaded
                .tokenizer()
                .encode(
                    EncodeInput::Pair(&input.question, &input.context),
                    &encode_options,
                )
                .map_err(|error| {
                    Error::input(
                        TASK,
                        format!(
                            "cannot fit the question and a part of the context in \
                             max_seq_len {max_seq_len} tokens with doc_stride {doc_stride}: {error}"
                        ),
                    )
                })?;
            encodings.push(encoding);
        }
        let features: Vec<Feature> = encodings
            .iter()
            .flat_map(|encoding| encoding.windows().map(Feature::from_encoding))
            .collect();
        let mut rows = self
            .loaded
            .forward(&features, options.batch_size)?
            .into_iter();

        let cls_id = self.loaded.tokenizer().cls_token_id();
        let pre_top_k = if options.align_to_words {
            options.top_k * 2 + 10
        } else {
            options.top_k
        };
        let mut results = Vec::with_capacity(inputs.len());
        for (input, encoding) in inputs.iter().zip(&encodings) {
            let mut answers = Vec::new();
            let mut min_null_score = 1_000_000.0_f32;
            for window in encoding.windows() {
                let Some(RowOutput::Span { start, end }) = rows.next() else {
                    unreachable!("one question-answering row per window");
                };
                // p_mask: only context tokens (sequence 1) and CLS may be in an answer.
                let allowed: Vec<bool> = (0..start.len())
                    .map(|index| {
                        window.sequence_ids()[index] == Some(1)
                            || Some(window.ids()[index]) == cls_id
                    })
                    .collect();
                let spans = postprocess::select_starts_ends(
                    &start,
                    &end,
                    &allowed,
                    &mut min_null_score,
                    pre_top_k,
                    options.handle_impossible_answer,
                    options.max_answer_len,
                );
                for span in spans {
                    let (char_start, char_end) =
                        span_to_chars(window, span.start, span.end, options.align_to_words);
                    let text = python_slice(&input.context, char_start, char_end);
                    postprocess::merge_answer(&mut answers, span.score, char_start, char_end, text);
                }
            }
            let mut answers = postprocess::finish_answers(
                answers,
                options.top_k,
                options.handle_impossible_answer,
                min_null_score,
            );
            results.push(if answers.len() == 1 {
                QaOutput::One(answers.remove(0))
            } else {
                QaOutput::Many(answers)
            });
        }
        Ok(results)
    }
}

/// `get_indices`: character span in the context of tokens `start..=end`; with `align_to_words`
/// widened to the words they fall in, falling back to token offsets when a token has no word.
fn span_to_chars(
    window: &Encoding,
    start: usize,
    end: usize,
    align_to_words: bool,
) -> (usize, usize) {
    if align_to_words {
        let words = (window.word_ids()[start], window.word_ids()[end]);
        if let (Some(start_word), Some(end_word)) = words {
            let start_chars = word_to_chars(window, start_word, 1);
            let end_chars = word_to_chars(window, end_word, 1);
            if let (Some((char_start, _)), Some((_, char_end))) = (start_chars, end_chars) {
                return (char_start, char_end);
            }
        }
    }
    (window.offsets()[start].0, window.offsets()[end].1)
}

/// `Encoding.word_to_chars(word, sequence_index)`: from the start of the word's first token to
/// the end of its last token in this window.
fn word_to_chars(window: &Encoding, word: u32, sequence: usize) -> Option<(usize, usize)> {
    let tokens: Vec<usize> = (0..window.len())
        .filter(|&index| {
            window.word_ids()[index] == Some(word) && window.sequence_ids()[index] == Some(sequence)
        })
        .collect();
    let first = *tokens.first()?;
    let last = *tokens.last()?;
    Some((window.offsets()[first].0, window.offsets()[last].1))
}
