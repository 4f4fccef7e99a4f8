//! Sentencepiece model files (`spiece.model`, `sentencepiece.bpe.model`, Marian's `source.spm` /
//! `target.spm`): the `ModelProto` message of sentencepiece's `sentencepiece_model.proto` (proto2),
//! decoded with prost, and checked for what the tokenizer builders need.
//!
//! Only the fields this crate reads are declared; prost skips the others. The proto2 defaults are
//! sentencepiece's (`unk_id` 0, `add_dummy_prefix` true, ...): a field the file leaves out reads
//! as its default through the generated accessor (`trainer_spec.unk_id()`).

use std::path::Path;

use prost::Message;

use crate::error::{Result, TokenizerError};

/// `sentencepiece.ModelProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ModelProto {
    /// The vocabulary: a piece's id is its index.
    #[prost(message, repeated, tag = "1")]
    pub pieces: Vec<SentencePiece>,
    #[prost(message, optional, tag = "2")]
    pub trainer_spec: Option<TrainerSpec>,
    #[prost(message, optional, tag = "3")]
    pub normalizer_spec: Option<NormalizerSpec>,
    /// Applied to decoded text; set by very few models (none of the HF families this crate reads).
    #[prost(message, optional, tag = "5")]
    pub denormalizer_spec: Option<NormalizerSpec>,
}

/// `ModelProto.SentencePiece`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SentencePiece {
    #[prost(string, optional, tag = "1")]
    pub piece: Option<String>,
    #[prost(float, optional, tag = "2")]
    pub score: Option<f32>,
    #[prost(enumeration = "PieceType", optional, tag = "3", default = "Normal")]
    pub r#type: Option<i32>,
}

/// `ModelProto.SentencePiece.Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
pub(crate) enum PieceType {
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
}

/// `TrainerSpec.ModelType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
pub(crate) enum ModelType {
    Unigram = 1,
    Bpe = 2,
    Word = 3,
    Char = 4,
}

/// `sentencepiece.TrainerSpec` (the fields the tokenizer needs).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct TrainerSpec {
    #[prost(enumeration = "ModelType", optional, tag = "3", default = "Unigram")]
    pub model_type: Option<i32>,
    #[prost(bool, optional, tag = "35", default = "false")]
    pub byte_fallback: Option<bool>,
    #[prost(int32, optional, tag = "40", default = "0")]
    pub unk_id: Option<i32>,
    #[prost(string, optional, tag = "44", default = " \u{2047} ")]
    pub unk_surface: Option<String>,
    #[prost(string, optional, tag = "45", default = "<unk>")]
    pub unk_piece: Option<String>,
}

/// `sentencepiece.NormalizerSpec`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct NormalizerSpec {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub precompiled_charsmap: Option<Vec<u8>>,
    #[prost(bool, optional, tag = "3", default = "true")]
    pub add_dummy_prefix: Option<bool>,
    #[prost(bool, optional, tag = "4", default = "true")]
    pub remove_extra_whitespaces: Option<bool>,
}

/// A decoded and checked sentencepiece model.
#[derive(Debug, Clone)]
pub(crate) struct SpmModel {
    pub pieces: Vec<SentencePiece>,
    pub trainer: TrainerSpec,
    pub normalizer: NormalizerSpec,
}

