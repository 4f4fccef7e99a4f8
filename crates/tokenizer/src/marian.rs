//! Marian (opus-mt) folders: `source.spm`, `target.spm`, `vocab.json` and no tokenizer.json, read
//! as transformers 4.57's `MarianTokenizer` (models/marian/tokenization_marian.py), a slow-only
//! tokenizer:
//!
//! - encoding splits off a leading language code (`>>fr<<`), cuts the rest into pieces with the
//!   source model, looks each piece up in vocab.json (`<unk>` when it is not there) and appends
//!   `</s>`;
//! - decoding looks the ids up in vocab.json and joins the pieces with the target model's
//!   detokenization (sentencepiece's `DecodePieces`).
//!
//! Here the source model runs as a `tokenizers` Unigram model in its own ids (built as
//! `SpmConverter` builds any sentencepiece model), and [`Marian::map_ids`] turns those ids into
//! vocab.json's.

use std::collections::HashMap;
use std::path::Path;

use tokenizers::normalizers::Precompiled;
use tokenizers::{NormalizedString, Normalizer};

use crate::config::FolderConfig;
use crate::error::{Result, TokenizerError};
use crate::sentencepiece::{PieceType, SpmModel};
use crate::slow::{self, SpmConverter};

/// vocab.json, the backend-id → vocab-id table and the target model's detokenizer.
#[derive(Debug, Clone)]
pub(crate) struct Marian {
    /// vocab.json: token → id.
    ids: HashMap<String, u32>,
    /// vocab.json inverted: id → token.
    tokens: HashMap<u32, String>,
    unk_token: String,
    unk_id: u32,
    /// The backend's id (source pieces, added tokens) → vocab.json's id.
    from_backend: Vec<u32>,
    /// The source model's unknown piece, in the backend's ids: its text is looked up instead.
    source_unk: u32,
    /// The source model's character map, which makes an unknown piece's text from the input.
    source_charsmap: Option<Precompiled>,
    target: SpmDecoder,
}

