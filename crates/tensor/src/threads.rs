//! Thread pools: kernels run on the rayon pool they are called from.

use crate::{Error, Result};

/// A pool of worker threads for kernels; [`ThreadPool::install`] runs a closure (a forward pass,
/// one kernel call) with every kernel inside it using this pool's threads.
#[derive(Debug)]
pub struct ThreadPool {
    pool: rayon::ThreadPool,
}

impl ThreadPool {
    /// A pool of `num_threads` threads (0 means rayon's default: one per logical CPU).
    ///
    /// # Errors
    /// [`Error::ThreadPool`] when the operating system refuses the threads.
    pub fn new(num_threads: usize) -> Result<Self> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(num_threads)
            .thread_name(|index| format!("oxformer-{index}"))
            .build()
            .map_err(|error| Error::ThreadPool {
                threads: num_threads,
                reason: error.to_string(),
            })?;
        Ok(Self { pool })
    }

    /// The number of threads.
    pub fn num_threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Runs `work` inside the pool.
    pub fn install<R: Send>(&self, work: impl FnOnce() -> R + Send) -> R {
        self.pool.install(work)
    }
}
