//! [`SafeTensors`]: one safetensors file or a sharded set, memory-mapped and indexed by name.
//!
//! The header of every file is validated here, before any tensor is read, so that a bad file
//! fails with a message naming the file, the tensor and the numbers involved; the `safetensors`
//! crate's own parser then checks the file again, so we never accept what it rejects.
//! Format: <https://github.com/huggingface/safetensors#format>.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ::safetensors::Dtype;
use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};
use memmap2::Mmap;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Single-file checkpoint name, as written by `save_pretrained`.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// Index of a sharded checkpoint, as written by `save_pretrained`.
pub const WEIGHTS_INDEX_FILE: &str = "model.safetensors.index.json";
/// PyTorch pickle checkpoints, which are recognised only to explain how to convert them.
const PICKLE_FILES: [&str; 2] = ["pytorch_model.bin", "pytorch_model.bin.index.json"];
/// The `safetensors` crate refuses headers above 100 MB; so do we, with a clearer message.
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// One memory-mapped checkpoint file.
struct MappedFile {
    path: PathBuf,
    map: Arc<Mmap>,
}

/// Where one tensor lives.
#[derive(Debug, Clone)]
struct Entry {
    file: usize,
    dtype: Dtype,
    shape: Vec<usize>,
    /// Absolute byte range inside the file (header included).
    start: usize,
    end: usize,
}

/// The tensors of a checkpoint: one `model.safetensors` file or the shards listed by
/// `model.safetensors.index.json`, memory-mapped, with a name → (file, dtype, shape, bytes) index.
///
/// Opening validates every header; reading a tensor ([`SafeTensors::tensor`]) then cannot fail
/// for format reasons, only for a missing name or an unsupported dtype.
///
/// The files are mapped read-only; as with every memory-mapped loader, they must not be
/// modified by another process while the checkpoint is open.
pub struct SafeTensors {
    files: Vec<MappedFile>,
    entries: BTreeMap<String, Entry>,
    /// How the source is named in messages: the file, or the shard index.
    source: String,
}

impl SafeTensors {
    /// Opens and validates one `.safetensors` file.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be opened or mapped; [`Error::InvalidFile`] when the
    /// header length reaches beyond the file, the header is not JSON, or the data section is
    /// truncated or has trailing bytes; [`Error::InvalidTensorEntry`] for an unknown dtype,
    /// offsets that are out of bounds, overlapping, leave a gap, or do not match shape × dtype
    /// size.
    pub fn open_file(path: &Path) -> Result<Self> {
        let file = map_file(path)?;
        let mut entries = BTreeMap::new();
        for (name, mut entry) in parse_header(&file.path, &file.map)? {
            entry.file = 0;
            entries.insert(name, entry);
        }
        Ok(Self {
            source: path.display().to_string(),
            files: vec![file],
            entries,
        })
    }

