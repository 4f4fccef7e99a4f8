//! tokenizer_config.json, special_tokens_map.json and added_tokens.json, read the way
//! transformers' `PreTrainedTokenizerBase.from_pretrained` reads them (transformers 4.57,
//! tokenization_utils_base.py `_from_pretrained`), plus the defaults of the tokenizer classes
//! (`BertTokenizerFast`, `RobertaTokenizerFast`, ...).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::encoding::Side;
use crate::error::{Result, TokenizerError};

/// transformers' `LARGE_INTEGER` (int(1e20)): a `model_max_length` above it means "no limit".
const LARGE_INTEGER: f64 = 1e20;

/// The transformers tokenizer class a folder asks for; it decides defaults (special tokens,
/// `model_input_names`, lower-casing) and the slow-file conversion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenizerClass {
    Bert,
    DistilBert,
    Roberta,
    XlmRoberta,
    Gpt2,
    /// T5, mT5, FLAN-T5 (`T5Tokenizer`: a sentencepiece model, `$A </s>`, `<extra_id_N>`).
    T5,
    /// Marian / opus-mt (`MarianTokenizer`: source.spm, target.spm, vocab.json).
    Marian,
    /// `PreTrainedTokenizerFast` or a class this crate has no special knowledge of.
    Other,
}

impl TokenizerClass {
    /// From tokenizer_config.json's `tokenizer_class` (`"BertTokenizer"`, `"RobertaTokenizerFast"`).
    fn from_class_name(name: &str) -> Self {
        match name.strip_suffix("Fast").unwrap_or(name) {
            "BertTokenizer" => TokenizerClass::Bert,
            "DistilBertTokenizer" => TokenizerClass::DistilBert,
            "RobertaTokenizer" => TokenizerClass::Roberta,
            "XLMRobertaTokenizer" => TokenizerClass::XlmRoberta,
            "GPT2Tokenizer" => TokenizerClass::Gpt2,
            "T5Tokenizer" | "MT5Tokenizer" => TokenizerClass::T5,
            "MarianTokenizer" => TokenizerClass::Marian,
            _ => TokenizerClass::Other,
        }
    }

    /// From config.json's `model_type`, as AutoTokenizer's TOKENIZER_MAPPING_NAMES does.
    fn from_model_type(model_type: &str) -> Option<Self> {
        Some(match model_type {
            "bert" => TokenizerClass::Bert,
            "distilbert" => TokenizerClass::DistilBert,
            "roberta" => TokenizerClass::Roberta,
            "xlm-roberta" => TokenizerClass::XlmRoberta,
            "gpt2" => TokenizerClass::Gpt2,
            // TOKENIZER_MAPPING_NAMES: mt5 and umt5 use T5's tokenizer
            "t5" | "mt5" | "umt5" => TokenizerClass::T5,
            "marian" => TokenizerClass::Marian,
            _ => return None,
        })
    }

    /// BERT-like classes lower-case per `do_lower_case` and re-build their BertNormalizer from it.
    pub(crate) fn is_bert_like(&self) -> bool {
        matches!(self, TokenizerClass::Bert | TokenizerClass::DistilBert)
    }

    pub(crate) fn is_roberta_like(&self) -> bool {
        matches!(self, TokenizerClass::Roberta | TokenizerClass::XlmRoberta)
    }

