//! [`Tokenizer`]: transformers' `PreTrainedTokenizerFast` over the `tokenizers` crate
//! (tokenization_utils_fast.py in transformers 4.57).

use std::path::Path;
use std::sync::{Arc, Mutex};

use tokenizers::{
    DecoderWrapper, ModelWrapper, NormalizerWrapper, PaddingDirection, PaddingParams,
    PaddingStrategy, PostProcessor, PostProcessorWrapper, PreTokenizerWrapper, TruncationDirection,
    TruncationParams, TruncationStrategy,
};

use crate::config::{
    FileKind, FolderConfig, SpecialTokens, TokenSpec, TokenizerClass, read_folder_config,
};
use crate::encoding::{EncodeInput, EncodeOptions, Encoding, Padding, Side, Truncation};
use crate::error::{Result, TokenizerError};
use crate::marian::{self, Marian};
use crate::panics::catch_quietly;
use crate::sentencepiece::SpmModel;
use crate::slow::{self, SpmConverter};

/// The kind of subword model inside a tokenizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// WordPiece (BERT, DistilBERT).
    WordPiece,
    /// BPE (GPT-2, RoBERTa; byte-level when [`Tokenizer::is_byte_level`]).
    Bpe,
    /// Unigram (XLM-R, T5, ALBERT: SentencePiece models).
    Unigram,
    /// A plain word-to-id table.
    WordLevel,
}

/// The truncation and padding a call resolves to, as transformers' `set_truncation_and_padding`
/// sets them on the backend; the key of the cache of configured backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CallSettings {
    truncation: Option<(usize, usize, Truncation, Side)>,
    padding: Option<(Option<usize>, Side, Option<usize>)>,
}

/// How many differently configured backends are kept (one per distinct truncation/padding).
const CONFIGURED_CACHE: usize = 8;

/// The longest sequence [`Tokenizer::encode`] pads to (a million tokens, beyond any model's
/// positions): padding allocates every position, so a larger `max_length` or
/// `pad_to_multiple_of` is refused rather than allocated.
pub const MAX_PADDED_LENGTH: usize = 1 << 20;

/// A tokenizer with transformers' fast-tokenizer semantics: special tokens, truncation with
/// overflowing windows, padding, offsets, decoding.
///
/// ```no_run
/// use oxformer_tokenizer::{EncodeOptions, Tokenizer};
/// let tokenizer = Tokenizer::from_folder("models/bert-base-uncased")?;
/// let encoding = tokenizer.encode("Hello world!", &EncodeOptions::default())?;
/// assert_eq!(tokenizer.decode(encoding.ids(), true, None)?, "hello world!");
/// # Ok::<(), oxformer_tokenizer::TokenizerError>(())
/// ```
///
/// A `Tokenizer` is `Send + Sync`; encode and decode take `&self`.
pub struct Tokenizer {
    /// The backend with no truncation and no padding.
    backend: tokenizers::Tokenizer,
    special: SpecialTokens,
    model_max_length: Option<usize>,
    padding_side: Side,
    truncation_side: Side,
    clean_up_tokenization_spaces: bool,
    model_input_names: Vec<String>,
    /// Marian: vocab.json's ids for the backend's, and the target model's decoding.
    marian: Option<Arc<Marian>>,
    /// Clones of `backend` with truncation/padding set, most recently used last.
    configured: Mutex<Vec<(CallSettings, Arc<tokenizers::Tokenizer>)>>,
}

impl Clone for Tokenizer {
    fn clone(&self) -> Self {
        Tokenizer {
            backend: self.backend.clone(),
            special: self.special.clone(),
            model_max_length: self.model_max_length,
            padding_side: self.padding_side,
            truncation_side: self.truncation_side,
            clean_up_tokenization_spaces: self.clean_up_tokenization_spaces,
            model_input_names: self.model_input_names.clone(),
            marian: self.marian.clone(),
            configured: Mutex::new(Vec::new()),
        }
    }
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("model", &self.model_kind())
            .field("vocab_size", &self.vocab_size())
            .field("special", &self.special)
            .field("model_max_length", &self.model_max_length)
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// Loads the tokenizer of a HF model folder, as `AutoTokenizer.from_pretrained(folder)` does
    /// with a fast tokenizer:
    ///
    /// - `tokenizer.json` when present;
    /// - else `vocab.txt`: a BERT WordPiece tokenizer (BertNormalizer honouring `do_lower_case`,
    ///   `strip_accents`, `tokenize_chinese_chars` of tokenizer_config.json; `[CLS] A [SEP] B [SEP]`);
    /// - else `vocab.json` + `merges.txt`: byte-level BPE, with RoBERTa's `<s> A </s></s> B </s>`
    ///   when tokenizer_config.json / config.json say RoBERTa, GPT-2's (no special tokens, or
    ///   `add_bos_token`) otherwise;
    /// - else a sentencepiece model, read as the class of tokenizer_config.json / config.json
    ///   (else as the file's name suggests): `spiece.model` for T5 / mT5 (`T5Converter`: the
    ///   pieces, `<extra_id_N>`, `A </s>`), `sentencepiece.bpe.model` for XLM-R
    ///   (`XLMRobertaConverter`: fairseq's ids, `<s> A </s>`), `source.spm` + `target.spm` +
    ///   `vocab.json` for Marian (`MarianTokenizer`: encodes with the source model into vocab.json's
    ///   ids, appends `</s>`; [`Tokenizer::decode`] detokenizes with the target model).
    ///
    /// Special tokens, added tokens, `model_max_length`, `padding_side`, `truncation_side`,
    /// `clean_up_tokenization_spaces` and `model_input_names` come from tokenizer_config.json
    /// (special_tokens_map.json and added_tokens.json for older folders), with the defaults of the
    /// tokenizer class the folder names.
    ///
    /// # Errors
    /// [`TokenizerError::NoTokenizerFiles`] when the folder holds none of these files (or is not a
    /// folder); [`TokenizerError::MissingTokenizerFile`] when the class needs a file the folder
    /// lacks (a Marian folder without target.spm); [`TokenizerError::Io`], [`TokenizerError::Json`],
    /// [`TokenizerError::InvalidTokenizerFile`] or [`TokenizerError::InvalidConfig`] naming the
    /// file (and field) that cannot be used.
    pub fn from_folder(folder: impl AsRef<Path>) -> Result<Tokenizer> {
        Self::load(folder.as_ref(), false)
    }