    /// Opens the weights of a model folder: `model.safetensors`, or the shards listed in
    /// `model.safetensors.index.json`.
    ///
    /// # Errors
    /// [`Error::PickleOnly`] when the folder holds only `pytorch_model.bin` (explains how to
    /// convert); [`Error::NoWeights`] when it holds neither; [`Error::InvalidShardIndex`] when
    /// the index is malformed, names a file outside the folder, lists a tensor its shard does
    /// not hold, or two shards hold the same tensor; every error of [`SafeTensors::open_file`]
    /// for each shard.
    pub fn open_folder(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::Io {
                path: dir.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such folder"),
            });
        }
        let single = dir.join(WEIGHTS_FILE);
        if single.is_file() {
            return Self::open_file(&single);
        }
        let index = dir.join(WEIGHTS_INDEX_FILE);
        if index.is_file() {
            return Self::open_sharded(&index);
        }
        for pickle in PICKLE_FILES {
            let file = dir.join(pickle);
            if file.is_file() {
                return Err(Error::PickleOnly { file });
            }
        }
        Err(Error::NoWeights {
            dir: dir.to_path_buf(),
        })
    }

    /// Opens a sharded checkpoint from its `model.safetensors.index.json`.
    ///
    /// # Errors
    /// As [`SafeTensors::open_folder`].
    pub fn open_sharded(index_path: &Path) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidShardIndex {
            path: index_path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(index_path).map_err(|source| Error::Io {
            path: index_path.to_path_buf(),
            source,
        })?;
        let index: Value =
            serde_json::from_str(&text).map_err(|error| invalid(format!("not JSON: {error}")))?;
        let Some(weight_map) = index.get("weight_map").and_then(Value::as_object) else {
            return Err(invalid("no `weight_map` object".to_string()));
        };
        let dir = index_path.parent().unwrap_or(Path::new("."));

        // shard file name → position in `files`, in first-seen order.
        let mut shard_of_name: BTreeMap<&str, &str> = BTreeMap::new();
        let mut shard_names: Vec<&str> = Vec::new();
        for (tensor, shard) in weight_map {
            let Some(shard) = shard.as_str() else {
                return Err(invalid(format!(
                    "`weight_map` entry `{tensor}` is {shard}, expected a file name"
                )));
            };
            let plain_name = Path::new(shard)
                .components()
                .all(|part| matches!(part, std::path::Component::Normal(_)));
            if !plain_name {
                return Err(invalid(format!(
                    "`weight_map` entry `{tensor}` names `{shard}`, which is not a file inside the folder"
                )));
            }
            if !shard_names.contains(&shard) {
                shard_names.push(shard);
            }
            shard_of_name.insert(tensor, shard);
        }
        if shard_names.is_empty() {
            return Err(invalid("`weight_map` is empty".to_string()));
        }

        let mut files = Vec::with_capacity(shard_names.len());
        let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
        for (file_index, shard) in shard_names.iter().enumerate() {
            let file = map_file(&dir.join(shard))?;
            for (name, mut entry) in parse_header(&file.path, &file.map)? {
                entry.file = file_index;
                if let Some(previous) = entries.get(&name) {
                    return Err(invalid(format!(
                        "tensor `{name}` is stored in both {} and {shard}",
                        shard_names[previous.file]
                    )));
                }
                entries.insert(name, entry);
            }
            files.push(file);
        }
        for (tensor, shard) in &shard_of_name {
            let holder = entries.get(*tensor).map(|entry| shard_names[entry.file]);
            if holder != Some(*shard) {
                return Err(invalid(format!(
                    "`weight_map` puts `{tensor}` in {shard}, but {}",
                    match holder {
                        Some(other) => format!("it is stored in {other}"),
                        None => "no shard named by the index holds it".to_string(),
                    }
                )));
            }
        }
        Ok(Self {
            source: format!("{} ({} shards)", index_path.display(), files.len()),
            files,
            entries,
        })
    }

    /// Names of all tensors, in sorted order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the checkpoint holds no tensors.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether a tensor with this full name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// Shape of a tensor, if it exists.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.entries.get(name).map(|entry| entry.shape.as_slice())
    }

    /// Stored dtype of a tensor, if it exists.
    pub fn dtype(&self, name: &str) -> Option<Dtype> {
        self.entries.get(name).map(|entry| entry.dtype)
    }

    /// The file holding a tensor, if it exists.
    pub fn file_of(&self, name: &str) -> Option<&Path> {
        self.entries
            .get(name)
            .map(|entry| self.files[entry.file].path.as_path())
    }

    /// How this checkpoint is named in messages: its file, or its shard index.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Reads a tensor as f32: in place when it is stored as aligned f32, converted from
    /// f16, bf16 or f64 otherwise.
    ///
    /// # Errors
    /// [`Error::TensorNotFound`] (with the closest names) when no tensor has this name;
    /// [`Error::UnsupportedDtype`] for integer, bool and 8-bit float tensors.
    pub fn tensor(&self, name: &str) -> Result<Tensor> {
        let entry = self.entries.get(name).ok_or_else(|| self.not_found(name))?;
        let file = &self.files[entry.file];
        let bytes = &file.map[entry.start..entry.end];
        let count = entry.shape.iter().product::<usize>();
        let shape = entry.shape.clone();
        let values: Vec<f32> = match entry.dtype {
            Dtype::F32 => {
                if let Some(tensor) =
                    Tensor::mapped(name, shape.clone(), file.map.clone(), entry.start, count)
                {
                    return Ok(tensor);
                }
                bytes
                    .chunks_exact(4)
                    .map(|chunk| f32::from_le_bytes(chunk.try_into().expect("4-byte chunk")))
                    .collect()
            }
            Dtype::F16 => convert_half::<f16>(bytes, count),
            Dtype::BF16 => convert_half::<bf16>(bytes, count),
            Dtype::F64 => bytes
                .chunks_exact(8)
                .map(|chunk| f64::from_le_bytes(chunk.try_into().expect("8-byte chunk")) as f32)
                .collect(),
            other => {
                return Err(Error::UnsupportedDtype {
                    name: name.to_string(),
                    file: file.path.clone(),
                    dtype: format!("{other:?}"),
                });
            }
        };
        Tensor::from_vec(name, shape, values)
    }

    /// The error for a missing tensor, with the closest names in this checkpoint.
    pub(crate) fn not_found(&self, name: &str) -> Error {
        Error::TensorNotFound {
            name: name.to_string(),
            files: self.source.clone(),
            suggestions: closest_names(name, self.names()),
        }
    }
}

impl std::fmt::Debug for SafeTensors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafeTensors")
            .field("source", &self.source)
            .field("tensors", &self.entries.len())
            .finish()
    }
}