    /// The class's default special tokens (`__init__` keyword defaults), in transformers'
    /// SPECIAL_TOKENS_ATTRIBUTES order.
    fn default_special(&self, key: &str) -> Option<TokenSpec> {
        let content = match (self, key) {
            (TokenizerClass::Bert | TokenizerClass::DistilBert, "unk_token") => "[UNK]",
            (TokenizerClass::Bert | TokenizerClass::DistilBert, "sep_token") => "[SEP]",
            (TokenizerClass::Bert | TokenizerClass::DistilBert, "pad_token") => "[PAD]",
            (TokenizerClass::Bert | TokenizerClass::DistilBert, "cls_token") => "[CLS]",
            (TokenizerClass::Bert | TokenizerClass::DistilBert, "mask_token") => "[MASK]",
            (TokenizerClass::Roberta | TokenizerClass::XlmRoberta, "bos_token") => "<s>",
            (TokenizerClass::Roberta | TokenizerClass::XlmRoberta, "eos_token") => "</s>",
            (TokenizerClass::Roberta | TokenizerClass::XlmRoberta, "sep_token") => "</s>",
            (TokenizerClass::Roberta | TokenizerClass::XlmRoberta, "cls_token") => "<s>",
            (TokenizerClass::Roberta | TokenizerClass::XlmRoberta, "unk_token") => "<unk>",
            (TokenizerClass::Roberta | TokenizerClass::XlmRoberta, "pad_token") => "<pad>",
            (TokenizerClass::Roberta | TokenizerClass::XlmRoberta, "mask_token") => "<mask>",
            (TokenizerClass::Gpt2, "unk_token" | "bos_token" | "eos_token") => "<|endoftext|>",
            (TokenizerClass::T5 | TokenizerClass::Marian, "eos_token") => "</s>",
            (TokenizerClass::T5 | TokenizerClass::Marian, "unk_token") => "<unk>",
            (TokenizerClass::T5 | TokenizerClass::Marian, "pad_token") => "<pad>",
            _ => return None,
        };
        Some(TokenSpec::plain(content))
    }

    fn default_model_input_names(&self) -> Vec<String> {
        let names: &[&str] = match self {
            TokenizerClass::Bert | TokenizerClass::Other => {
                &["input_ids", "token_type_ids", "attention_mask"]
            }
            TokenizerClass::DistilBert
            | TokenizerClass::Roberta
            | TokenizerClass::XlmRoberta
            | TokenizerClass::Gpt2
            | TokenizerClass::T5
            | TokenizerClass::Marian => &["input_ids", "attention_mask"],
        };
        names.iter().map(|name| name.to_string()).collect()
    }
}

/// A token as transformers' `AddedToken` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenSpec {
    pub content: String,
    pub lstrip: bool,
    pub rstrip: bool,
    pub single_word: bool,
    /// `None`: not said, the `tokenizers` default (`!special`) applies.
    pub normalized: Option<bool>,
    pub special: Option<bool>,
}

impl TokenSpec {
    pub(crate) fn plain(content: &str) -> Self {
        TokenSpec {
            content: content.to_string(),
            lstrip: false,
            rstrip: false,
            single_word: false,
            normalized: None,
            special: None,
        }
    }

    /// The `tokenizers` AddedToken, `special` as given.
    pub(crate) fn to_added_token(&self, special: bool) -> tokenizers::AddedToken {
        tokenizers::AddedToken::from(self.content.clone(), special)
            .lstrip(self.lstrip)
            .rstrip(self.rstrip)
            .single_word(self.single_word)
            .normalized(self.normalized.unwrap_or(!special))
    }
}

/// The named special tokens (`bos_token`, ..., `mask_token`) and the additional ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    /// Beginning of sequence (`<s>`, `<|endoftext|>`).
    pub bos: Option<String>,
    /// End of sequence (`</s>`, `<|endoftext|>`).
    pub eos: Option<String>,
    /// Unknown token (`[UNK]`, `<unk>`).
    pub unk: Option<String>,
    /// Separator (`[SEP]`, `</s>`).
    pub sep: Option<String>,
    /// Padding (`[PAD]`, `<pad>`).
    pub pad: Option<String>,
    /// Classifier token (`[CLS]`, `<s>`).
    pub cls: Option<String>,
    /// Mask for masked language modelling (`[MASK]`, `<mask>`).
    pub mask: Option<String>,
    /// `additional_special_tokens`.
    pub additional: Vec<String>,
}