fn read_vocab(path: &Path) -> Result<HashMap<String, u32>> {
    let text = std::fs::read_to_string(path).map_err(|source| TokenizerError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let values: HashMap<String, serde_json::Value> =
        serde_json::from_str(&text).map_err(|source| TokenizerError::Json {
            path: path.to_path_buf(),
            source,
        })?;
    values
        .into_iter()
        .map(|(token, id)| {
            let parsed = id.as_u64().and_then(|id| u32::try_from(id).ok());
            match parsed {
                Some(id) => Ok((token, id)),
                None => Err(TokenizerError::InvalidConfig {
                    path: path.to_path_buf(),
                    field: token,
                    message: format!("expected a token id, found {id}"),
                }),
            }
        })
        .collect()
}

/// The files a Marian folder needs, checked before anything is read.
fn require(folder: &Path, file: &str) -> Result<std::path::PathBuf> {
    let path = folder.join(file);
    if path.is_file() {
        Ok(path)
    } else {
        Err(TokenizerError::MissingTokenizerFile {
            folder: folder.to_path_buf(),
            file: file.to_string(),
            reason: "a Marian tokenizer needs source.spm, target.spm and vocab.json".into(),
        })
    }
}

/// The backend that encodes with the source model (with the target model when `targets`: the
/// labels, `tokenizer(text_target=...)`), in that model's numbering, and the vocabulary that maps
/// its ids. Call [`Marian::attach`] once every token is added to the backend.
pub(crate) fn build(
    folder: &Path,
    config: &FolderConfig,
    targets: bool,
) -> Result<(tokenizers::Tokenizer, Marian)> {
    let source_path = require(folder, "source.spm")?;
    let target_path = require(folder, "target.spm")?;
    let vocab_path = require(folder, "vocab.json")?;
    if config.separate_vocabs {
        return Err(TokenizerError::InvalidConfig {
            path: folder.join("tokenizer_config.json"),
            field: "separate_vocabs".into(),
            message: "Marian folders with a separate target vocabulary (target_vocab.json) are \
                      not supported yet"
                .into(),
        });
    }
    let source = SpmModel::read(&source_path)?;
    let target = SpmModel::read(&target_path)?;
    // MarianTokenizer._switch_to_target_mode: the target model cuts, the vocabulary is the same
    let (source_path, source) = if targets {
        (target_path.clone(), target.clone())
    } else {
        (source_path, source)
    };
    let ids = read_vocab(&vocab_path)?;

    let special = |key: &str| {
        config
            .special
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, token)| token.content.clone())
    };
    let unk_token = special("unk_token").unwrap_or_else(|| "<unk>".into());
    let eos_token = special("eos_token").unwrap_or_else(|| "</s>".into());
    let config_error = |field: &str, message: String| TokenizerError::InvalidConfig {
        path: vocab_path.clone(),
        field: field.into(),
        message,
    };
    // MarianTokenizer.__init__: "<unk> token must be in the vocab"
    let unk_id = *ids
        .get(&unk_token)
        .ok_or_else(|| config_error("unk_token", format!("`{unk_token}` is not in vocab.json")))?;
    if !ids.contains_key(&eos_token) {
        return Err(config_error(
            "eos_token",
            format!("`{eos_token}` is not in vocab.json"),
        ));
    }

    let mut backend = slow::sentencepiece(
        &source_path,
        &source,
        SpmConverter::MarianSource,
        config.spm_prepend_scheme,
    )?;
    // `</s>` is appended (build_inputs_with_special_tokens). Language codes (`>>fr<<`) are no
    // added tokens: only a leading one is split off (`remove_language_code`), by the encoder,
    // which puts the unknown token in its place.
    backend.add_special_tokens(&[tokenizers::AddedToken::from(eos_token.clone(), true)]);
    let eos_backend_id = backend.token_to_id(&eos_token).ok_or_else(|| {
        config_error(
            "eos_token",
            format!("`{eos_token}` could not be added to the tokenizer"),
        )
    })?;
    let template = tokenizers::processors::template::TemplateProcessing::builder()
        .try_single(format!("$A {eos_token}"))
        .and_then(|builder| builder.try_pair(format!("$A $B {eos_token}")))
        .map_err(|error| config_error("eos_token", error))?
        .special_tokens(vec![(eos_token.clone(), eos_backend_id)])
        .build()
        .map_err(|error| config_error("eos_token", error.to_string()))?;
    backend.with_post_processor(Some(template));

    let tokens = ids.iter().map(|(token, &id)| (id, token.clone())).collect();
    let source_charsmap =
        match source.precompiled_charsmap() {
            Some(map) => Some(Precompiled::from(map).map_err(|error| {
                TokenizerError::InvalidTokenizerFile {
                    path: source_path.clone(),
                    message: error.to_string(),
                }
            })?),
            None => None,
        };
    let source_unk_piece = source.pieces[source.trainer.unk_id() as usize].piece();
    let marian = Marian {
        source_unk: backend.token_to_id(source_unk_piece).unwrap_or(0),
        source_charsmap,
        ids,
        tokens,
        unk_token,
        unk_id,
        from_backend: Vec::new(),
        target: SpmDecoder::new(&target),
    };
    Ok((backend, marian))
}

impl Marian {
    /// Fills the backend-id → vocab-id table from the finished backend (added tokens included).
    pub(crate) fn attach(&mut self, backend: &tokenizers::Tokenizer) {
        let size = backend.get_vocab_size(true) as u32;
        self.from_backend = (0..size)
            .map(|id| {
                backend
                    .id_to_token(id)
                    .and_then(|token| self.ids.get(&token).copied())
                    .unwrap_or(self.unk_id)
            })
            .collect();
    }

    /// The text the encoder puts in place of a leading language code: the unknown token, which
    /// the backend always splits off as its own token.
    pub(crate) fn code_stand_in(&self) -> &str {
        &self.unk_token
    }