/// f16 and bf16: 16-bit floats that are `repr(transparent)` over `u16`.
trait HalfFloat: Copy {
    fn from_bits(bits: u16) -> Self;
    fn to_f32(self) -> f32;
}

impl HalfFloat for f16 {
    fn from_bits(bits: u16) -> Self {
        f16::from_bits(bits)
    }
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
}

impl HalfFloat for bf16 {
    fn from_bits(bits: u16) -> Self {
        bf16::from_bits(bits)
    }
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
}

/// Converts little-endian 16-bit floats to f32: through `half`'s SIMD slice conversion when
/// the bytes are aligned, value by value otherwise.
fn convert_half<H: HalfFloat>(bytes: &[u8], count: usize) -> Vec<f32>
where
    [H]: HalfFloatSliceExt,
{
    let mut out = vec![0.0f32; count];
    // SAFETY: `H` is `f16` or `bf16`, both `repr(transparent)` over `u16`, for which every bit
    // pattern is valid; `align_to` only yields the correctly aligned middle part.
    let (head, halves, tail) = unsafe { bytes.align_to::<H>() };
    let aligned = head.is_empty() && tail.is_empty() && halves.len() == count;
    if cfg!(target_endian = "little") && aligned {
        halves.convert_to_f32_slice(&mut out);
    } else {
        for (value, chunk) in out.iter_mut().zip(bytes.chunks_exact(2)) {
            *value = H::from_bits(u16::from_le_bytes([chunk[0], chunk[1]])).to_f32();
        }
    }
    out
}

/// Opens and maps a file, refusing ones too short to hold the 8-byte header length.
fn map_file(path: &Path) -> Result<MappedFile> {
    let io_error = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io_error)?;
    let length = file.metadata().map_err(io_error)?.len();
    if length < 8 {
        return Err(Error::InvalidFile {
            path: path.to_path_buf(),
            reason: format!("the file is {length} bytes, too short for the 8-byte header length"),
        });
    }
    // SAFETY: the map is read-only; checkpoint files are not modified while they are open
    // (documented on `SafeTensors`).
    let map = unsafe { Mmap::map(&file) }.map_err(io_error)?;
    Ok(MappedFile {
        path: path.to_path_buf(),
        map: Arc::new(map),
    })
}