impl SpecialTokens {
    /// All special tokens in transformers' `all_special_tokens` order (bos, eos, unk, sep, pad,
    /// cls, mask, additional), without repeats.
    pub fn all(&self) -> Vec<&str> {
        let mut all: Vec<&str> = Vec::new();
        let named = [
            &self.bos, &self.eos, &self.unk, &self.sep, &self.pad, &self.cls, &self.mask,
        ];
        for token in named.into_iter().flatten().chain(self.additional.iter()) {
            if !all.contains(&token.as_str()) {
                all.push(token);
            }
        }
        all
    }
}

/// Everything this crate takes from the configuration files of a folder.
#[derive(Debug, Clone)]
pub(crate) struct FolderConfig {
    pub class: TokenizerClass,
    /// Named special tokens with their AddedToken flags, SPECIAL_TOKENS_ATTRIBUTES order.
    pub special: Vec<(&'static str, TokenSpec)>,
    pub additional_special: Vec<TokenSpec>,
    /// `added_tokens_decoder` (or the legacy added_tokens.json), by id.
    pub added_tokens: BTreeMap<u32, TokenSpec>,
    pub model_max_length: Option<usize>,
    pub padding_side: Side,
    pub truncation_side: Side,
    pub clean_up_tokenization_spaces: Option<bool>,
    pub model_input_names: Vec<String>,
    pub do_lower_case: bool,
    pub strip_accents: Option<bool>,
    pub tokenize_chinese_chars: bool,
    pub add_prefix_space: bool,
    pub trim_offsets: bool,
    pub add_bos_token: bool,
    /// T5Tokenizer's `extra_ids` (100 unless configured).
    pub extra_ids: usize,
    /// The sentencepiece converters' Metaspace `prepend_scheme` (`_get_prepend_scheme`): `always`,
    /// `first` for a T5 folder with `legacy: false`, `never` with `add_prefix_space: false`.
    pub spm_prepend_scheme: tokenizers::pre_tokenizers::metaspace::PrependScheme,
}

const NAMED_SPECIAL: [&str; 7] = [
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
];

fn read_json_object(path: &Path) -> Result<Option<Map<String, Value>>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|source| TokenizerError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let value: Value = serde_json::from_str(&text).map_err(|source| TokenizerError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    match value {
        Value::Object(map) => Ok(Some(map)),
        _ => Err(TokenizerError::InvalidConfig {
            path: path.to_path_buf(),
            field: "(root)".into(),
            message: "expected a JSON object".into(),
        }),
    }
}

struct FieldReader<'a> {
    path: &'a Path,
}

impl FieldReader<'_> {
    fn error(&self, field: &str, message: impl Into<String>) -> TokenizerError {
        TokenizerError::InvalidConfig {
            path: self.path.to_path_buf(),
            field: field.to_string(),
            message: message.into(),
        }
    }

    fn bool(&self, map: &Map<String, Value>, field: &str) -> Result<Option<bool>> {
        match map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(value)) => Ok(Some(*value)),
            Some(other) => Err(self.error(field, format!("expected true or false, found {other}"))),
        }
    }

    fn side(&self, map: &Map<String, Value>, field: &str) -> Result<Side> {
        match map.get(field) {
            None | Some(Value::Null) => Ok(Side::Right),
            Some(Value::String(side)) if side == "right" => Ok(Side::Right),
            Some(Value::String(side)) if side == "left" => Ok(Side::Left),
            Some(other) => Err(self.error(
                field,
                format!("expected \"left\" or \"right\", found {other}"),
            )),
        }
    }

    /// A token given as a string or as a serialized AddedToken (`{"content": ..., "lstrip": ...}`).
    fn token(&self, value: &Value, field: &str) -> Result<Option<TokenSpec>> {
        match value {
            Value::Null => Ok(None),
            Value::String(content) => Ok(Some(TokenSpec::plain(content))),
            Value::Object(map) => {
                let content = match map.get("content") {
                    Some(Value::String(content)) => content.clone(),
                    _ => {
                        return Err(
                            self.error(field, "an AddedToken object needs a string `content`")
                        );
                    }
                };
                Ok(Some(TokenSpec {
                    content,
                    lstrip: self.bool(map, "lstrip")?.unwrap_or(false),
                    rstrip: self.bool(map, "rstrip")?.unwrap_or(false),
                    single_word: self.bool(map, "single_word")?.unwrap_or(false),
                    normalized: self.bool(map, "normalized")?,
                    special: self.bool(map, "special")?,
                }))
            }
            other => Err(self.error(
                field,
                format!("expected a token string or object, found {other}"),
            )),
        }
    }

    fn token_list(&self, value: &Value, field: &str) -> Result<Vec<TokenSpec>> {
        match value {
            Value::Null => Ok(Vec::new()),
            Value::Array(items) => {
                let mut tokens = Vec::new();
                for item in items {
                    if let Some(token) = self.token(item, field)? {
                        tokens.push(token);
                    }
                }
                Ok(tokens)
            }
            other => Err(self.error(field, format!("expected a list of tokens, found {other}"))),
        }
    }
}