    /// A backend id as vocab.json's (`_convert_token_to_id`: `<unk>` for a piece it lacks).
    pub(crate) fn map_id(&self, backend_id: u32) -> u32 {
        self.from_backend
            .get(backend_id as usize)
            .copied()
            .unwrap_or(self.unk_id)
    }

    /// Backend ids as vocab.json's, and their tokens as vocab.json names them. An unknown piece
    /// of the source model is, as sentencepiece returns it, the normalized text it covers
    /// (`surface(i)`: the input it came from), which vocab.json may know.
    pub(crate) fn map_ids<'a>(
        &self,
        ids: &mut [u32],
        tokens: &mut [String],
        surface: impl Fn(usize) -> Option<&'a str>,
    ) {
        for (index, (id, token)) in ids.iter_mut().zip(tokens.iter_mut()).enumerate() {
            let unknown_piece = (*id == self.source_unk)
                .then(|| surface(index))
                .flatten()
                .map(|text| self.normalized(text));
            match unknown_piece {
                Some(piece) => {
                    *id = self.ids.get(&piece).copied().unwrap_or(self.unk_id);
                    *token = piece;
                }
                None => *id = self.map_id(*id),
            }
            if let Some(name) = self.token(*id)
                && name != token
            {
                *token = name.to_string();
            }
        }
    }

    /// The source model's normalization of a piece of input (the input itself should the
    /// character map fail: it already normalized the whole text once).
    fn normalized(&self, text: &str) -> String {
        let Some(charsmap) = &self.source_charsmap else {
            return text.to_string();
        };
        let mut normalized = NormalizedString::from(text);
        let done = crate::panics::catch_quietly(|| charsmap.normalize(&mut normalized).is_ok());
        match done {
            Ok(true) => normalized.get().to_string(),
            _ => text.to_string(),
        }
    }

    pub(crate) fn token_to_id(&self, token: &str) -> Option<u32> {
        self.ids.get(token).copied()
    }

    pub(crate) fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(&id).map(String::as_str)
    }

    /// `len(self.encoder)`.
    pub(crate) fn vocab_size(&self) -> usize {
        self.ids.len()
    }

    /// `_convert_id_to_token`: the unknown token for an id vocab.json lacks.
    fn id_to_token(&self, id: u32) -> &str {
        self.token(id).unwrap_or(&self.unk_token)
    }

    /// `MarianTokenizer.decode` (PreTrainedTokenizer._decode with Marian's
    /// `convert_tokens_to_string`, target model, `spaces_between_special_tokens`), before the
    /// clean-up of tokenization spaces.
    ///
    /// `special_tokens` are `all_special_tokens`, `special_ids` their ids.
    pub(crate) fn decode(
        &self,
        ids: &[u32],
        skip_special_tokens: bool,
        special_tokens: &[&str],
        special_ids: &[u32],
    ) -> String {
        let tokens = ids
            .iter()
            .filter(|id| !(skip_special_tokens && special_ids.contains(id)))
            .map(|&id| self.id_to_token(id))
            .filter(|token| !(skip_special_tokens && special_tokens.contains(token)));
        // convert_tokens_to_string: special tokens are not detokenized by sentencepiece
        let mut text = String::new();
        let mut pieces: Vec<&str> = Vec::new();
        for token in tokens {
            if special_tokens.contains(&token) {
                text.push_str(&self.target.decode_pieces(&pieces));
                text.push_str(token);
                text.push(' ');
                pieces.clear();
            } else {
                pieces.push(token);
            }
        }
        text.push_str(&self.target.decode_pieces(&pieces));
        let text = text.replace('\u{2581}', " ");
        python_strip(&text).to_string()
    }
}

/// The length in bytes of the language code a text starts with (`>>fr<<`), as
/// `MarianTokenizer.remove_language_code` finds it.
pub(crate) fn language_code_len(text: &str) -> Option<usize> {
    if !text.starts_with(">>") {
        return None;
    }
    text.find("<<").map(|end| end + 2)
}

