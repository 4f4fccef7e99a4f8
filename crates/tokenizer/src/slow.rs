//! Fast tokenizers built from the "slow" files when a folder has no tokenizer.json, as
//! transformers' convert_slow_tokenizer.py does (`BertConverter`, `GPT2Converter`,
//! `RobertaConverter`, and for sentencepiece models `T5Converter`, `XLMRobertaConverter` and
//! `SpmConverter`).

use std::collections::HashMap;
use std::path::Path;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::models::unigram::Unigram;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::replace::ReplacePattern;
use tokenizers::normalizers::{
    BertNormalizer, Precompiled, Replace, Sequence as NormalizerSequence, Strip,
};
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::processors::roberta::RobertaProcessing;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, NormalizerWrapper, PostProcessorWrapper, Tokenizer};

use crate::config::FolderConfig;
use crate::error::{Result, TokenizerError};
use crate::sentencepiece::{ModelType, PieceType, SpmModel};

fn special(config: &FolderConfig, key: &str) -> Option<String> {
    config
        .special
        .iter()
        .find(|(name, _)| *name == key)
        .map(|(_, token)| token.content.clone())
}

/// The id of a special token the template needs, from the vocabulary.
fn required_id(
    vocab: &Vocab,
    config: &FolderConfig,
    key: &str,
    file: &Path,
) -> Result<(String, u32)> {
    let config_path = file.with_file_name("tokenizer_config.json");
    let token = special(config, key).ok_or_else(|| TokenizerError::InvalidConfig {
        path: config_path.clone(),
        field: key.to_string(),
        message: "the template needs this special token but the configuration sets none".into(),
    })?;
    // the vocabulary, else the added tokens (added_tokens_decoder / added_tokens.json), as the slow
    // tokenizer's convert_tokens_to_ids
    let added = config
        .added_tokens
        .iter()
        .find(|(_, added)| added.content == token)
        .map(|(&id, _)| id);
    let id = vocab
        .get(&token)
        .copied()
        .or(added)
        .ok_or_else(|| TokenizerError::InvalidConfig {
            path: config_path,
            field: key.to_string(),
            message: format!(
                "`{token}` is not in {} nor among the added tokens",
                file.display()
            ),
        })?;
    Ok((token, id))
}

fn invalid_file(path: &Path, error: impl ToString) -> TokenizerError {
    TokenizerError::InvalidTokenizerFile {
        path: path.to_path_buf(),
        message: error.to_string(),
    }
}

/// BERT from vocab.txt: one token per line, ids by line (`BertConverter`).
pub(crate) fn wordpiece_from_vocab_txt(folder: &Path, config: &FolderConfig) -> Result<Tokenizer> {
    let path = folder.join("vocab.txt");
    let text = std::fs::read_to_string(&path).map_err(|source| TokenizerError::Io {
        path: path.clone(),
        source,
    })?;
    // BertTokenizer's load_vocab: a later duplicate wins.
    let mut vocab = Vocab::new();
    for (index, line) in text.lines().enumerate() {
        let id = u32::try_from(index).map_err(|error| invalid_file(&path, error))?;
        vocab.insert(line.to_string(), id);
    }
    let unk = special(config, "unk_token").unwrap_or_else(|| "[UNK]".to_string());
    let cls = required_id(&vocab, config, "cls_token", &path)?;
    let sep = required_id(&vocab, config, "sep_token", &path)?;
    let model = WordPiece::builder()
        .vocab(vocab)
        .unk_token(unk)
        .continuing_subword_prefix("##".into())
        .max_input_chars_per_word(100)
        .build()
        .map_err(|error| invalid_file(&path, error))?;
    let template = TemplateProcessing::builder()
        .try_single(format!("{}:0 $A:0 {}:0", cls.0, sep.0))
        .and_then(|builder| {
            builder.try_pair(format!("{}:0 $A:0 {}:0 $B:1 {}:1", cls.0, sep.0, sep.0))
        })
        .map_err(|error| invalid_file(&path, error))?
        .special_tokens(vec![cls, sep])
        .build()
        .map_err(|error| invalid_file(&path, error))?;

    let mut tokenizer = Tokenizer::new(model);
    tokenizer
        .with_normalizer(Some(BertNormalizer::new(
            true,
            config.tokenize_chinese_chars,
            config.strip_accents,
            config.do_lower_case,
        )))
        .with_pre_tokenizer(Some(BertPreTokenizer))
        .with_post_processor(Some(template))
        .with_decoder(Some(WordPieceDecoder::new("##".into(), true)));
    Ok(tokenizer)
}