/// Which tokenizer files a folder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    TokenizerJson,
    VocabTxt,
    VocabJsonMerges,
    /// A sentencepiece model (spiece.model, sentencepiece.bpe.model, source.spm).
    SentencePiece,
}

/// Reads the configuration files of `folder`. `kind` is the tokenizer file that will be used (it
/// decides the class when no configuration names one).
pub(crate) fn read_folder_config(folder: &Path, kind: FileKind) -> Result<FolderConfig> {
    let config_path = folder.join("tokenizer_config.json");
    let special_map_path = folder.join("special_tokens_map.json");
    let added_tokens_path = folder.join("added_tokens.json");
    let mut init = read_json_object(&config_path)?.unwrap_or_default();
    let reader = FieldReader { path: &config_path };

    let class = match init.get("tokenizer_class") {
        Some(Value::String(name)) => TokenizerClass::from_class_name(name),
        Some(Value::Null) | None => class_from_model_config(folder)?.unwrap_or(match kind {
            FileKind::TokenizerJson => TokenizerClass::Other,
            FileKind::VocabTxt => TokenizerClass::Bert,
            FileKind::VocabJsonMerges => TokenizerClass::Gpt2,
            FileKind::SentencePiece if folder.join("source.spm").is_file() => {
                TokenizerClass::Marian
            }
            FileKind::SentencePiece if folder.join("sentencepiece.bpe.model").is_file() => {
                TokenizerClass::XlmRoberta
            }
            FileKind::SentencePiece => TokenizerClass::T5,
        }),
        Some(other) => {
            return Err(reader.error(
                "tokenizer_class",
                format!("expected a string, found {other}"),
            ));
        }
    };

    // added_tokens_decoder, or the legacy special_tokens_map.json + added_tokens.json
    let mut added_tokens = BTreeMap::new();
    match init.get("added_tokens_decoder") {
        Some(Value::Object(decoder)) => {
            for (id, token) in decoder {
                let field = format!("added_tokens_decoder.{id}");
                let id: u32 = id
                    .parse()
                    .map_err(|_| reader.error(&field, "the key must be a token id"))?;
                if let Some(token) = reader.token(token, &field)? {
                    added_tokens.insert(id, token);
                }
            }
        }
        Some(Value::Null) | None => {
            if let Some(special_map) = read_json_object(&special_map_path)? {
                let map_reader = FieldReader {
                    path: &special_map_path,
                };
                for (key, value) in special_map {
                    if key == "additional_special_tokens" {
                        let mut merged = match init.remove(&key) {
                            Some(Value::Array(items)) => items,
                            _ => Vec::new(),
                        };
                        for token in map_reader.token_list(&value, &key)? {
                            let value = token_to_value(&token, true);
                            if !merged
                                .iter()
                                .any(|item| token_content(item) == Some(&token.content))
                            {
                                merged.push(value);
                            }
                        }
                        init.insert(key, Value::Array(merged));
                    } else if let Some(token) = map_reader.token(&value, &key)? {
                        let is_object = value.is_object();
                        init.insert(key, token_to_value(&token, is_object));
                    }
                }
            }
            if let Some(added) = read_json_object(&added_tokens_path)? {
                let mut special_strings: Vec<String> = Vec::new();
                for key in NAMED_SPECIAL {
                    if let Some(content) = init.get(key).and_then(token_content) {
                        special_strings.push(content.to_string());
                    }
                }
                if let Some(Value::Array(items)) = init.get("additional_special_tokens") {
                    special_strings
                        .extend(items.iter().filter_map(token_content).map(str::to_string));
                }
                for (content, id) in added {
                    let id = id
                        .as_u64()
                        .and_then(|id| u32::try_from(id).ok())
                        .ok_or_else(|| TokenizerError::InvalidConfig {
                            path: added_tokens_path.clone(),
                            field: content.clone(),
                            message: format!("expected a token id, found {id}"),
                        })?;
                    let special = special_strings.contains(&content);
                    let mut token = TokenSpec::plain(&content);
                    token.normalized = Some(!special);
                    token.special = Some(special);
                    added_tokens.insert(id, token);
                }
            }
        }
        Some(other) => {
            return Err(reader.error(
                "added_tokens_decoder",
                format!("expected an object, found {other}"),
            ));
        }
    }

    // Named special tokens: the configuration's, else the class's defaults; an AddedToken of the
    // same content in added_tokens_decoder lends its flags.
    let mut special = Vec::new();
    for key in NAMED_SPECIAL {
        let configured = match init.get(key) {
            Some(value) => reader.token(value, key)?,
            None => class.default_special(key),
        };
        let Some(mut token) = configured else {
            continue;
        };
        if let Some(added) = added_tokens
            .values()
            .find(|added| added.content == token.content)
        {
            token = added.clone();
        } else if key == "mask_token"
            && class.is_roberta_like()
            && token == TokenSpec::plain(&token.content)
        {
            // RobertaTokenizerFast / XLMRobertaTokenizerFast make a plain mask string lstrip.
            token.lstrip = true;
            token.normalized = Some(false);
        }
        special.push((key, token));
    }
    let extra_ids = match init.get("extra_ids") {
        None | Some(Value::Null) => 100,
        Some(value) => value
            .as_u64()
            .and_then(|count| usize::try_from(count).ok())
            .ok_or_else(|| {
                reader.error(
                    "extra_ids",
                    format!("expected a non-negative integer, found {value}"),
                )
            })?,
    };
    let mut additional_special = Vec::new();
    if class == TokenizerClass::T5 {
        // T5Tokenizer(Fast).__init__: without configured `<extra_id_N>` tokens, the extra ids are
        // added to the additional special tokens.
        let configured = match init.get("additional_special_tokens") {
            Some(value) => reader.token_list(value, "additional_special_tokens")?,
            None => Vec::new(),
        };
        if !configured
            .iter()
            .any(|token| token.content.contains("<extra_id_"))
        {
            let mut tokens: Vec<Value> = configured
                .iter()
                .map(|token| token_to_value(token, false))
                .collect();
            tokens.extend((0..extra_ids).map(|i| Value::String(format!("<extra_id_{i}>"))));
            init.insert("additional_special_tokens".into(), Value::Array(tokens));
        }
    }
    if let Some(value) = init.get("additional_special_tokens") {
        for token in reader.token_list(value, "additional_special_tokens")? {
            let token = added_tokens
                .values()
                .find(|added| added.content == token.content)
                .cloned()
                .unwrap_or(token);
            additional_special.push(token);
        }
    }

    let model_max_length = match init.get("model_max_length") {
        None | Some(Value::Null) => None,
        Some(Value::Number(number)) => match number.as_u64() {
            Some(length) if (length as f64) <= LARGE_INTEGER => Some(length as usize),
            Some(_) => None,
            None => match number.as_f64() {
                Some(length) if length > LARGE_INTEGER => None,
                _ => {
                    return Err(reader.error(
                        "model_max_length",
                        format!("expected a non-negative integer, found {number}"),
                    ));
                }
            },
        },
        Some(other) => {
            return Err(reader.error(
                "model_max_length",
                format!("expected an integer, found {other}"),
            ));
        }
    };

    let model_input_names = match init.get("model_input_names") {
        None | Some(Value::Null) => class.default_model_input_names(),
        Some(Value::Array(names)) => names
            .iter()
            .map(|name| {
                name.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| reader.error("model_input_names", "expected a list of strings"))
            })
            .collect::<Result<_>>()?,
        Some(other) => {
            return Err(reader.error(
                "model_input_names",
                format!("expected a list, found {other}"),
            ));
        }
    };

    // _get_prepend_scheme(add_prefix_space, slow tokenizer): only T5Tokenizer has the
    // `add_prefix_space` and `legacy` attributes; the other classes read as true.
    let spm_prepend_scheme = {
        use tokenizers::pre_tokenizers::metaspace::PrependScheme;
        let (add_prefix_space, legacy) = if class == TokenizerClass::T5 {
            (
                reader.bool(&init, "add_prefix_space")?.unwrap_or(true),
                reader.bool(&init, "legacy")?.unwrap_or(true),
            )
        } else {
            (true, true)
        };
        match (add_prefix_space, legacy) {
            (false, _) => PrependScheme::Never,
            (true, true) => PrependScheme::Always,
            (true, false) => PrependScheme::First,
        }
    };

    Ok(FolderConfig {
        extra_ids,
        spm_prepend_scheme,
        special,
        additional_special,
        added_tokens,
        model_max_length,
        padding_side: reader.side(&init, "padding_side")?,
        truncation_side: reader.side(&init, "truncation_side")?,
        clean_up_tokenization_spaces: reader.bool(&init, "clean_up_tokenization_spaces")?,
        model_input_names,
        do_lower_case: reader.bool(&init, "do_lower_case")?.unwrap_or(true),
        strip_accents: reader.bool(&init, "strip_accents")?,
        tokenize_chinese_chars: reader
            .bool(&init, "tokenize_chinese_chars")?
            .unwrap_or(true),
        add_prefix_space: reader.bool(&init, "add_prefix_space")?.unwrap_or(false),
        trim_offsets: reader.bool(&init, "trim_offsets")?.unwrap_or(true),
        add_bos_token: reader.bool(&init, "add_bos_token")?.unwrap_or(false),
        class,
    })
}

