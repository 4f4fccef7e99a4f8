//! What goes into an encode call ([`EncodeInput`], [`EncodeOptions`]) and what comes out
//! ([`Encoding`]).

/// One input of an encode call: a text, or a pair of texts (question and context, premise and
/// hypothesis, ...).
///
/// Built from `&str`, `&String`, `(&str, &str)` and `(&String, &String)`:
/// ```
/// use oxformer_tokenizer::EncodeInput;
/// let single: EncodeInput = "Hello".into();
/// let pair: EncodeInput = ("Where?", "In London.").into();
/// assert!(matches!(pair, EncodeInput::Pair(_, _)));
/// # let _ = single;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeInput<'a> {
    /// One text.
    Single(&'a str),
    /// A first and a second text, encoded as one sequence with the tokenizer's pair template.
    Pair(&'a str, &'a str),
}

impl<'a> EncodeInput<'a> {
    /// The first text.
    pub fn first(&self) -> &'a str {
        match *self {
            EncodeInput::Single(text) | EncodeInput::Pair(text, _) => text,
        }
    }

    /// The second text of a pair.
    pub fn second(&self) -> Option<&'a str> {
        match *self {
            EncodeInput::Single(_) => None,
            EncodeInput::Pair(_, second) => Some(second),
        }
    }

    /// The text a sequence id (0 or 1) refers to.
    pub(crate) fn text(&self, sequence: usize) -> Option<&'a str> {
        match sequence {
            0 => Some(self.first()),
            1 => self.second(),
            _ => None,
        }
    }
}

impl<'a> From<&'a str> for EncodeInput<'a> {
    fn from(text: &'a str) -> Self {
        EncodeInput::Single(text)
    }
}

impl<'a> From<&'a String> for EncodeInput<'a> {
    fn from(text: &'a String) -> Self {
        EncodeInput::Single(text)
    }
}

impl<'a> From<(&'a str, &'a str)> for EncodeInput<'a> {
    fn from((first, second): (&'a str, &'a str)) -> Self {
        EncodeInput::Pair(first, second)
    }
}

impl<'a> From<(&'a String, &'a String)> for EncodeInput<'a> {
    fn from((first, second): (&'a String, &'a String)) -> Self {
        EncodeInput::Pair(first, second)
    }
}

/// How to cut inputs that are longer than `max_length` (transformers' `truncation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Truncation {
    /// Do not truncate (`truncation=False`). Note: as in transformers, setting `max_length` while both
    /// truncation and padding are off truncates with [`Truncation::LongestFirst`].
    #[default]
    None,
    /// Remove tokens from the longer of the two sequences first (`"longest_first"`, `True`).
    LongestFirst,
    /// Only truncate the first sequence (`"only_first"`).
    OnlyFirst,
    /// Only truncate the second sequence of a pair (`"only_second"`); an error for single texts
    /// that need truncation.
    OnlySecond,
}

/// How to pad a batch (transformers' `padding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Padding {
    /// No padding (`padding=False`).
    #[default]
    None,
    /// Pad to the longest sequence of the batch (`padding=True` / `"longest"`).
    Longest,
    /// Pad to `max_length`, or to the model's maximum length when `max_length` is not set
    /// (`"max_length"`).
    MaxLength,
}

/// Which end of a sequence padding or truncation acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Side {
    /// The start.
    Left,
    /// The end.
    #[default]
    Right,
}

/// Options of [`Tokenizer::encode`](crate::Tokenizer::encode) and
/// [`Tokenizer::encode_batch`](crate::Tokenizer::encode_batch), with transformers' defaults
/// (`EncodeOptions::default()` is `tokenizer(text)`).
///
/// ```
/// use oxformer_tokenizer::{EncodeOptions, Padding, Truncation};
/// // tokenizer(question, context, truncation="only_second", max_length=384, stride=128,
/// //           return_overflowing_tokens=True, padding="max_length")
/// let options = EncodeOptions {
///     truncation: Truncation::OnlySecond,
///     max_length: Some(384),
///     stride: 128,
///     return_overflowing: true,
///     padding: Padding::MaxLength,
///     ..EncodeOptions::default()
/// };
/// # let _ = options;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Add the template's special tokens (`[CLS]`, `[SEP]`, `<s>`, ...). Default `true`.
    pub add_special_tokens: bool,
    /// Truncation strategy. Default [`Truncation::None`].
    pub truncation: Truncation,
    /// Length limit for truncation and for [`Padding::MaxLength`], special tokens included. `None`
    /// means the tokenizer's `model_max_length` (and no truncation / no padding when the tokenizer
    /// has no limit), as in transformers.
    pub max_length: Option<usize>,
    /// Number of tokens each overflowing window repeats from the previous one. Default 0.
    pub stride: usize,
    /// Keep the windows that truncation cut off ([`Encoding::overflowing`]); otherwise they are
    /// dropped (`return_overflowing_tokens`). Default `false`.
    pub return_overflowing: bool,
    /// Padding strategy. Default [`Padding::None`].
    pub padding: Padding,
    /// Round the padded length up to a multiple of this. Default `None`.
    pub pad_to_multiple_of: Option<usize>,
    /// Side to pad on; `None` is the tokenizer's `padding_side` (tokenizer_config.json, default
    /// right).
    pub padding_side: Option<Side>,
    /// Side to truncate on; `None` is the tokenizer's `truncation_side` (tokenizer_config.json,
    /// default right).
    pub truncation_side: Option<Side>,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            add_special_tokens: true,
            truncation: Truncation::None,
            max_length: None,
            stride: 0,
            return_overflowing: false,
            padding: Padding::None,
            pad_to_multiple_of: None,
            padding_side: None,
            truncation_side: None,
        }
    }
}