    /// The tokenizer of a folder's target texts, the labels of a sequence-to-sequence model
    /// (`tokenizer(text_target=...)` in transformers): for a Marian folder the target model cuts
    /// the text (into the same vocab.json ids, `… </s>`); every other folder has one tokenizer
    /// for both sides, and this is [`Tokenizer::from_folder`]. Decoding is the same either way.
    ///
    /// # Errors
    /// As [`Tokenizer::from_folder`].
    pub fn target_from_folder(folder: impl AsRef<Path>) -> Result<Tokenizer> {
        Self::load(folder.as_ref(), true)
    }

    fn load(folder: &Path, targets: bool) -> Result<Tokenizer> {
        let kind = if folder.join("tokenizer.json").is_file() {
            FileKind::TokenizerJson
        } else if folder.join("vocab.txt").is_file() {
            FileKind::VocabTxt
        } else if folder.join("vocab.json").is_file() && folder.join("merges.txt").is_file() {
            FileKind::VocabJsonMerges
        } else if ["spiece.model", "sentencepiece.bpe.model", "source.spm"]
            .iter()
            .any(|file| folder.join(file).is_file())
        {
            FileKind::SentencePiece
        } else {
            return Err(TokenizerError::NoTokenizerFiles {
                folder: folder.to_path_buf(),
            });
        };
        let config = read_folder_config(folder, kind)?;
        // The library panics on some malformed files (tokenizers 0.22.2: decoders/mod.rs
        // `expect("Helper")`, models/bpe/model.rs slicing; found by the fuzzer): errors here too.
        let built = catch_quietly(|| -> Result<Self> {
            let mut marian = None;
            let backend = match kind {
                FileKind::TokenizerJson => {
                    let path = folder.join("tokenizer.json");
                    tokenizers::Tokenizer::from_file(&path).map_err(|error| {
                        TokenizerError::InvalidTokenizerFile {
                            path,
                            message: error.to_string(),
                        }
                    })?
                }
                FileKind::VocabTxt => slow::wordpiece_from_vocab_txt(folder, &config)?,
                FileKind::VocabJsonMerges => slow::byte_level_bpe_from_files(folder, &config)?,
                FileKind::SentencePiece if config.class == TokenizerClass::Marian => {
                    let (backend, vocab) = marian::build(folder, &config, targets)?;
                    marian = Some(vocab);
                    backend
                }
                FileKind::SentencePiece => {
                    let (file, converter) = match config.class {
                        TokenizerClass::T5 => (
                            "spiece.model",
                            SpmConverter::T5 {
                                extra_ids: config.extra_ids,
                            },
                        ),
                        TokenizerClass::XlmRoberta => {
                            ("sentencepiece.bpe.model", SpmConverter::XlmRoberta)
                        }
                        ref other => {
                            return Err(TokenizerError::InvalidConfig {
                                path: folder.join("tokenizer_config.json"),
                                field: "tokenizer_class".into(),
                                message: format!(
                                    "a sentencepiece folder of class {other:?} is not supported (T5, \
                                     XLM-R and Marian are)"
                                ),
                            });
                        }
                    };
                    let path = folder.join(file);
                    if !path.is_file() {
                        return Err(TokenizerError::MissingTokenizerFile {
                            folder: folder.to_path_buf(),
                            file: file.into(),
                            reason: format!("the tokenizer class is {:?}", config.class),
                        });
                    }
                    let model = SpmModel::read(&path)?;
                    slow::sentencepiece(&path, &model, converter, config.spm_prepend_scheme)?
                }
            };
            let mut tokenizer = Self::from_backend(backend, config, kind);
            if let Some(mut marian) = marian {
                marian.attach(&tokenizer.backend);
                tokenizer.marian = Some(Arc::new(marian));
            }
            Ok(tokenizer)
        });
        built.unwrap_or_else(|panic| {
            let file = match kind {
                FileKind::TokenizerJson => "tokenizer.json",
                FileKind::VocabTxt => "vocab.txt",
                FileKind::VocabJsonMerges => "vocab.json",
                FileKind::SentencePiece => "the sentencepiece model",
            };
            Err(TokenizerError::InvalidTokenizerFile {
                path: folder.join(file),
                message: panic_message(panic.as_ref()),
            })
        })
    }