fn invalid(path: &Path, message: impl Into<String>) -> TokenizerError {
    TokenizerError::InvalidTokenizerFile {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

impl SpmModel {
    /// Reads a `ModelProto` file.
    ///
    /// # Errors
    /// [`TokenizerError::Io`] when the file cannot be read; [`TokenizerError::InvalidTokenizerFile`]
    /// naming it when it is not a sentencepiece `ModelProto` (not protobuf, or truncated: no
    /// trainer or normalizer spec, no pieces), or a model this crate cannot run (WORD / CHAR
    /// models, an unknown-piece id outside the vocabulary).
    pub(crate) fn read(path: &Path) -> Result<SpmModel> {
        let bytes = std::fs::read(path).map_err(|source| TokenizerError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::decode(&bytes).map_err(|message| invalid(path, message))
    }

    fn decode(bytes: &[u8]) -> std::result::Result<SpmModel, String> {
        let proto = ModelProto::decode(bytes)
            .map_err(|error| format!("not a sentencepiece ModelProto: {error}"))?;
        // sentencepiece writes the pieces, then the trainer and normalizer specs: a file cut short
        // lacks the specs.
        let trainer = proto
            .trainer_spec
            .ok_or("not a complete sentencepiece ModelProto: no trainer_spec (truncated?)")?;
        let normalizer = proto
            .normalizer_spec
            .ok_or("not a complete sentencepiece ModelProto: no normalizer_spec (truncated?)")?;
        if proto.pieces.is_empty() {
            return Err("not a sentencepiece ModelProto: no pieces".into());
        }
        if let Some(index) = proto
            .pieces
            .iter()
            .position(|piece| piece.piece.as_deref().is_none_or(str::is_empty))
        {
            return Err(format!("piece {index} is empty"));
        }
        if let Some(denormalizer) = &proto.denormalizer_spec
            && denormalizer
                .precompiled_charsmap
                .as_ref()
                .is_some_and(|map| !map.is_empty())
        {
            return Err("denormalizer_spec rules are not supported".into());
        }
        // the raw value: prost's accessor reads an unknown one as the default
        let raw_type = trainer.model_type.unwrap_or(ModelType::Unigram as i32);
        let model_type = ModelType::try_from(raw_type)
            .map_err(|_| format!("unknown trainer_spec.model_type {raw_type}"))?;
        if !matches!(model_type, ModelType::Unigram | ModelType::Bpe) {
            return Err(format!(
                "model_type {model_type:?} is not supported (only UNIGRAM and BPE, as transformers' \
                 converters)"
            ));
        }
        let unk_id = trainer.unk_id();
        if usize::try_from(unk_id).map_or(true, |id| id >= proto.pieces.len()) {
            return Err(format!(
                "trainer_spec.unk_id {unk_id} is outside the {} pieces",
                proto.pieces.len()
            ));
        }
        Ok(SpmModel {
            pieces: proto.pieces,
            trainer,
            normalizer,
        })
    }

    /// UNIGRAM or BPE ([`SpmModel::read`] refused the others).
    pub(crate) fn model_type(&self) -> ModelType {
        self.trainer.model_type()
    }

    /// `(piece, score)` in id order, as `SpmConverter.vocab`.
    pub(crate) fn vocab_scores(&self) -> impl Iterator<Item = (String, f64)> + '_ {
        self.pieces
            .iter()
            .map(|piece| (piece.piece().to_string(), f64::from(piece.score())))
    }

    pub(crate) fn piece_type(&self, id: usize) -> PieceType {
        self.pieces
            .get(id)
            .map_or(PieceType::Normal, SentencePiece::r#type)
    }

    /// The normalizer's precompiled character map, if it has one.
    pub(crate) fn precompiled_charsmap(&self) -> Option<&[u8]> {
        self.normalizer
            .precompiled_charsmap
            .as_deref()
            .filter(|map| !map.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(text: &str, score: f32, kind: PieceType) -> SentencePiece {
        SentencePiece {
            piece: Some(text.into()),
            score: Some(score),
            r#type: Some(kind as i32),
        }
    }

    fn model() -> ModelProto {
        ModelProto {
            pieces: vec![
                piece("<unk>", 0.0, PieceType::Unknown),
                piece("▁a", -1.0, PieceType::Normal),
            ],
            trainer_spec: Some(TrainerSpec::default()),
            normalizer_spec: Some(NormalizerSpec::default()),
            denormalizer_spec: None,
        }
    }

    #[test]
    fn round_trip_and_defaults() {
        let bytes = model().encode_to_vec();
        let decoded = SpmModel::decode(&bytes).unwrap();
        assert_eq!(decoded.pieces.len(), 2);
        assert_eq!(decoded.model_type(), ModelType::Unigram);
        assert!(decoded.normalizer.add_dummy_prefix());
        assert_eq!(decoded.trainer.unk_piece(), "<unk>");
        assert_eq!(decoded.piece_type(0), PieceType::Unknown);
    }

    #[test]
    fn truncated_and_foreign_bytes_are_errors() {
        let bytes = model().encode_to_vec();
        for cut in [1, bytes.len() / 2, bytes.len() - 1] {
            assert!(SpmModel::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(SpmModel::decode(b"{\"model\": {\"type\": \"Unigram\"}}").is_err());
        assert!(SpmModel::decode(b"").is_err());
    }
}
