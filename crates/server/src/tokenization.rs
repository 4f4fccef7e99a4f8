//! The tokenization workers (TEI's `--tokenization-workers`): a fixed set of threads that
//! tokenize and decode for the HTTP side, so that neither the async runtime nor the model
//! thread does it.
//!
//! A fixed set, not tokio's blocking pool. That pool starts a new thread for every task that
//! finds no idle one (up to 512) and lets it go after 10 s idle. Our clients arrive in bursts
//! (a batch answers every client in it at once, and they all send their next request at once):
//! at concurrency 128, each burst started about 120 threads. glibc gives a new thread a malloc
//! arena of its own while fewer than 8 per core exist, and an arena keeps the memory its
//! threads freed. Measured (malloc_stats after one `cargo xtask loadtest` run on 2 cores): with
//! the blocking pool, 135 threads at peak and all 16 arenas in use, holding 34 MB for 14 MB
//! allocated, and the RSS still growing after the warm-up; with this fixed set, 9 threads, 9
//! arenas, 27 MB held for 14 MB, and a lower peak RSS. The same few threads allocate in the same
//! arenas for the life of the server.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, mpsc};

use tokio::sync::oneshot;

use crate::error::ApiError;
use crate::metrics::Metrics;

type Task = Box<dyn FnOnce() + Send>;

/// The tokenization threads; they end when this is dropped.
pub(crate) struct Tokenization {
    tasks: mpsc::Sender<Task>,
    metrics: Arc<Metrics>,
}

impl Tokenization {
    /// Starts `workers` threads (at least one).
    ///
    /// # Errors
    /// When the operating system refuses a thread.
    pub fn start(workers: usize, metrics: Arc<Metrics>) -> std::io::Result<Self> {
        let (tasks, receiver) = mpsc::channel::<Task>();
        let receiver = Arc::new(Mutex::new(receiver));
        for index in 0..workers.max(1) {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("oxformer-tokenize-{index}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while waiting for a task, never while running one
                        // (tasks catch their own panics), so it is never poisoned.
                        let task = receiver
                            .lock()
                            .unwrap_or_else(|poisoned| poisoned.into_inner())
                            .recv();
                        match task {
                            Ok(task) => task(),
                            Err(_) => return,
                        }
                    }
                })?;
        }
        Ok(Self { tasks, metrics })
    }

    /// Runs `work` on a tokenization thread and waits for it. A panic in it is a counted 500.
    /// Work whose client went away before a thread took it is dropped unrun.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let (reply, answer) = oneshot::channel();
        let metrics = self.metrics.clone();
        let task: Task = Box::new(move || {
            if reply.is_closed() {
                return;
            }
            let result = match catch_unwind(AssertUnwindSafe(work)) {
                Ok(result) => result,
                Err(_) => {
                    metrics.panic();
                    Err(ApiError::backend("tokenization panicked"))
                }
            };
            let _ = reply.send(result);
        });
        self.tasks
            .send(task)
            .map_err(|_| ApiError::unhealthy("the tokenization threads have stopped"))?;
        answer
            .await
            .map_err(|_| ApiError::backend("a tokenization thread dropped the request"))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_on_the_workers_and_a_panic_is_a_counted_500() {
        let metrics = Arc::new(Metrics::default());
        let pool = Tokenization::start(2, metrics.clone()).unwrap();
        let name = pool
            .run(|| Ok(std::thread::current().name().map(str::to_string)))
            .await
            .unwrap();
        assert!(name.unwrap().starts_with("oxformer-tokenize-"));
        let error = pool
            .run(|| -> Result<(), ApiError> { panic!("boom") })
            .await
            .unwrap_err();
        assert_eq!(error.status, axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(metrics.panics(), 1);
        // The worker that caught the panic still serves.
        for value in 0..4 {
            assert_eq!(pool.run(move || Ok(value)).await.unwrap(), value);
        }
    }
}