/// Byte-level BPE from vocab.json + merges.txt (`GPT2Converter`, or `RobertaConverter` for the
/// RoBERTa-like classes).
pub(crate) fn byte_level_bpe_from_files(folder: &Path, config: &FolderConfig) -> Result<Tokenizer> {
    let vocab_path = folder.join("vocab.json");
    let merges_path = folder.join("merges.txt");
    let (vocab, merges) = BPE::read_file(
        &vocab_path.to_string_lossy(),
        &merges_path.to_string_lossy(),
    )
    .map_err(|error| TokenizerError::InvalidTokenizerFile {
        path: folder.to_path_buf(),
        message: format!("vocab.json + merges.txt: {error}"),
    })?;
    let processor: PostProcessorWrapper = if config.class.is_roberta_like() {
        let sep = required_id(&vocab, config, "sep_token", &vocab_path)?;
        let cls = required_id(&vocab, config, "cls_token", &vocab_path)?;
        RobertaProcessing::new(sep, cls)
            .add_prefix_space(config.add_prefix_space)
            .trim_offsets(true)
            .into()
    } else if config.add_bos_token {
        let bos = required_id(&vocab, config, "bos_token", &vocab_path)?;
        TemplateProcessing::builder()
            .try_single(format!("{}:0 $A:0", bos.0))
            .and_then(|builder| builder.try_pair(format!("{}:0 $A:0 $B:1", bos.0)))
            .map_err(|error| invalid_file(&vocab_path, error))?
            .special_tokens(vec![bos])
            .build()
            .map_err(|error| invalid_file(&vocab_path, error))?
            .into()
    } else {
        ByteLevel::default().trim_offsets(false).into()
    };
    let model = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|error| invalid_file(&vocab_path, error))?;
    let mut tokenizer = Tokenizer::new(model);
    tokenizer
        .with_pre_tokenizer(Some(
            ByteLevel::default().add_prefix_space(config.add_prefix_space),
        ))
        .with_post_processor(Some(processor))
        .with_decoder(Some(ByteLevelDecoder::default()));
    Ok(tokenizer)
}

/// Which of transformers' `SpmConverter`s (convert_slow_tokenizer.py) builds the fast tokenizer
/// from a sentencepiece model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SpmConverter {
    /// `T5Converter`: the pieces, then `<extra_id_{n-1}>` … `<extra_id_0>`; `$A </s>`.
    T5 {
        /// `extra_ids` of tokenizer_config.json (T5Tokenizer's default: 100).
        extra_ids: usize,
    },
    /// `XLMRobertaConverter`: fairseq's ids (`<s>` 0, `<pad>` 1, `</s>` 2, `<unk>` 3, the spm
    /// pieces from id 3 on shifted by one, `<mask>` last); `<s> A </s> </s> B </s>`.
    XlmRoberta,
    /// The source model of a Marian folder: `SpmConverter` without the control pieces as added
    /// tokens (MarianTokenizer runs sentencepiece itself, which reads `<s>` in a text as plain
    /// characters) and without a template (Marian adds its own `</s>`).
    MarianSource,
}

