//! [`Weights`]: prefix-scoped lookup of a checkpoint's tensors by HF's exact names.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::Path;
use std::sync::Arc;

use crate::checkpoint::SafeTensors;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Alias chains longer than this are taken to be cycles.
const MAX_ALIAS_HOPS: usize = 8;

/// A view of a checkpoint under a dotted prefix, so that each block of a model looks up its
/// tensors by the names HF gives them relative to that block.
///
/// ```no_run
/// # fn main() -> oxformer_nn::Result<()> {
/// use oxformer_nn::Weights;
/// let weights = Weights::from_folder(std::path::Path::new("all-MiniLM-L6-v2"))?;
/// // HF `BertForX` checkpoints store `bert.encoder...`, a bare `BertModel` stores `encoder...`.
/// let bert = weights.sub_if_present("bert");
/// let query = bert.sub("encoder").sub("layer").sub(3).sub("attention").sub("self").sub("query");
/// let weight = query.get("weight", &[384, 384])?; // encoder.layer.3.attention.self.query.weight
/// # Ok(()) }
/// ```
///
/// Cloning is cheap: the checkpoint and the alias table are shared.
#[derive(Clone)]
pub struct Weights {
    tensors: Arc<SafeTensors>,
    prefix: String,
    /// Full name → full name it stands for (tied weights).
    aliases: Arc<BTreeMap<String, String>>,
}

impl Weights {
    /// Weights at the root of a checkpoint (empty prefix).
    pub fn new(tensors: SafeTensors) -> Self {
        Self {
            tensors: Arc::new(tensors),
            prefix: String::new(),
            aliases: Arc::default(),
        }
    }

    /// Opens the weights of a model folder (see [`SafeTensors::open_folder`]).
    ///
    /// # Errors
    /// Every error of [`SafeTensors::open_folder`].
    pub fn from_folder(dir: &Path) -> Result<Self> {
        SafeTensors::open_folder(dir).map(Self::new)
    }

    /// Opens one safetensors file (see [`SafeTensors::open_file`]).
    ///
    /// # Errors
    /// Every error of [`SafeTensors::open_file`].
    pub fn from_file(path: &Path) -> Result<Self> {
        SafeTensors::open_file(path).map(Self::new)
    }

    /// The underlying checkpoint.
    pub fn checkpoint(&self) -> &SafeTensors {
        &self.tensors
    }

    /// Weights one level down: `weights.sub("encoder").sub("layer").sub(3)` looks up
    /// `encoder.layer.3.*`.
    pub fn sub(&self, name: impl Display) -> Weights {
        Weights {
            tensors: self.tensors.clone(),
            prefix: self.full_name(&name.to_string()),
            aliases: self.aliases.clone(),
        }
    }

    /// `self.sub(name)` if the checkpoint holds any tensor under `name.`, else `self`.
    ///
    /// For the two checkpoint conventions of HF: `BertForX` stores `bert.encoder...`, a bare
    /// `BertModel` stores `encoder...`.
    pub fn sub_if_present(&self, name: impl Display) -> Weights {
        let name = name.to_string();
        if self.has_sub(&name) {
            self.sub(name)
        } else {
            self.clone()
        }
    }

    /// Whether any tensor (or alias) lies under `name.`, relative to the prefix.
    pub fn has_sub(&self, name: &str) -> bool {
        let start = format!("{}.", self.full_name(name));
        self.tensors
            .names()
            .chain(self.aliases.keys().map(String::as_str))
            .any(|stored| stored.starts_with(&start))
    }