/// Python's `str.strip()`: Python counts U+001C..U+001F as white space too.
fn python_strip(text: &str) -> &str {
    text.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

/// sentencepiece's `SentencePieceProcessor::Decode` for pieces (`decode_pieces`): control pieces
/// vanish, `<unk>` becomes the unknown surface (` ⁇ `), a piece the model lacks is kept as it is,
/// byte pieces are joined into UTF-8, and the first piece loses its leading `▁`.
#[derive(Debug, Clone)]
struct SpmDecoder {
    /// piece → type, as `PieceToId` then `IsControl` / `IsUnknown` / `IsByte` see it (a piece
    /// the model lacks reads as unknown).
    pieces: HashMap<String, PieceType>,
    unk_piece: String,
    unk_surface: String,
    /// `add_dummy_prefix || remove_extra_whitespaces`: the first piece loses its `▁`.
    strip_first_space: bool,
    remove_extra_whitespaces: bool,
}

impl SpmDecoder {
    fn new(model: &SpmModel) -> SpmDecoder {
        let mut pieces = HashMap::new();
        for (id, piece) in model.pieces.iter().enumerate() {
            pieces
                .entry(piece.piece().to_string())
                .or_insert(model.piece_type(id));
        }
        let unk_id = model.trainer.unk_id() as usize;
        SpmDecoder {
            pieces,
            unk_piece: model.pieces[unk_id].piece().to_string(),
            unk_surface: model.trainer.unk_surface().to_string(),
            strip_first_space: model.normalizer.add_dummy_prefix()
                || model.normalizer.remove_extra_whitespaces(),
            remove_extra_whitespaces: model.normalizer.remove_extra_whitespaces(),
        }
    }

    fn decode_pieces(&self, pieces: &[&str]) -> String {
        let mut text = String::new();
        let mut bytes: Vec<u8> = Vec::new();
        // whether the next piece may still lose a leading ▁, and whether one was taken
        let mut is_bos_ws = true;
        let mut bos_ws_seen = false;
        for piece in pieces {
            let kind = self
                .pieces
                .get(*piece)
                .copied()
                .unwrap_or(PieceType::Unknown);
            if kind == PieceType::Byte
                && let Some(byte) = piece_to_byte(piece)
            {
                bytes.push(byte);
                continue;
            }
            push_bytes(&mut text, &mut bytes);
            if bos_ws_seen || !text.is_empty() {
                is_bos_ws = false;
            }
            bos_ws_seen = false;
            match kind {
                PieceType::Control => {}
                PieceType::Unknown if *piece == self.unk_piece => text.push_str(&self.unk_surface),
                PieceType::Unknown => text.push_str(piece),
                _ => {
                    let mut piece: &str = piece;
                    if is_bos_ws
                        && self.strip_first_space
                        && let Some(rest) = piece.strip_prefix('\u{2581}')
                    {
                        piece = rest;
                        // with remove_extra_whitespaces every leading ▁ goes
                        bos_ws_seen = !self.remove_extra_whitespaces;
                    }
                    text.push_str(&piece.replace('\u{2581}', " "));
                }
            }
        }
        push_bytes(&mut text, &mut bytes);
        text
    }
}

/// `<0x41>` → 0x41.
fn piece_to_byte(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    (hex.len() == 2).then(|| u8::from_str_radix(hex, 16).ok())?
}

/// Byte pieces as text: each valid UTF-8 character, U+FFFD for each byte that starts none.
fn push_bytes(text: &mut String, bytes: &mut Vec<u8>) {
    let mut rest: &[u8] = bytes;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(valid) => {
                text.push_str(valid);
                break;
            }
            Err(error) => {
                let valid = error.valid_up_to();
                text.push_str(std::str::from_utf8(&rest[..valid]).unwrap_or_default());
                text.push('\u{fffd}');
                rest = &rest[valid + 1..];
            }
        }
    }
    bytes.clear();
}