/// The fast tokenizer of a sentencepiece model, as `SpmConverter.converted()` builds it: the
/// Unigram or BPE model, the spm control and user-defined pieces as added tokens, the
/// precompiled-charsmap normalizer, Metaspace with `prepend_scheme` and the template.
pub(crate) fn sentencepiece(
    path: &Path,
    model: &SpmModel,
    converter: SpmConverter,
    prepend_scheme: PrependScheme,
) -> Result<Tokenizer> {
    let invalid = |error: &dyn std::fmt::Display| invalid_file(path, error);
    // SpmConverter.vocab / unk_id, per converter
    let mut vocab_scores: Vec<(String, f64)> = match converter {
        SpmConverter::XlmRoberta => ["<s>", "<pad>", "</s>", "<unk>"]
            .into_iter()
            .map(|token| (token.to_string(), 0.0))
            .chain(model.vocab_scores().skip(3))
            .chain(std::iter::once(("<mask>".to_string(), 0.0)))
            .collect(),
        SpmConverter::T5 { .. } => model.vocab_scores().collect(),
        // sentencepiece never reads a control (`<s>`) or unused piece in a text: only the pieces
        // it can match are in the Unigram model (Marian maps ids by token, not by position)
        SpmConverter::MarianSource => model
            .vocab_scores()
            .enumerate()
            .filter(|(id, _)| {
                !matches!(
                    model.piece_type(*id),
                    PieceType::Control | PieceType::Unused
                )
            })
            .map(|(_, piece)| piece)
            .collect(),
    };
    if let SpmConverter::T5 { extra_ids } = converter {
        vocab_scores.extend(
            (0..extra_ids)
                .rev()
                .map(|i| (format!("<extra_id_{i}>"), 0.0)),
        );
    }
    let unk_id = match converter {
        SpmConverter::XlmRoberta => 3,
        SpmConverter::MarianSource => {
            let unk = model.pieces[model.trainer.unk_id() as usize].piece();
            vocab_scores
                .iter()
                .position(|(piece, _)| piece == unk)
                .unwrap_or_default()
        }
        // SpmModel::read checked it is a piece's id
        SpmConverter::T5 { .. } => model.trainer.unk_id() as usize,
    };

    let mut tokenizer = match model.model_type() {
        ModelType::Bpe => {
            let merges = spm_merges(model, &vocab_scores);
            let mut vocab = Vocab::new();
            for (id, (piece, _)) in vocab_scores.iter().enumerate() {
                let id = u32::try_from(id).map_err(|error| invalid(&error))?;
                vocab.insert(piece.clone(), id);
            }
            let bpe = BPE::builder()
                .vocab_and_merges(vocab, merges)
                .unk_token(model.trainer.unk_piece().to_string())
                .fuse_unk(true)
                .byte_fallback(false)
                .build()
                .map_err(|error| invalid(&error))?;
            Tokenizer::new(bpe)
        }
        _ => {
            let unigram = Unigram::from(vocab_scores, Some(unk_id), false)
                .map_err(|error| invalid(&error))?;
            Tokenizer::new(unigram)
        }
    };

    // control pieces are special added tokens, user-defined ones plain ones (SpmConverter.tokenizer)
    let added: Vec<AddedToken> = model
        .pieces
        .iter()
        .enumerate()
        .filter_map(|(id, piece)| match model.piece_type(id) {
            PieceType::Control if converter != SpmConverter::MarianSource => {
                Some(AddedToken::from(piece.piece().to_string(), true))
            }
            PieceType::UserDefined => Some(AddedToken::from(piece.piece().to_string(), false)),
            _ => None,
        })
        .map(|token| token.normalized(false))
        .collect();
    tokenizer.add_tokens(&added);

    // SpmConverter.normalizer
    let mut normalizers: Vec<NormalizerWrapper> = Vec::new();
    if let Some(charsmap) = model.precompiled_charsmap() {
        let precompiled = Precompiled::from(charsmap).map_err(|error| invalid(&error))?;
        normalizers.push(precompiled.into());
    }
    normalizers.push(Strip::new(false, true).into());
    normalizers.push(
        Replace::new(ReplacePattern::Regex(" {2,}".into()), "\u{2581}")
            .map_err(|error| invalid(&error))?
            .into(),
    );
    tokenizer
        .with_normalizer(Some(NormalizerSequence::new(normalizers)))
        .with_pre_tokenizer(Some(Metaspace::new('\u{2581}', prepend_scheme, true)))
        .with_decoder(Some(Metaspace::new('\u{2581}', prepend_scheme, true)));

    let id_of = |token: &str| -> Result<(String, u32)> {
        tokenizer
            .token_to_id(token)
            .map(|id| (token.to_string(), id))
            .ok_or_else(|| invalid(&format!("the template needs `{token}`, which is no piece")))
    };
    let template = match converter {
        SpmConverter::T5 { .. } => {
            let eos = id_of("</s>")?;
            Some(
                TemplateProcessing::builder()
                    .try_single("$A </s>")
                    .and_then(|builder| builder.try_pair("$A </s> $B </s>"))
                    .map_err(|error| invalid(&error))?
                    .special_tokens(vec![eos])
                    .build()
                    .map_err(|error| invalid(&error))?,
            )
        }
        SpmConverter::XlmRoberta => {
            let bos = id_of("<s>")?;
            let eos = id_of("</s>")?;
            Some(
                TemplateProcessing::builder()
                    .try_single("<s> $A </s>")
                    .and_then(|builder| builder.try_pair("<s> $A </s> </s> $B </s>"))
                    .map_err(|error| invalid(&error))?
                    .special_tokens(vec![bos, eos])
                    .build()
                    .map_err(|error| invalid(&error))?,
            )
        }
        SpmConverter::MarianSource => None,
    };
    if let Some(template) = template {
        tokenizer.with_post_processor(Some(template));
    }
    Ok(tokenizer)
}