    /// The dotted prefix of this view (empty at the root).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The full dotted name of `name` under this prefix.
    pub fn full_name(&self, name: &str) -> String {
        match (self.prefix.is_empty(), name.is_empty()) {
            (true, _) => name.to_string(),
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}.{name}", self.prefix),
        }
    }

    /// Whether a tensor exists (directly or through an alias), relative to the prefix.
    pub fn contains(&self, name: &str) -> bool {
        self.resolve(&self.full_name(name)).is_some()
    }

    /// Shape of a tensor relative to the prefix, if it exists.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.shape(&self.resolve(&self.full_name(name))?)
    }

    /// Makes `name` stand for `target` (both relative to the prefix), for tied weights:
    /// `weights.alias("lm_head.weight", "transformer.wte.weight")`.
    ///
    /// As in HF, where tying replaces the output weights by the input embeddings, the alias
    /// wins even when the checkpoint also stores a tensor called `name`. Aliases are seen by
    /// this view and by views made from it afterwards.
    pub fn alias(&mut self, name: &str, target: &str) {
        let (name, target) = (self.full_name(name), self.full_name(target));
        Arc::make_mut(&mut self.aliases).insert(name, target);
    }

    /// A tensor by name relative to the prefix, checked against `expected_shape`.
    ///
    /// # Errors
    /// [`Error::TensorNotFound`] naming the full dotted path, the file(s) and the closest
    /// names; [`Error::ShapeMismatch`] with expected and found shapes;
    /// [`Error::UnsupportedDtype`] for non-float tensors.
    pub fn get(&self, name: &str, expected_shape: &[usize]) -> Result<Tensor> {
        let full = self.full_name(name);
        let tensor = self.tensor_by_full_name(&full)?;
        if tensor.shape() != expected_shape {
            return Err(Error::ShapeMismatch {
                file: self
                    .tensors
                    .file_of(tensor.name())
                    .map(Path::to_path_buf)
                    .unwrap_or_default(),
                name: full,
                expected: expected_shape.to_vec(),
                found: tensor.shape().to_vec(),
            });
        }
        Ok(tensor)
    }

    /// The first of `names` that exists, checked against `expected_shape`; for renamed
    /// tensors such as old LayerNorm `gamma`/`beta` next to `weight`/`bias`.
    ///
    /// # Errors
    /// [`Error::TensorNotFound`] when none exists (naming all of them); otherwise as
    /// [`Weights::get`] for the one found.
    pub fn get_any(&self, names: &[&str], expected_shape: &[usize]) -> Result<Tensor> {
        match names.iter().find(|name| self.contains(name)) {
            Some(name) => self.get(name, expected_shape),
            None => {
                let full: Vec<String> = names.iter().map(|name| self.full_name(name)).collect();
                let mut suggestions = Vec::new();
                for name in &full {
                    for suggestion in crate::checkpoint::closest_names(name, self.tensors.names()) {
                        if !suggestions.contains(&suggestion) {
                            suggestions.push(suggestion);
                        }
                    }
                }
                suggestions.truncate(3);
                Err(Error::TensorNotFound {
                    name: full.join("` or `"),
                    files: self.tensors.source().to_string(),
                    suggestions,
                })
            }
        }
    }

    /// A tensor by name relative to the prefix, whatever its shape.
    ///
    /// # Errors
    /// As [`Weights::get`], without the shape check.
    pub fn get_unchecked_shape(&self, name: &str) -> Result<Tensor> {
        self.tensor_by_full_name(&self.full_name(name))
    }

    fn tensor_by_full_name(&self, full: &str) -> Result<Tensor> {
        match self.resolve(full) {
            Some(real) => self.tensors.tensor(&real),
            None => Err(self.tensors.not_found(full)),
        }
    }

    /// The stored name a full name refers to, following aliases.
    fn resolve(&self, full: &str) -> Option<String> {
        let mut name = full;
        for _ in 0..MAX_ALIAS_HOPS {
            match self.aliases.get(name) {
                Some(target) => name = target,
                None => break,
            }
        }
        self.tensors.contains(name).then(|| name.to_string())
    }
}

impl std::fmt::Debug for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Weights")
            .field("checkpoint", &self.tensors)
            .field("prefix", &self.prefix)
            .field("aliases", &self.aliases)
            .finish_non_exhaustive()
    }
}