    /// Finishes what `PreTrainedTokenizerFast.__init__` and the class's `__init__` do to the
    /// backend: no default truncation or padding, the configured tokens added, and the
    /// normalizer, pre-tokenizer and post-processor brought in line with the configuration.
    fn from_backend(
        mut backend: tokenizers::Tokenizer,
        config: FolderConfig,
        kind: FileKind,
    ) -> Tokenizer {
        // transformers resets the backend's truncation and padding on every call.
        backend.with_padding(None);
        let _ = backend.with_truncation(None);

        let special = SpecialTokens {
            bos: find_special(&config, "bos_token"),
            eos: find_special(&config, "eos_token"),
            unk: find_special(&config, "unk_token"),
            sep: find_special(&config, "sep_token"),
            pad: find_special(&config, "pad_token"),
            cls: find_special(&config, "cls_token"),
            mask: find_special(&config, "mask_token"),
            additional: config
                .additional_special
                .iter()
                .map(|token| token.content.clone())
                .collect(),
        };
        add_configured_tokens(&mut backend, &config, &special);

        // PreTrainedTokenizerFast.__init__: the pre-tokenizer's add_prefix_space follows the config.
        if let Some(PreTokenizerWrapper::ByteLevel(byte_level)) = backend.get_pre_tokenizer()
            && byte_level.add_prefix_space != config.add_prefix_space
        {
            let updated = byte_level.add_prefix_space(config.add_prefix_space);
            backend.with_pre_tokenizer(Some(PreTokenizerWrapper::ByteLevel(updated)));
        }
        // BertTokenizerFast / DistilBertTokenizerFast.__init__: the normalizer follows the config.
        if config.class.is_bert_like()
            && let Some(NormalizerWrapper::BertNormalizer(normalizer)) = backend.get_normalizer()
            && (normalizer.lowercase != config.do_lower_case
                || normalizer.strip_accents != config.strip_accents
                || normalizer.handle_chinese_chars != config.tokenize_chinese_chars)
        {
            let updated = tokenizers::normalizers::BertNormalizer::new(
                normalizer.clean_text,
                config.tokenize_chinese_chars,
                config.strip_accents,
                config.do_lower_case,
            );
            backend.with_normalizer(Some(NormalizerWrapper::BertNormalizer(updated)));
        }
        // RobertaTokenizerFast.__init__: the post-processor's add_prefix_space / trim_offsets.
        if config.class == crate::config::TokenizerClass::Roberta {
            let updated = match backend.get_post_processor() {
                Some(PostProcessorWrapper::Roberta(processor))
                    if processor.add_prefix_space != config.add_prefix_space
                        || processor.trim_offsets != config.trim_offsets =>
                {
                    Some(PostProcessorWrapper::Roberta(
                        processor
                            .clone()
                            .add_prefix_space(config.add_prefix_space)
                            .trim_offsets(config.trim_offsets),
                    ))
                }
                Some(PostProcessorWrapper::ByteLevel(processor))
                    if processor.add_prefix_space != config.add_prefix_space
                        || processor.trim_offsets != config.trim_offsets =>
                {
                    Some(PostProcessorWrapper::ByteLevel(
                        processor
                            .add_prefix_space(config.add_prefix_space)
                            .trim_offsets(config.trim_offsets),
                    ))
                }
                _ => None,
            };
            if let Some(updated) = updated {
                backend.with_post_processor(Some(updated));
            }
        }

        // BertTokenizer (the slow class a vocab.txt is read through) defaults to cleaning up.
        let clean_up_default = kind == FileKind::VocabTxt && config.class.is_bert_like();
        Tokenizer {
            backend,
            special,
            model_max_length: config.model_max_length,
            padding_side: config.padding_side,
            truncation_side: config.truncation_side,
            clean_up_tokenization_spaces: config
                .clean_up_tokenization_spaces
                .unwrap_or(clean_up_default),
            model_input_names: config.model_input_names,
            marian: None,
            configured: Mutex::new(Vec::new()),
        }
    }

    // ------------------------------------------------------------------------------------------
    // Encoding
    // ------------------------------------------------------------------------------------------