/// transformers' `generate_merges(vocab, vocab_scores)` for `SentencePieceExtractor`: every split
/// of a piece into two pieces of the spm model is a merge, ranked by the piece's score (then the
/// lengths of the two halves), highest first; ties keep the vocabulary order.
fn spm_merges(model: &SpmModel, vocab_scores: &[(String, f64)]) -> Vec<(String, String)> {
    // the spm model's own piece → id (a later duplicate wins, as a Python dict)
    let mut spm_ids: HashMap<&str, usize> = HashMap::new();
    for (id, piece) in model.pieces.iter().enumerate() {
        spm_ids.insert(piece.piece(), id);
    }
    // dict(vocab_scores): first position of a piece, last score
    let mut order: Vec<&str> = Vec::new();
    let mut scores: HashMap<&str, f64> = HashMap::new();
    for (piece, score) in vocab_scores {
        if scores.insert(piece, *score).is_none() {
            order.push(piece);
        }
    }
    let mut merges: Vec<(&str, &str, f64)> = Vec::new();
    for merge in order {
        let score = scores[merge];
        let mut local: Vec<(&str, &str, f64)> = merge
            .char_indices()
            .skip(1)
            .map(|(index, _)| merge.split_at(index))
            .filter(|(left, right)| spm_ids.contains_key(left) && spm_ids.contains_key(right))
            .map(|(left, right)| (left, right, score))
            .collect();
        local.sort_by_key(|(left, right, _)| (spm_ids[left], spm_ids[right]));
        merges.extend(local);
    }
    let key = |(left, right, score): &(&str, &str, f64)| {
        (*score, left.chars().count(), right.chars().count())
    };
    // sorted(..., reverse=True) is stable: equal keys keep their order
    merges.sort_by(|a, b| {
        let (a, b) = (key(a), key(b));
        b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)).then(b.2.cmp(&a.2))
    });
    merges
        .into_iter()
        .map(|(left, right, _)| (left.to_string(), right.to_string()))
        .collect()
}
