//! Panics of the tokenizers library that we catch and turn into errors, kept off stderr.
//!
//! Rust prints a panic's message from the process's panic hook before unwinding starts, so a
//! panic caught with `catch_unwind` still writes "thread ... panicked at ..." to stderr. A panic
//! inside [`catch_quietly`] skips that message on the thread that called it; every other panic
//! goes to the hook that was installed before (the default one, or the application's).

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

thread_local! {
    /// How many [`catch_quietly`] calls are running on this thread.
    static QUIET: Cell<u32> = const { Cell::new(0) };
}

static INSTALL: Once = Once::new();

/// Runs `work`, catching a panic in it as `Err(payload)` without the panic message on stderr.
///
/// The first call wraps the panic hook installed at that time (once per process). A panic on a
/// thread that `work` hands work to (a rayon worker, say) is still reported by that hook: only
/// the calling thread is quiet.
pub(crate) fn catch_quietly<R>(work: impl FnOnce() -> R) -> std::thread::Result<R> {
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET.with(Cell::get) == 0 {
                previous(info);
            }
        }));
    });
    QUIET.with(|quiet| quiet.set(quiet.get() + 1));
    let result = catch_unwind(AssertUnwindSafe(work));
    QUIET.with(|quiet| quiet.set(quiet.get() - 1));
    result
}