    /// Encodes one text or pair, as `tokenizer(text)` / `tokenizer(text, text_pair)` with the
    /// given options. With [`EncodeOptions::return_overflowing`], the windows truncation cut off
    /// are in [`Encoding::overflowing`].
    ///
    /// As in transformers, a pair whose second text is empty is encoded as the first text alone
    /// (`encode_batch` keeps it a pair). An empty text is fine: it encodes to the special tokens
    /// alone. A text longer than the model without truncation is not an error (transformers
    /// only warns).
    ///
    /// # Errors
    /// [`TokenizerError::InvalidOptions`] (padding without a pad token; `pad_to_multiple_of` not
    /// dividing `max_length` under truncation and padding; `max_length` below the number of
    /// special tokens; `stride` not below the room `max_length` leaves, or not below a window
    /// truncation leaves one text of a pair: where transformers raises or the `tokenizers`
    /// library panics), [`TokenizerError::Encode`] when the `tokenizers` library fails
    /// (`only_second` on a single text that must be cut, `only_first` on a first text too short
    /// to make room).
    pub fn encode<'a>(
        &self,
        input: impl Into<EncodeInput<'a>>,
        options: &EncodeOptions,
    ) -> Result<Encoding> {
        let input = match input.into() {
            EncodeInput::Pair(first, "") => EncodeInput::Single(first),
            input => input,
        };
        let mut encodings = self.encode_batch(&[input], options)?;
        Ok(encodings.remove(0))
    }

    /// Encodes a batch, as `tokenizer(list_of_texts_or_pairs, ...)`: one [`Encoding`] per input
    /// in order, padded together (to the longest of the batch with [`Padding::Longest`]); the
    /// flattened windows and their sample mapping are [`Encoding::windows`] and
    /// [`overflow_to_sample_mapping`](crate::overflow_to_sample_mapping).
    ///
    /// # Errors
    /// As [`Tokenizer::encode`].
    pub fn encode_batch(
        &self,
        inputs: &[EncodeInput<'_>],
        options: &EncodeOptions,
    ) -> Result<Vec<Encoding>> {
        let settings = self.resolve(options, inputs)?;
        if let Some((max_length, stride, strategy, _)) = settings.truncation
            && stride > 0
        {
            for input in inputs {
                self.check_windows(input, max_length, stride, strategy, options)?;
            }
        }
        let backend = self.configured_backend(settings)?;
        // Marian splits a leading language code (`>>fr<<`) off each text: the backend sees a
        // stand-in token in its place, put back below.
        let stand_in = |text: &str| -> String {
            match (&self.marian, marian::language_code_len(text)) {
                (Some(marian), Some(code)) => {
                    format!("{}{}", marian.code_stand_in(), &text[code..])
                }
                _ => text.to_string(),
            }
        };
        let rewritten: Option<Vec<(String, Option<String>)>> = self.marian.as_ref().map(|_| {
            inputs
                .iter()
                .map(|input| (stand_in(input.first()), input.second().map(stand_in)))
                .collect()
        });
        let backend_texts: Vec<EncodeInput<'_>> = match &rewritten {
            Some(rewritten) => rewritten
                .iter()
                .map(|(first, second)| match second {
                    Some(second) => EncodeInput::Pair(first, second),
                    None => EncodeInput::Single(first),
                })
                .collect(),
            None => inputs.to_vec(),
        };
        let backend_inputs: Vec<tokenizers::EncodeInput<'_>> = backend_texts
            .iter()
            .map(|input| match *input {
                EncodeInput::Single(text) => tokenizers::EncodeInput::Single(text.into()),
                EncodeInput::Pair(first, second) => {
                    tokenizers::EncodeInput::Dual(first.into(), second.into())
                }
            })
            .collect();
        let add_special_tokens = options.add_special_tokens;
        // The library asserts on some stride/length combinations of pairs; never let that panic
        // cross this API.
        let encoded =
            catch_quietly(|| backend.encode_batch_char_offsets(backend_inputs, add_special_tokens))
                .map_err(|panic| TokenizerError::Encode(panic_message(panic.as_ref())))?
                .map_err(|error| TokenizerError::Encode(error.to_string()))?;
        let mut encodings: Vec<Encoding> = encoded
            .iter()
            .zip(&backend_texts)
            .map(|(encoding, input)| convert_encoding(encoding, input, options.return_overflowing))
            .collect();
        if let Some(marian) = &self.marian {
            for (encoding, input) in encodings.iter_mut().zip(inputs) {
                restore_language_codes(encoding, input, marian.code_stand_in());
                map_marian_ids(marian, encoding, input);
            }
        }
        Ok(encodings)
    }

    /// transformers' `_get_padding_truncation_strategies` + `set_truncation_and_padding`.
    fn resolve(&self, options: &EncodeOptions, inputs: &[EncodeInput<'_>]) -> Result<CallSettings> {
        let mut truncation = options.truncation;
        let mut padding = options.padding;
        let mut max_length = options.max_length;
        // `max_length` alone means longest_first truncation (transformers warns and does it).
        if max_length.is_some() && padding == Padding::None && truncation == Truncation::None {
            truncation = Truncation::LongestFirst;
        }
        if max_length.is_none() {
            if padding == Padding::MaxLength {
                match self.model_max_length {
                    Some(limit) => max_length = Some(limit),
                    None => padding = Padding::None,
                }
            }
            if truncation != Truncation::None {
                match self.model_max_length {
                    Some(limit) => max_length = Some(limit),
                    None => truncation = Truncation::None,
                }
            }
        }
        // Padding allocates every position it adds: refuse lengths no model takes.
        if padding != Padding::None {
            let asked = [
                (padding == Padding::MaxLength)
                    .then_some(max_length)
                    .flatten(),
                options.pad_to_multiple_of,
            ];
            if let Some(length) = asked
                .into_iter()
                .flatten()
                .find(|&length| length > MAX_PADDED_LENGTH)
            {
                return Err(TokenizerError::InvalidOptions(format!(
                    "padding to {length} tokens (max_length or pad_to_multiple_of) is more than \
                     the {MAX_PADDED_LENGTH} tokens oxformer pads to"
                )));
            }
        }
        if padding != Padding::None && self.pad_token_id().is_none() {
            return Err(TokenizerError::InvalidOptions(
                "asking to pad but the tokenizer has no pad token".into(),
            ));
        }
        if let (Some(length), Some(multiple)) = (max_length, options.pad_to_multiple_of)
            && truncation != Truncation::None
            && padding != Padding::None
            && multiple != 0
            && length % multiple != 0
        {
            return Err(TokenizerError::InvalidOptions(format!(
                "truncation and padding are both activated but truncation length ({length}) \
                     is not a multiple of pad_to_multiple_of ({multiple})"
            )));
        }
        let truncation = match (truncation, max_length) {
            (Truncation::None, _) | (_, None) => None,
            (strategy, Some(length)) => {
                let has_pair = inputs.iter().any(|input| input.second().is_some());
                let added = if options.add_special_tokens {
                    self.num_special_tokens_to_add(has_pair)
                } else {
                    0
                };
                if length < added {
                    return Err(TokenizerError::InvalidOptions(format!(
                        "max_length {length} is smaller than the {added} special tokens the \
                         template adds"
                    )));
                }
                let side = options.truncation_side.unwrap_or(self.truncation_side);
                Some((length, options.stride, strategy, side))
            }
        };
        let padding = match padding {
            Padding::None => None,
            Padding::Longest => Some((
                None,
                options.padding_side.unwrap_or(self.padding_side),
                options.pad_to_multiple_of,
            )),
            Padding::MaxLength => Some((
                max_length,
                options.padding_side.unwrap_or(self.padding_side),
                options.pad_to_multiple_of,
            )),
        };
        Ok(CallSettings {
            truncation,
            padding,
        })
    }

    /// Returns an error where the `tokenizers` library would panic: a truncated sequence left with
    /// a window no longer than the stride (its `Encoding::truncate` asserts `stride < max_len`).
    /// Mirrors `truncate_encodings` (tokenizers 0.22, utils/truncation.rs) on the sequences'
    /// lengths.
    fn check_windows(
        &self,
        input: &EncodeInput<'_>,
        max_length: usize,
        stride: usize,
        strategy: Truncation,
        options: &EncodeOptions,
    ) -> Result<()> {
        let length = |text: &str| -> Result<usize> {
            self.backend
                .encode(text, false)
                .map(|encoding| encoding.len())
                .map_err(|error| TokenizerError::Encode(error.to_string()))
        };
        let first = length(input.first())?;
        let second = input.second().map(length).transpose()?;
        let added = if options.add_special_tokens {
            self.num_special_tokens_to_add(second.is_some())
        } else {
            0
        };
        // resolve() made sure max_length >= added
        let budget = max_length - added;
        let total = first + second.unwrap_or(0);
        if budget == 0 || total <= budget {
            return Ok(());
        }
        let to_remove = total - budget;
        // (sequence, its length, the length it is cut to)
        let cuts: Vec<(usize, usize, usize)> = match (strategy, second) {
            (Truncation::LongestFirst | Truncation::None, None) => vec![(0, first, budget)],
            (Truncation::LongestFirst | Truncation::None, Some(second)) => {
                // n1 the shorter length, n2 what the longer one is cut to
                let mut short = first.min(second);
                let mut long = if short > budget {
                    short
                } else {
                    (budget - short).max(short)
                };
                if short + long > budget {
                    short = budget / 2;
                    long = short + budget % 2;
                }
                let (cut_first, cut_second) = if first > second {
                    (long, short)
                } else {
                    (short, long)
                };
                vec![(0, first, cut_first), (1, second, cut_second)]
            }
            (Truncation::OnlyFirst, _) if first > to_remove => vec![(0, first, first - to_remove)],
            (Truncation::OnlySecond, Some(second)) if second > to_remove => {
                vec![(1, second, second - to_remove)]
            }
            // the library reports these itself
            _ => Vec::new(),
        };
        for (sequence, length, cut) in cuts {
            if cut > 0 && cut < length && stride >= cut {
                return Err(TokenizerError::InvalidOptions(format!(
                    "stride {stride} is not smaller than the {cut}-token windows that truncation \
                     to max_length {max_length} leaves for sequence {sequence} ({length} tokens)"
                )));
            }
        }
        Ok(())
    }

    /// The backend with these truncation/padding settings, from the cache or freshly configured.
    fn configured_backend(&self, settings: CallSettings) -> Result<Arc<tokenizers::Tokenizer>> {
        let mut cache = self
            .configured
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(position) = cache.iter().position(|(key, _)| *key == settings) {
            let entry = cache.remove(position);
            let backend = Arc::clone(&entry.1);
            cache.push(entry);
            return Ok(backend);
        }
        let mut backend = self.backend.clone();
        if let Some((max_length, stride, strategy, side)) = settings.truncation {
            let params = TruncationParams {
                max_length,
                stride,
                strategy: match strategy {
                    Truncation::OnlyFirst => TruncationStrategy::OnlyFirst,
                    Truncation::OnlySecond => TruncationStrategy::OnlySecond,
                    Truncation::LongestFirst | Truncation::None => TruncationStrategy::LongestFirst,
                },
                direction: match side {
                    Side::Left => TruncationDirection::Left,
                    Side::Right => TruncationDirection::Right,
                },
            };
            // The library's check subtracts the single text's special tokens from max_length
            // unchecked: below them (possible only without special tokens, resolve() refused the
            // rest) that panics under overflow checks and wraps past the check without. Pass the
            // check with a length it accepts, then set the real one, as the wrapped check does.
            let special = self.num_special_tokens_to_add(false);
            let checked = TruncationParams {
                max_length: if max_length < special {
                    special.saturating_add(stride)
                } else {
                    max_length
                },
                ..params
            };
            backend
                .with_truncation(Some(checked))
                .map_err(|error| TokenizerError::InvalidOptions(error.to_string()))?;
            if let Some(truncation) = backend.get_truncation_mut() {
                truncation.max_length = max_length;
            }
        }
        if let Some((length, side, pad_to_multiple_of)) = settings.padding {
            // resolve() checked that there is a pad token
            let pad_token = self.special.pad.clone().unwrap_or_default();
            backend.with_padding(Some(PaddingParams {
                strategy: match length {
                    Some(length) => PaddingStrategy::Fixed(length),
                    None => PaddingStrategy::BatchLongest,
                },
                direction: match side {
                    Side::Left => PaddingDirection::Left,
                    Side::Right => PaddingDirection::Right,
                },
                pad_to_multiple_of,
                pad_id: self.backend_pad_id().unwrap_or(0),
                pad_type_id: 0,
                pad_token,
            }));
        }
        let backend = Arc::new(backend);
        if cache.len() >= CONFIGURED_CACHE {
            cache.remove(0);
        }
        cache.push((settings, Arc::clone(&backend)));
        Ok(backend)
    }

    // ------------------------------------------------------------------------------------------
    // Decoding
    // ------------------------------------------------------------------------------------------

    /// Decodes ids to text, as `tokenizer.decode(ids, skip_special_tokens=...,
    /// clean_up_tokenization_spaces=...)`. `clean_up_tokenization_spaces: None` uses the
    /// tokenizer's setting ([`Tokenizer::clean_up_tokenization_spaces`]). Ids outside the
    /// vocabulary are skipped, as in transformers.
    ///
    /// # Errors
    /// [`TokenizerError::Decode`] when the `tokenizers` decoder fails.
    ///
    /// A Marian tokenizer decodes with its target model, as `MarianTokenizer.decode`: ids outside
    /// vocab.json read as the unknown token.
    pub fn decode(
        &self,
        ids: &[u32],
        skip_special_tokens: bool,
        clean_up_tokenization_spaces: Option<bool>,
    ) -> Result<String> {
        let text = match &self.marian {
            Some(marian) => {
                let special_ids = self.all_special_ids();
                marian.decode(ids, skip_special_tokens, &self.special.all(), &special_ids)
            }
            None => self
                .backend
                .decode(ids, skip_special_tokens)
                .map_err(|error| TokenizerError::Decode(error.to_string()))?,
        };
        if clean_up_tokenization_spaces.unwrap_or(self.clean_up_tokenization_spaces) {
            Ok(clean_up_tokenization(&text))
        } else {
            Ok(text)
        }
    }

    /// [`Tokenizer::decode`] for each sequence (`batch_decode`).
    ///
    /// # Errors
    /// As [`Tokenizer::decode`].
    pub fn batch_decode<S: AsRef<[u32]>>(
        &self,
        sequences: &[S],
        skip_special_tokens: bool,
        clean_up_tokenization_spaces: Option<bool>,
    ) -> Result<Vec<String>> {
        sequences
            .iter()
            .map(|ids| {
                self.decode(
                    ids.as_ref(),
                    skip_special_tokens,
                    clean_up_tokenization_spaces,
                )
            })
            .collect()
    }

    /// The tokens of these ids (`convert_ids_to_tokens`), leaving out the special tokens' ids when
    /// `skip_special_tokens`.
    ///
    /// # Errors
    /// [`TokenizerError::UnknownTokenId`] for an id outside the vocabulary and added tokens.
    pub fn convert_ids_to_tokens(
        &self,
        ids: &[u32],
        skip_special_tokens: bool,
    ) -> Result<Vec<String>> {
        let skipped = if skip_special_tokens {
            self.all_special_ids()
        } else {
            Vec::new()
        };
        ids.iter()
            .filter(|id| !skipped.contains(id))
            .map(|&id| {
                self.id_to_token(id).ok_or(TokenizerError::UnknownTokenId {
                    id,
                    size: self.len(),
                })
            })
            .collect()
    }

    // ------------------------------------------------------------------------------------------
    // Vocabulary and special tokens
    // ------------------------------------------------------------------------------------------

    /// The id of a token (added tokens included), `None` if it is not in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        match &self.marian {
            Some(marian) => marian.token_to_id(token),
            None => self.backend.token_to_id(token),
        }
    }

    /// The token of an id (added tokens included), `None` outside the vocabulary.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        match &self.marian {
            Some(marian) => marian.token(id).map(str::to_string),
            None => self.backend.id_to_token(id),
        }
    }

    /// Size of the base vocabulary, without added tokens (transformers' `vocab_size`; Marian's
    /// vocab.json).
    pub fn vocab_size(&self) -> usize {
        match &self.marian {
            Some(marian) => marian.vocab_size(),
            None => self.backend.get_vocab_size(false),
        }
    }

    /// Size of the vocabulary with the added tokens (transformers' `len(tokenizer)`).
    pub fn len(&self) -> usize {
        match &self.marian {
            Some(marian) => marian.vocab_size(),
            None => self.backend.get_vocab_size(true),
        }
    }

    /// Whether the vocabulary is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The model's maximum input length in tokens (`model_max_length`); `None` when the folder
    /// sets none (transformers' huge sentinel value).
    pub fn model_max_length(&self) -> Option<usize> {
        self.model_max_length
    }

    /// The default padding side (tokenizer_config.json `padding_side`, right by default).
    pub fn padding_side(&self) -> Side {
        self.padding_side
    }

    /// The default truncation side (tokenizer_config.json `truncation_side`, right by default).
    pub fn truncation_side(&self) -> Side {
        self.truncation_side
    }

    /// Whether [`Tokenizer::decode`] cleans up spaces before punctuation by default.
    pub fn clean_up_tokenization_spaces(&self) -> bool {
        self.clean_up_tokenization_spaces
    }

    /// The model inputs this tokenizer is meant to produce (`model_input_names`), e.g.
    /// `["input_ids", "token_type_ids", "attention_mask"]` for BERT, without `token_type_ids` for
    /// RoBERTa, DistilBERT and GPT-2.
    pub fn model_input_names(&self) -> &[String] {
        &self.model_input_names
    }

    /// How many special tokens the template adds to a single text (`pair = false`) or a pair.
    pub fn num_special_tokens_to_add(&self, pair: bool) -> usize {
        self.backend
            .get_post_processor()
            .map_or(0, |processor| processor.added_tokens(pair))
    }

    /// The named special tokens.
    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special
    }

    /// The ids of all special tokens (`all_special_ids`), in `all_special_tokens` order.
    pub fn all_special_ids(&self) -> Vec<u32> {
        self.special
            .all()
            .into_iter()
            .filter_map(|token| self.special_id(token))
            .collect()
    }

    /// A special token's id as transformers gives it: the token's id, else the unknown token's.
    fn special_id(&self, token: &str) -> Option<u32> {
        self.token_to_id(token).or_else(|| {
            self.special
                .unk
                .as_deref()
                .and_then(|unk| self.token_to_id(unk))
        })
    }

    /// The pad token's id in the backend's numbering (differs from [`Tokenizer::pad_token_id`]
    /// for Marian, whose backend numbers the source model's pieces).
    fn backend_pad_id(&self) -> Option<u32> {
        let pad = self.special.pad.as_deref()?;
        self.backend.token_to_id(pad).or_else(|| {
            self.special
                .unk
                .as_deref()
                .and_then(|unk| self.backend.token_to_id(unk))
        })
    }

    fn named_id(&self, token: &Option<String>) -> Option<u32> {
        token.as_deref().and_then(|token| self.special_id(token))
    }

    /// The mask token (`[MASK]`, `<mask>`), if any.
    pub fn mask_token(&self) -> Option<&str> {
        self.special.mask.as_deref()
    }

    /// The mask token's id.
    pub fn mask_token_id(&self) -> Option<u32> {
        self.named_id(&self.special.mask)
    }

    /// Makes `token` the padding token, as `tokenizer.pad_token = token` in transformers; GPT-2
    /// has none, and batched generation pads with its end-of-sequence token:
    /// `tokenizer.set_pad_token("<|endoftext|>")`.
    ///
    /// # Errors
    /// [`TokenizerError::InvalidOptions`] when `token` is not in the vocabulary (nor among the
    /// added tokens).
    pub fn set_pad_token(&mut self, token: &str) -> Result<()> {
        if self.token_to_id(token).is_none() {
            return Err(TokenizerError::InvalidOptions(format!(
                "pad token `{token}` is not in the vocabulary"
            )));
        }
        self.special.pad = Some(token.to_string());
        // the configured backends pad with the old token
        self.configured
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
        Ok(())
    }

    /// The padding token (`[PAD]`, `<pad>`), if any.
    pub fn pad_token(&self) -> Option<&str> {
        self.special.pad.as_deref()
    }

    /// The padding token's id.
    pub fn pad_token_id(&self) -> Option<u32> {
        self.named_id(&self.special.pad)
    }

    /// The classifier token (`[CLS]`, `<s>`), if any.
    pub fn cls_token(&self) -> Option<&str> {
        self.special.cls.as_deref()
    }

    /// The classifier token's id.
    pub fn cls_token_id(&self) -> Option<u32> {
        self.named_id(&self.special.cls)
    }

    /// The separator token (`[SEP]`, `</s>`), if any.
    pub fn sep_token(&self) -> Option<&str> {
        self.special.sep.as_deref()
    }

    /// The separator token's id.
    pub fn sep_token_id(&self) -> Option<u32> {
        self.named_id(&self.special.sep)
    }

    /// The beginning-of-sequence token, if any.
    pub fn bos_token(&self) -> Option<&str> {
        self.special.bos.as_deref()
    }

    /// The beginning-of-sequence token's id.
    pub fn bos_token_id(&self) -> Option<u32> {
        self.named_id(&self.special.bos)
    }

    /// The end-of-sequence token, if any.
    pub fn eos_token(&self) -> Option<&str> {
        self.special.eos.as_deref()
    }

    /// The end-of-sequence token's id.
    pub fn eos_token_id(&self) -> Option<u32> {
        self.named_id(&self.special.eos)
    }

    /// The unknown token, if any.
    pub fn unk_token(&self) -> Option<&str> {
        self.special.unk.as_deref()
    }

    /// The unknown token's id.
    pub fn unk_token_id(&self) -> Option<u32> {
        self.special
            .unk
            .as_deref()
            .and_then(|unk| self.token_to_id(unk))
    }

    // ------------------------------------------------------------------------------------------
    // What kind of tokenizer
    // ------------------------------------------------------------------------------------------

    /// The subword model.
    pub fn model_kind(&self) -> ModelKind {
        match self.backend.get_model() {
            ModelWrapper::BPE(_) => ModelKind::Bpe,
            ModelWrapper::WordPiece(_) => ModelKind::WordPiece,
            ModelWrapper::WordLevel(_) => ModelKind::WordLevel,
            ModelWrapper::Unigram(_) => ModelKind::Unigram,
        }
    }

    /// Whether the tokenizer works on bytes (GPT-2 / RoBERTa byte-level BPE): tokens are byte
    /// sequences, and a character may be split over several tokens.
    pub fn is_byte_level(&self) -> bool {
        let pre_tokenizer = match self.backend.get_pre_tokenizer() {
            Some(PreTokenizerWrapper::ByteLevel(_)) => true,
            Some(PreTokenizerWrapper::Sequence(sequence)) => sequence
                .as_ref()
                .iter()
                .any(|part| matches!(part, PreTokenizerWrapper::ByteLevel(_))),
            _ => false,
        };
        pre_tokenizer
            || matches!(
                self.backend.get_decoder(),
                Some(DecoderWrapper::ByteLevel(_))
            )
    }

    /// Whether this is a byte-level BPE tokenizer (GPT-2, RoBERTa).
    pub fn is_byte_level_bpe(&self) -> bool {
        self.model_kind() == ModelKind::Bpe && self.is_byte_level()
    }

    /// Whether this is a WordPiece tokenizer (BERT).
    pub fn is_wordpiece(&self) -> bool {
        self.model_kind() == ModelKind::WordPiece
    }

    /// Whether this is a Unigram tokenizer (XLM-R and other SentencePiece models).
    pub fn is_unigram(&self) -> bool {
        self.model_kind() == ModelKind::Unigram
    }

    /// The underlying `tokenizers` tokenizer (without truncation and padding). For a Marian folder
    /// it cuts text with the source model and numbers tokens as that model does, not as
    /// vocab.json: use [`Tokenizer::encode`] and [`Tokenizer::decode`] for ids.
    pub fn backend(&self) -> &tokenizers::Tokenizer {
        &self.backend
    }
}