fn token_content(value: &Value) -> Option<&str> {
    match value {
        Value::String(content) => Some(content),
        Value::Object(map) => map.get("content").and_then(Value::as_str),
        _ => None,
    }
}

/// A TokenSpec back as JSON; `as_object` keeps the flags (special_tokens_map.json objects are
/// marked special, as transformers does).
fn token_to_value(token: &TokenSpec, as_object: bool) -> Value {
    if !as_object {
        return Value::String(token.content.clone());
    }
    let mut map = Map::new();
    map.insert("content".into(), Value::String(token.content.clone()));
    map.insert("lstrip".into(), Value::Bool(token.lstrip));
    map.insert("rstrip".into(), Value::Bool(token.rstrip));
    map.insert("single_word".into(), Value::Bool(token.single_word));
    if let Some(normalized) = token.normalized {
        map.insert("normalized".into(), Value::Bool(normalized));
    }
    map.insert("special".into(), Value::Bool(true));
    Value::Object(map)
}

/// The class AutoTokenizer would pick from config.json's `model_type` (or `tokenizer_class`).
fn class_from_model_config(folder: &Path) -> Result<Option<TokenizerClass>> {
    let path: PathBuf = folder.join("config.json");
    let Some(config) = read_json_object(&path)? else {
        return Ok(None);
    };
    if let Some(Value::String(name)) = config.get("tokenizer_class") {
        return Ok(Some(TokenizerClass::from_class_name(name)));
    }
    Ok(config
        .get("model_type")
        .and_then(Value::as_str)
        .and_then(TokenizerClass::from_model_type))
}