/// One encoded input (or one overflowing window of it), with everything transformers' fast
/// tokenizers return: ids, masks, token types, offsets, word and sequence ids, tokens.
///
/// All vectors have the same length, [`Encoding::len`]. Padding tokens have attention mask 0,
/// special-tokens mask 1, offsets `(0, 0)` and no word or sequence id.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Encoding {
    pub(crate) ids: Vec<u32>,
    pub(crate) type_ids: Vec<u32>,
    pub(crate) tokens: Vec<String>,
    pub(crate) offsets: Vec<(usize, usize)>,
    pub(crate) byte_offsets: Vec<(usize, usize)>,
    pub(crate) word_ids: Vec<Option<u32>>,
    pub(crate) sequence_ids: Vec<Option<usize>>,
    pub(crate) special_tokens_mask: Vec<u32>,
    pub(crate) attention_mask: Vec<u32>,
    pub(crate) overflowing: Vec<Encoding>,
}

impl Encoding {
    /// Number of tokens (padding included).
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are no tokens at all (an empty text without special tokens).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Token ids (`input_ids`).
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Token type ids (`token_type_ids`): 0 for the first sequence, 1 for the second (per the
    /// template), the pad type for padding.
    pub fn type_ids(&self) -> &[u32] {
        &self.type_ids
    }

    /// 1 for real tokens, 0 for padding (`attention_mask`).
    pub fn attention_mask(&self) -> &[u32] {
        &self.attention_mask
    }

    /// 1 for special tokens added by the template and for padding, 0 otherwise
    /// (`special_tokens_mask`).
    pub fn special_tokens_mask(&self) -> &[u32] {
        &self.special_tokens_mask
    }

    /// The tokens as strings (`tokens()`), in the model's vocabulary form (`##ing`, `Ġthe`, `▁the`).
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// Character offsets `(start, end)` of each token in its own input text, counted in Unicode
    /// scalar values: exactly transformers' `offset_mapping` (Python `str` indices). `(0, 0)` for
    /// special tokens and padding. For slicing a Rust `&str` use [`Encoding::byte_offsets`].
    pub fn offsets(&self) -> &[(usize, usize)] {
        &self.offsets
    }

    /// The same spans as [`Encoding::offsets`] in bytes of the UTF-8 text, for `&text[start..end]`.
    pub fn byte_offsets(&self) -> &[(usize, usize)] {
        &self.byte_offsets
    }

    /// Index of the word each token belongs to (`word_ids()`), `None` for special tokens and
    /// padding. Words are numbered per sequence, from 0.
    pub fn word_ids(&self) -> &[Option<u32>] {
        &self.word_ids
    }

    /// Which input text each token comes from (`sequence_ids()`): `Some(0)` first, `Some(1)` second
    /// of a pair, `None` for special tokens and padding.
    pub fn sequence_ids(&self) -> &[Option<usize>] {
        &self.sequence_ids
    }

    /// The windows truncation cut off, in order, when [`EncodeOptions::return_overflowing`] was
    /// set (each one padded like this encoding); empty otherwise.
    pub fn overflowing(&self) -> &[Encoding] {
        &self.overflowing
    }

    /// This encoding followed by its overflowing windows: the rows transformers returns for one
    /// input with `return_overflowing_tokens=True`.
    pub fn windows(&self) -> impl Iterator<Item = &Encoding> {
        std::iter::once(self).chain(self.overflowing.iter())
    }
}

/// transformers' `overflow_to_sample_mapping` for a batch: for every window of every encoding
/// ([`Encoding::windows`], in order), the index of the input it came from.
///
/// ```
/// use oxformer_tokenizer::{overflow_to_sample_mapping, Encoding};
/// let batch = vec![Encoding::default(), Encoding::default()];
/// assert_eq!(overflow_to_sample_mapping(&batch), vec![0, 1]);
/// ```
pub fn overflow_to_sample_mapping(encodings: &[Encoding]) -> Vec<usize> {
    encodings
        .iter()
        .enumerate()
        .flat_map(|(sample, encoding)| std::iter::repeat_n(sample, 1 + encoding.overflowing.len()))
        .collect()
}