fn find_special(config: &FolderConfig, key: &str) -> Option<String> {
    config
        .special
        .iter()
        .find(|(name, _)| *name == key)
        .map(|(_, token)| token.content.clone())
}

/// PreTrainedTokenizerFast.__init__: the added tokens of the configuration (by id) that the
/// backend lacks, then the special tokens it lacks, in one `add_tokens` call.
fn add_configured_tokens(
    backend: &mut tokenizers::Tokenizer,
    config: &FolderConfig,
    special: &SpecialTokens,
) {
    let existing: Vec<String> = backend
        .get_added_tokens_decoder()
        .values()
        .map(|token| token.content.clone())
        .collect();
    let special_strings = special.all();
    let mut to_add: Vec<tokenizers::AddedToken> = Vec::new();
    let mut contents: Vec<String> = existing.clone();
    let mut push = |token: &TokenSpec, to_add: &mut Vec<tokenizers::AddedToken>| {
        if contents.contains(&token.content) {
            return;
        }
        let is_special =
            token.special.unwrap_or(false) || special_strings.contains(&token.content.as_str());
        to_add.push(token.to_added_token(is_special));
        contents.push(token.content.clone());
    };
    for token in config.added_tokens.values() {
        push(token, &mut to_add);
    }
    for (_, token) in &config.special {
        push(token, &mut to_add);
    }
    for token in &config.additional_special {
        push(token, &mut to_add);
    }
    if !to_add.is_empty() {
        backend.add_tokens(&to_add);
    }
}

