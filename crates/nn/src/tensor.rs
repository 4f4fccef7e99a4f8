//! [`Tensor`]: f32 weights, borrowed from a memory-mapped checkpoint or owned.

use std::fmt;
use std::sync::Arc;

use memmap2::Mmap;
use ndarray::{ArrayView1, ArrayView2, ArrayViewD, IxDyn};

use crate::error::{Error, Result};

/// Where the f32 values of a [`Tensor`] live.
#[derive(Clone)]
enum Storage {
    /// In place in a memory-mapped file: `len` f32 values starting at byte `offset`.
    /// Built only when `offset` is 4-byte aligned (checked in [`Tensor::mapped`]).
    Mapped {
        map: Arc<Mmap>,
        offset: usize,
        len: usize,
    },
    /// Converted or copied values.
    Owned(Arc<[f32]>),
}

/// A dense, row-major f32 tensor holding model weights.
///
/// f32 checkpoint data is used in place (zero-copy) when it is 4-byte aligned in the file;
/// f16, bf16 and f64 data, and unaligned f32 data, are converted into an owned buffer.
/// Cloning is cheap: the data is shared through an `Arc`.
#[derive(Clone)]
pub struct Tensor {
    name: Arc<str>,
    shape: Vec<usize>,
    storage: Storage,
}

impl Tensor {
    /// A tensor over `len` f32 values at byte `offset` of `map`, if that is 4-byte aligned.
    ///
    /// Returns `None` when the data is not aligned or out of range (the caller then copies).
    pub(crate) fn mapped(
        name: &str,
        shape: Vec<usize>,
        map: Arc<Mmap>,
        offset: usize,
        len: usize,
    ) -> Option<Self> {
        let end = offset.checked_add(len.checked_mul(4)?)?;
        if end > map.len() || !(map.as_ptr() as usize + offset).is_multiple_of(align_of::<f32>()) {
            return None;
        }
        // Values are read as native f32; safetensors stores little endian.
        if cfg!(target_endian = "big") {
            return None;
        }
        Some(Self {
            name: name.into(),
            shape,
            storage: Storage::Mapped { map, offset, len },
        })
    }

    /// A tensor owning `data`, laid out row-major in `shape`.
    ///
    /// # Errors
    /// [`Error::Layer`] when `data.len()` is not the product of `shape`.
    pub fn from_vec(name: &str, shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        let count: usize = shape.iter().product();
        if count != data.len() {
            return Err(Error::Layer {
                layer: name.to_string(),
                reason: format!(
                    "shape {shape:?} holds {count} values but {} were given",
                    data.len()
                ),
            });
        }
        Ok(Self {
            name: name.into(),
            shape,
            storage: Storage::Owned(data.into()),
        })
    }

    /// The full dotted name this tensor was loaded under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The shape, outermost dimension first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// Whether the tensor holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the values are read in place from the memory-mapped file (zero-copy).
    pub fn is_mapped(&self) -> bool {
        matches!(self.storage, Storage::Mapped { .. })
    }

    /// Tells the operating system that the mapped pages of this tensor are not needed now, so
    /// they leave the process's resident memory (for weights that were packed into another
    /// layout at load). The values stay readable: a later read brings the pages back from the
    /// file. Does nothing for owned tensors or where the system lacks `madvise`.
    pub fn release_mapped_pages(&self) {
        #[cfg(unix)]
        if let Storage::Mapped { map, offset, len } = &self.storage {
            // SAFETY: the map is read-only and private, so it holds no changes that discarding
            // its pages could lose; a later access re-reads the same bytes from the file (which,
            // as for every memory-mapped checkpoint, must not change while it is open). The
            // range lies inside the map (checked in `Tensor::mapped`). Failure is harmless.
            let _ = unsafe {
                map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, *offset, len * 4)
            };
        }
    }

    /// The values, row-major.
    pub fn as_slice(&self) -> &[f32] {
        match &self.storage {
            Storage::Mapped { map, offset, len } => {
                // SAFETY: `Tensor::mapped` checked that `offset .. offset + 4 * len` lies inside
                // the map and that its start is aligned for f32; every bit pattern is a valid
                // f32; the map is kept alive by the `Arc` we borrow from and is never written.
                unsafe { std::slice::from_raw_parts(map.as_ptr().add(*offset).cast::<f32>(), *len) }
            }
            Storage::Owned(data) => data,
        }
    }

    /// A view with the tensor's own number of dimensions.
    pub fn view(&self) -> ArrayViewD<'_, f32> {
        ArrayViewD::from_shape(IxDyn(&self.shape), self.as_slice())
            .expect("a Tensor's data length always matches its shape")
    }

    /// A view of a 1-d tensor.
    ///
    /// # Errors
    /// [`Error::Rank`] when the tensor does not have exactly one dimension.
    pub fn view1(&self) -> Result<ArrayView1<'_, f32>> {
        match self.shape[..] {
            [n] => Ok(ArrayView1::from_shape(n, self.as_slice())
                .expect("a Tensor's data length always matches its shape")),
            _ => Err(self.rank_error(1)),
        }
    }

    /// A view of a 2-d tensor.
    ///
    /// # Errors
    /// [`Error::Rank`] when the tensor does not have exactly two dimensions.
    pub fn view2(&self) -> Result<ArrayView2<'_, f32>> {
        match self.shape[..] {
            [rows, cols] => Ok(ArrayView2::from_shape((rows, cols), self.as_slice())
                .expect("a Tensor's data length always matches its shape")),
            _ => Err(self.rank_error(2)),
        }
    }

    fn rank_error(&self, expected: usize) -> Error {
        Error::Rank {
            name: self.name.to_string(),
            shape: self.shape.clone(),
            expected,
        }
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tensor")
            .field("name", &self.name)
            .field("shape", &self.shape)
            .field("mapped", &self.is_mapped())
            .finish()
    }
}