/// Parses and validates the header of a mapped safetensors file.
///
/// Returns each tensor with absolute byte offsets; `Entry::file` is left 0 for the caller.
fn parse_header(path: &Path, bytes: &[u8]) -> Result<Vec<(String, Entry)>> {
    let invalid_file = |reason: String| Error::InvalidFile {
        path: path.to_path_buf(),
        reason,
    };
    let invalid_entry = |tensor: &str, reason: String| Error::InvalidTensorEntry {
        path: path.to_path_buf(),
        tensor: tensor.to_string(),
        reason,
    };

    let header_length = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes checked"));
    let available = bytes.len() as u64 - 8;
    if header_length > available {
        return Err(invalid_file(format!(
            "the header length {header_length} reaches beyond the end of the file \
             ({available} bytes follow the length)"
        )));
    }
    if header_length > MAX_HEADER_BYTES {
        return Err(invalid_file(format!(
            "the header length {header_length} exceeds the 100 MB limit"
        )));
    }
    let data_start = 8 + header_length as usize;
    let data_length = bytes.len() - data_start;
    let header = std::str::from_utf8(&bytes[8..data_start])
        .map_err(|error| invalid_file(format!("the header is not UTF-8: {error}")))?;
    let header: Value = serde_json::from_str(header)
        .map_err(|error| invalid_file(format!("the header is not JSON: {error}")))?;
    let Value::Object(header) = header else {
        return Err(invalid_file(
            "the header is JSON but not an object".to_string(),
        ));
    };

    let mut entries = Vec::with_capacity(header.len());
    for (name, value) in &header {
        if name == "__metadata__" {
            let all_strings = value
                .as_object()
                .is_some_and(|map| map.values().all(Value::is_string));
            if !all_strings {
                return Err(invalid_file(
                    "`__metadata__` must map strings to strings".to_string(),
                ));
            }
            continue;
        }
        let dtype_name = value
            .get("dtype")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid_entry(name, "no `dtype` string".to_string()))?;
        let dtype: Dtype = serde_json::from_value(Value::String(dtype_name.to_string()))
            .map_err(|_| invalid_entry(name, format!("unknown dtype `{dtype_name}`")))?;
        let shape: Vec<usize> = value
            .get("shape")
            .and_then(|shape| serde_json::from_value(shape.clone()).ok())
            .ok_or_else(|| {
                invalid_entry(
                    name,
                    "`shape` is not a list of non-negative integers".to_string(),
                )
            })?;
        let (begin, end): (usize, usize) = value
            .get("data_offsets")
            .and_then(|offsets| serde_json::from_value(offsets.clone()).ok())
            .ok_or_else(|| {
                invalid_entry(
                    name,
                    "`data_offsets` is not a pair of non-negative integers".to_string(),
                )
            })?;
        if begin > end {
            return Err(invalid_entry(
                name,
                format!("data_offsets [{begin}, {end}] end before they begin"),
            ));
        }
        let needed = shape
            .iter()
            .try_fold(1usize, |product, &dim| product.checked_mul(dim))
            .and_then(|count| count.checked_mul(dtype.bitsize()))
            .filter(|bits| bits % 8 == 0)
            .map(|bits| bits / 8)
            .ok_or_else(|| {
                invalid_entry(
                    name,
                    format!("shape {shape:?} of {dtype:?} is not a whole number of bytes"),
                )
            })?;
        if end - begin != needed {
            return Err(invalid_entry(
                name,
                format!(
                    "data_offsets [{begin}, {end}] hold {} bytes, but shape {shape:?} of {dtype:?} needs {needed}",
                    end - begin
                ),
            ));
        }
        entries.push((
            name.clone(),
            Entry {
                file: 0,
                dtype,
                shape,
                start: begin,
                end,
            },
        ));
    }

    // The data section must be covered exactly: tensors back to back, no overlap, no gap.
    entries.sort_by_key(|(_, entry)| (entry.start, entry.end));
    let mut covered = 0usize;
    let mut previous: Option<&str> = None;
    for (name, entry) in &entries {
        if entry.start < covered {
            return Err(invalid_entry(
                name,
                format!(
                    "data_offsets [{}, {}] overlap tensor `{}`, which ends at {covered}",
                    entry.start,
                    entry.end,
                    previous.unwrap_or_default()
                ),
            ));
        }
        if entry.start > covered {
            return Err(invalid_entry(
                name,
                format!(
                    "data_offsets [{}, {}] leave bytes {covered}..{} of the data section unused",
                    entry.start, entry.end, entry.start
                ),
            ));
        }
        covered = entry.end;
        previous = Some(name);
    }
    if covered > data_length {
        let first_outside = entries
            .iter()
            .find(|(_, entry)| entry.end > data_length)
            .map(|(name, _)| name.as_str())
            .unwrap_or_default();
        return Err(invalid_file(format!(
            "truncated: the tensors need {covered} data bytes after the header but the file holds \
             {data_length}; tensor `{first_outside}` reaches beyond the end"
        )));
    }
    if covered < data_length {
        return Err(invalid_file(format!(
            "{} trailing bytes after the last tensor (the tensors cover {covered} of {data_length} data bytes)",
            data_length - covered
        )));
    }

    // Never accept what the reference parser rejects.
    ::safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|error| invalid_file(format!("rejected by the safetensors parser: {error}")))?;

    for (_, entry) in &mut entries {
        entry.start += data_start;
        entry.end += data_start;
    }
    Ok(entries)
}

/// Up to three names that look most like `wanted`: first those that differ from it only by
/// a leading prefix (`bert.encoder...` for `encoder...`, or the reverse), then the nearest by
/// edit distance.
pub(crate) fn closest_names<'a>(wanted: &str, names: impl Iterator<Item = &'a str>) -> Vec<String> {
    const MAX: usize = 3;
    let mut scored: Vec<(usize, &str)> = names
        .map(|name| {
            let prefix_only =
                name.ends_with(&format!(".{wanted}")) || wanted.ends_with(&format!(".{name}"));
            let score = if prefix_only {
                0
            } else {
                1 + edit_distance(wanted, name)
            };
            (score, name)
        })
        .collect();
    scored.sort();
    // Names further away than half the wanted name are noise, not suggestions.
    let limit = 1 + wanted.len() / 2;
    scored
        .into_iter()
        .filter(|&(score, _)| score <= limit)
        .take(MAX)
        .map(|(_, name)| name.to_string())
        .collect()
}

/// Levenshtein distance over bytes.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, &byte_a) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &byte_b) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(byte_a != byte_b);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_insertions_deletions_substitutions() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(
            edit_distance("gamma", "beta"),
            edit_distance("beta", "gamma")
        );
    }

    #[test]
    fn closest_names_prefers_prefix_differences() {
        let names = [
            "bert.encoder.layer.0.output.dense.weight",
            "pooler.dense.weight",
            "zzz",
        ];
        let found = closest_names("encoder.layer.0.output.dense.weight", names.into_iter());
        assert_eq!(found[0], "bert.encoder.layer.0.output.dense.weight");
        assert!(!found.contains(&"zzz".to_string()));
    }
}