/// transformers' `clean_up_tokenization`: removes the spaces the decoders put before punctuation
/// and English contractions.
pub fn clean_up_tokenization(text: &str) -> String {
    text.replace(" .", ".")
        .replace(" ?", "?")
        .replace(" !", "!")
        .replace(" ,", ",")
        .replace(" ' ", "'")
        .replace(" n't", "n't")
        .replace(" 'm", "'m")
        .replace(" 's", "'s")
        .replace(" 've", "'ve")
        .replace(" 're", "'re")
}

/// Marian: the offsets of an encoding of the texts with [`Marian::code_stand_in`] in place of
/// their leading language code, as offsets in the texts themselves (the code spans its own text).
fn restore_language_codes(encoding: &mut Encoding, input: &EncodeInput<'_>, stand_in: &str) {
    for sequence in 0..2 {
        let Some(text) = input.text(sequence) else {
            continue;
        };
        let Some(code_bytes) = marian::language_code_len(text) else {
            continue;
        };
        let code_chars = text[..code_bytes].chars().count();
        let stand_in_chars = stand_in.chars().count();
        for index in 0..encoding.ids.len() {
            if encoding.sequence_ids[index] != Some(sequence) {
                continue;
            }
            let (start, end) = encoding.offsets[index];
            let (byte_start, byte_end) = encoding.byte_offsets[index];
            if start == 0 && end == stand_in_chars {
                encoding.offsets[index] = (0, code_chars);
                encoding.byte_offsets[index] = (0, code_bytes);
            } else if start >= stand_in_chars {
                let shift = |value: usize, old: usize, new: usize| value - old + new;
                encoding.offsets[index] = (
                    shift(start, stand_in_chars, code_chars),
                    shift(end, stand_in_chars, code_chars),
                );
                encoding.byte_offsets[index] = (
                    shift(byte_start, stand_in.len(), code_bytes),
                    shift(byte_end, stand_in.len(), code_bytes),
                );
            }
        }
    }
    for window in &mut encoding.overflowing {
        restore_language_codes(window, input, stand_in);
    }
}

