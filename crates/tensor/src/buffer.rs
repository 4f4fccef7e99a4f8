//! Buffers whose values start on a cache line (64 bytes): packed weights, per-thread blocks of A,
//! the models' workspace matrices. A vector load from such a buffer never straddles two lines
//! where the row length is a multiple of 16 floats.

/// Floats in a vector whose first lies on a cache-line boundary (64 bytes), so that no vector
/// load of a packed panel (a row of 32 floats is two lines) straddles two lines.
pub(crate) struct Aligned {
    /// `start` values (≤ 15, zero) before the first, then the values.
    storage: Vec<f32>,
    start: usize,
}

/// Floats per cache line.
pub(crate) const LINE: usize = 16;

/// `len` floats of `buffer` starting on a cache line (64 bytes), the buffer grown first if it is
/// too small (never shrunk, so a buffer kept between calls stops allocating). The values are
/// whatever the buffer held: for output the caller overwrites.
pub fn line_aligned(buffer: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buffer.len() < len + LINE - 1 {
        buffer.resize(len + LINE - 1, 0.0);
    }
    // below LINE: an f32 pointer is 4-byte aligned
    let start = buffer.as_ptr().align_offset(LINE * size_of::<f32>());
    &mut buffer[start..start + len]
}

/// An empty vector with room for `len` values after a few zeros (fewer than a line's 16) that
/// put the next value pushed on a cache line: the values to come start at its `len()`.
pub fn line_padded(len: usize) -> Vec<f32> {
    let mut values = Vec::<f32>::with_capacity(len + LINE - 1);
    // below LINE: an f32 pointer is 4-byte aligned
    let start = values.as_ptr().align_offset(LINE * size_of::<f32>());
    values.resize(start.min(LINE - 1), 0.0);
    values
}

impl Aligned {
    /// `len` values, each written by `fill` (given the whole slice, uninitialised).
    pub(crate) fn new(len: usize, fill: impl FnOnce(&mut [std::mem::MaybeUninit<f32>])) -> Self {
        let mut storage = line_padded(len);
        let start = storage.len();
        populate(&mut storage);
        fill(&mut storage.spare_capacity_mut()[..len]);
        // SAFETY: the first `start` values are the padding, the next `len` written by `fill`.
        unsafe { storage.set_len(start + len) };
        Self { storage, start }
    }

    pub(crate) fn as_slice(&self) -> &[f32] {
        &self.storage[self.start..]
    }
}

impl Clone for Aligned {
    fn clone(&self) -> Self {
        let values = self.as_slice();
        Self::new(values.len(), |target| {
            for (target, &value) in target.iter_mut().zip(values) {
                target.write(value);
            }
        })
    }
}

impl std::fmt::Debug for Aligned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_slice().fmt(f)
    }
}

/// Maps the pages of `data`'s spare capacity in one system call (Linux's
/// `MADV_POPULATE_WRITE`), rather than one page fault per 4 KiB as packing first touches
/// them; only a hint, ignored where unsupported.
fn populate(data: &mut Vec<f32>) {
    #[cfg(target_os = "linux")]
    {
        const MADV_POPULATE_WRITE: i32 = 23;
        unsafe extern "C" {
            fn madvise(address: *mut std::ffi::c_void, length: usize, advice: i32) -> i32;
        }
        const PAGE: usize = 4096;
        let start = data.as_mut_ptr() as usize;
        let end = start + data.capacity() * size_of::<f32>();
        let (first, last) = (start.div_ceil(PAGE) * PAGE, end / PAGE * PAGE);
        if last > first {
            // SAFETY: the range lies inside the vector's own allocation; populating pages
            // changes no values (an error, e.g. an older kernel, leaves it as it was).
            unsafe {
                madvise(
                    first as *mut std::ffi::c_void,
                    last - first,
                    MADV_POPULATE_WRITE,
                )
            };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = data;
}
