//! Fast tokenizers built from the "slow" files when a folder has no tokenizer.json, as
//! transformers' convert_slow_tokenizer.py does (`BertConverter`, `GPT2Converter`,
//! `RobertaConverter`).

use std::path::Path;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::roberta::RobertaProcessing;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{PostProcessorWrapper, Tokenizer};

use crate::config::FolderConfig;
use crate::error::{Result, TokenizerError};

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