/// A Marian encoding (and its overflowing windows) in vocab.json's ids.
fn map_marian_ids(marian: &Marian, encoding: &mut Encoding, input: &EncodeInput<'_>) {
    let (byte_offsets, sequence_ids) = (&encoding.byte_offsets, &encoding.sequence_ids);
    // An unknown piece covers its token's text and what normalization folded into it (the
    // combining marks up to the next token); trailing white space is the Strip normalizer's.
    let surface = |index: usize| {
        let sequence = sequence_ids[index]?;
        let text = input.text(sequence)?;
        let (start, end) = byte_offsets[index];
        let next = (index + 1..sequence_ids.len())
            .find(|&next| sequence_ids[next] == Some(sequence))
            .map_or(text.len(), |next| byte_offsets[next].0);
        text.get(start..next.max(end)).map(str::trim_end)
    };
    marian.map_ids(&mut encoding.ids, &mut encoding.tokens, surface);
    for window in &mut encoding.overflowing {
        map_marian_ids(marian, window, input);
    }
}

/// Char index → byte index for every char boundary of `text` (one past the end included).
fn char_to_byte_table(text: &str) -> Vec<usize> {
    text.char_indices()
        .map(|(byte, _)| byte)
        .chain(std::iter::once(text.len()))
        .collect()
}

/// The library's encoding (char offsets) as ours, byte offsets added.
fn convert_encoding(
    encoding: &tokenizers::Encoding,
    input: &EncodeInput<'_>,
    keep_overflowing: bool,
) -> Encoding {
    let tables = [
        char_to_byte_table(input.first()),
        char_to_byte_table(input.second().unwrap_or("")),
    ];
    convert_with_tables(encoding, input, &tables, keep_overflowing)
}

fn convert_with_tables(
    encoding: &tokenizers::Encoding,
    input: &EncodeInput<'_>,
    tables: &[Vec<usize>; 2],
    keep_overflowing: bool,
) -> Encoding {
    let sequence_ids = encoding.get_sequence_ids();
    let offsets = encoding.get_offsets().to_vec();
    let byte_offsets = offsets
        .iter()
        .zip(&sequence_ids)
        .map(|(&(start, end), sequence)| match sequence {
            Some(sequence) if input.text(*sequence).is_some() => {
                let table = &tables[*sequence];
                let to_byte = |index: usize| table[index.min(table.len() - 1)];
                (to_byte(start), to_byte(end))
            }
            _ => (start, end),
        })
        .collect();
    let overflowing = if keep_overflowing {
        encoding
            .get_overflowing()
            .iter()
            .map(|window| convert_with_tables(window, input, tables, false))
            .collect()
    } else {
        Vec::new()
    };
    Encoding {
        ids: encoding.get_ids().to_vec(),
        type_ids: encoding.get_type_ids().to_vec(),
        tokens: encoding.get_tokens().to_vec(),
        offsets,
        byte_offsets,
        word_ids: encoding.get_word_ids().to_vec(),
        sequence_ids,
        special_tokens_mask: encoding.get_special_tokens_mask().to_vec(),
        attention_mask: encoding.get_attention_mask().to_vec(),
        overflowing,
    }
}

/// The message of a panic the `tokenizers` library raised.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|text| text.to_string()))
        .unwrap_or_else(|| "the tokenizers library panicked".to_string())
}
