//! Thread pools: kernels run on the rayon pool they are called from, or on a [`team`] of its
//! threads.

use std::any::Any;
use std::cell::RefCell;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use self::sync::ThreadId;
use self::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize};
use crate::{Error, Result};

/// What the claim protocol ([`Shared`]) synchronises with: std's atomics, mutex and threads, or,
/// in the crate's own tests under `--cfg loom`, loom's, whose model checker then explores every
/// interleaving of them (`threads/loom_model.rs`).
mod sync {
    #[cfg(not(all(loom, test)))]
    pub(super) use std::{
        hint::spin_loop,
        sync::{Mutex, atomic},
        thread::{ThreadId, current},
    };

    /// Gives way: on a rayon thread, to one job waiting in its pool if there is one (a team's
    /// leader outside the pool may be blocked on a rayon call of its own, which only the pool's
    /// threads, spinning as helpers, can run), else to the operating system.
    #[cfg(not(all(loom, test)))]
    pub(super) fn yield_now() {
        if rayon::yield_now() != Some(rayon::Yield::Executed) {
            std::thread::yield_now();
        }
    }

    #[cfg(all(loom, test))]
    pub(super) use loom::{
        hint::spin_loop,
        sync::{Mutex, atomic},
        thread::{ThreadId, current, yield_now},
    };
}

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

/// Runs `work` on this thread with the rest of its rayon pool kept awake beside it: until `work`
/// returns, the pool's other threads spin, waiting for the parts of this thread's kernels, instead
/// of falling asleep between them. For a run of small kernels (one decoding step makes ~50
/// matrix-vector products, each a fraction of a millisecond), where a rayon worker goes to sleep
/// after each region and waking it costs about as much as its share of the next one.
///
/// Kernels called from `work` on this thread (matrix products, attention, the argmax screen)
/// split their parts over the team; anything else runs on rayon as usual (on this thread alone if
/// it cannot take the pool's other threads). Results are the same as without a team: it changes
/// only who computes which part. Called outside any pool, the team is drawn from rayon's global
/// pool (as kernels would be); with one thread, or inside another team, `work` simply runs.
pub fn team<R>(work: impl FnOnce() -> R) -> R {
    let helpers = rayon::current_num_threads().saturating_sub(1);
    if helpers == 0 || TEAM.with(|team| team.borrow().is_some()) {
        return work();
    }
    let shared = Arc::new(Shared::new());
    for _ in 0..helpers {
        let shared = Arc::clone(&shared);
        rayon::spawn(move || shared.help());
    }
    let _guard = TeamGuard::enter(Arc::clone(&shared));
    work()
}

/// Runs `task(part)` once for every part in `0..parts`: over the team when this thread leads one
/// ([`team`]), else over the rayon pool it is called from. Parts may run in any order, on any
/// thread; a part that calls this again has its own parts run on rayon.
///
/// What the kernels split their work with, public so that work between kernels (a decoding step's
/// per-row log-softmax and top-k, say) can use the same awake threads. A task whose parts each
/// compute and write their own results (nothing reduced across parts) gives the same results for
/// any thread count. A panic in a part is raised again here, once every part is done.
///
/// ```
/// use std::sync::Mutex;
/// use oxformer_tensor::{ThreadPool, for_each_part, team};
///
/// let rows: Vec<Mutex<Vec<f32>>> = (0..8).map(|row| Mutex::new(vec![row as f32; 4])).collect();
/// ThreadPool::new(2).unwrap().install(|| {
///     team(|| for_each_part(rows.len(), |row| rows[row].lock().unwrap().iter_mut().for_each(|x| *x *= 2.0)))
/// });
/// assert_eq!(*rows[3].lock().unwrap(), vec![6.0; 4]);
/// ```
pub fn for_each_part(parts: usize, task: impl Fn(usize) + Sync) {
    if parts <= 1 {
        (0..parts).for_each(task);
        return;
    }
    // taken out while its job runs: a part that calls this again goes to rayon
    let leading = Leading(TEAM.with(|team| team.borrow_mut().take()));
    match &leading.0 {
        Some(shared) if parts <= Shared::MAX_PARTS => shared.run(parts, &task),
        _ => (0..parts).into_par_iter().for_each(&task),
    }
}

/// Runs `task(index, chunk)` for every `chunk`-long piece of `values` (the last may be shorter),
/// split as [`for_each_part`] splits: over the team when this thread leads one, else over rayon.
/// What an element-wise or row-wise kernel spreads its output with, so that inside a [`team`] it
/// runs on the team's awake threads rather than on the leader alone. Allocates nothing.
///
/// ```
/// use oxformer_tensor::for_each_chunk_mut;
///
/// let mut values = vec![1.0f32; 10];
/// for_each_chunk_mut(&mut values, 4, |index, chunk| chunk.iter_mut().for_each(|x| *x += index as f32));
/// assert_eq!(values, [1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 3.0, 3.0]);
/// ```
///
/// # Panics
/// If `chunk` is 0 and `values` is not empty.
pub fn for_each_chunk_mut<T: Send>(
    values: &mut [T],
    chunk: usize,
    task: impl Fn(usize, &mut [T]) + Sync,
) {
    if values.is_empty() {
        return;
    }
    assert!(chunk > 0, "for_each_chunk_mut: chunks of 0");
    let len = values.len();
    let start = Chunks {
        ptr: values.as_mut_ptr(),
        values: PhantomData,
    };
    for_each_part(len.div_ceil(chunk), |index| {
        let first = index * chunk;
        let count = chunk.min(len - first);
        // SAFETY: chunk `index` is the `count` values from `first`, inside `values` (`first` <
        // `len`); every index is run once, so no two calls hold the same values, and `values`
        // stays borrowed mutably until `for_each_part` has run every part.
        let piece = unsafe { std::slice::from_raw_parts_mut(start.at(first), count) };
        task(index, piece);
    });
}

/// The start of the slice [`for_each_chunk_mut`] hands out in disjoint pieces, tied to its borrow.
struct Chunks<'a, T> {
    ptr: *mut T,
    values: PhantomData<&'a mut [T]>,
}

impl<T> Chunks<'_, T> {
    /// The address of value `index` (a method, so that a closure captures the whole `Chunks`,
    /// not its raw pointer).
    fn at(&self, index: usize) -> *mut T {
        self.ptr.wrapping_add(index)
    }
}

// SAFETY: shared only to hand each part a disjoint piece of a `&mut [T]`: as sending those pieces
// to other threads, sound for `T: Send`.
unsafe impl<T: Send> Sync for Chunks<'_, T> {}

/// Puts the team back on this thread, also when a part panics.
struct Leading(Option<Arc<Shared>>);

impl Drop for Leading {
    fn drop(&mut self) {
        if let Some(shared) = self.0.take() {
            TEAM.with(|team| *team.borrow_mut() = Some(shared));
        }
    }
}

/// [`for_each_part`] keeping each part's result, in part order.
///
/// ```
/// use oxformer_tensor::{ThreadPool, map_parts, team};
///
/// let squares = ThreadPool::new(2).unwrap().install(|| team(|| map_parts(5, |part| part * part)));
/// assert_eq!(squares, vec![0, 1, 4, 9, 16]);
/// ```
pub fn map_parts<T: Send>(parts: usize, task: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let slots: Vec<Mutex<Option<T>>> = (0..parts).map(|_| Mutex::new(None)).collect();
    for_each_part(parts, |part| {
        let value = task(part);
        *slots[part]
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = Some(value);
    });
    slots
        .into_iter()
        .map(|slot| {
            slot.into_inner()
                .unwrap_or_else(|poison| poison.into_inner())
                .expect("for_each_part ran every part")
        })
        .collect()
}

thread_local! {
    /// The team this thread leads, if any.
    static TEAM: RefCell<Option<Arc<Shared>>> = const { RefCell::new(None) };
}

/// Installs a team on this thread; on drop (also when `work` panics) uninstalls it and lets the
/// helpers go.
struct TeamGuard;

impl TeamGuard {
    fn enter(shared: Arc<Shared>) -> Self {
        TEAM.with(|team| *team.borrow_mut() = Some(shared));
        Self
    }
}

impl Drop for TeamGuard {
    fn drop(&mut self) {
        if let Some(shared) = TEAM.with(|team| team.borrow_mut().take()) {
            shared.stop.store(true, SeqCst);
        }
    }
}

/// What a team's leader and helpers share: one job at a time, whose parts anyone may claim.
///
/// `claim` packs the job's generation (high 32 bits), its number of parts (16 bits) and the next
/// part to hand out (low 16 bits) into one word, so that a claim — a compare-and-swap from
/// `(generation, parts, next)` to `next + 1` — can only succeed for a part of the job it read.
/// The leader publishes a job (the task, then `claim`), claims parts itself, and returns once
/// `done` counts every part, so the task (on the leader's stack) outlives every call of it.
struct Shared {
    claim: AtomicU64,
    /// A `*const &(dyn Fn(usize) + Sync)` on the leader's stack.
    task: AtomicPtr<()>,
    done: AtomicUsize,
    /// The first panic of a part, re-raised by the leader once every part is done.
    panic: sync::Mutex<Option<Box<dyn Any + Send>>>,
    stop: AtomicBool,
    leader: ThreadId,
}

type Task<'a> = &'a (dyn Fn(usize) + Sync);

impl Shared {
    const MAX_PARTS: usize = u16::MAX as usize;
    /// Idle rounds a helper spins before yielding its core at every round (the leader may be
    /// waiting for it on an oversubscribed machine).
    const SPINS: u32 = 1 << 14;

    fn new() -> Self {
        Self {
            claim: AtomicU64::new(0),
            task: AtomicPtr::new(std::ptr::null_mut()),
            done: AtomicUsize::new(0),
            panic: sync::Mutex::new(None),
            stop: AtomicBool::new(false),
            leader: sync::current().id(),
        }
    }

    /// The leader: publishes `task` as the next job and returns when every part has run.
    fn run(&self, parts: usize, task: Task<'_>) {
        let generation = (self.claim.load(SeqCst) >> 32) + 1;
        self.done.store(0, SeqCst);
        self.task.store((&raw const task).cast_mut().cast(), SeqCst);
        self.claim
            .store(generation << 32 | (parts as u64) << 16, SeqCst);
        while self.claim_and_run() {}
        let mut spins = 0u32;
        while self.done.load(SeqCst) < parts {
            spins = spins.saturating_add(1);
            pause(spins);
        }
        let panic = self
            .panic
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .take();
        if let Some(payload) = panic {
            std::panic::resume_unwind(payload);
        }
    }

    /// A helper: claims and runs parts until the leader lets it go.
    fn help(&self) {
        // rayon may hand this job to the leader itself while it waits inside a rayon call:
        // spinning there would never end
        if sync::current().id() == self.leader {
            return;
        }
        let mut spins = 0u32;
        while !self.stop.load(Relaxed) {
            if self.claim_and_run() {
                spins = 0;
            } else {
                spins = spins.saturating_add(1);
                pause(spins);
            }
        }
    }

    /// Claims the current job's next part and runs it; false when there is none.
    fn claim_and_run(&self) -> bool {
        let claim = self.claim.load(SeqCst);
        let (parts, next) = ((claim >> 16) & 0xffff, claim & 0xffff);
        if next >= parts {
            return false;
        }
        // read before claiming: once the claim succeeds, the job cannot finish (and the leader
        // cannot publish another) before this part is done
        let task = self.task.load(SeqCst);
        if self
            .claim
            .compare_exchange(claim, claim + 1, SeqCst, Relaxed)
            .is_err()
        {
            return true;
        }
        // SAFETY: the claim succeeded for this job, so `task` points at its task, which the
        // leader keeps alive until `done` counts this part.
        let task = unsafe { *task.cast::<Task<'_>>() };
        // a panicking part still counts as done (the leader must not return while others run
        // its task); the leader re-raises the panic
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| task(next as usize))) {
            let mut panic = self
                .panic
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            panic.get_or_insert(payload);
        }
        self.done.fetch_add(1, SeqCst);
        true
    }
}

/// One round of waiting: a spin-loop hint, or after [`Shared::SPINS`] rounds a yield.
fn pause(spins: u32) {
    if spins < Shared::SPINS {
        sync::spin_loop();
    } else {
        sync::yield_now();
    }
}

#[cfg(all(test, loom))]
mod loom_model;

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Runs `for_each_part` on a team of `threads` and counts how often each part ran.
    fn counts(threads: usize, parts: usize, jobs: usize) -> Vec<usize> {
        let pool = ThreadPool::new(threads).unwrap();
        let counts: Vec<AtomicUsize> = (0..parts).map(|_| AtomicUsize::new(0)).collect();
        pool.install(|| {
            team(|| {
                for _ in 0..jobs {
                    for_each_part(parts, |part| {
                        counts[part].fetch_add(1, SeqCst);
                    });
                }
            })
        });
        counts.into_iter().map(AtomicUsize::into_inner).collect()
    }

    #[test]
    fn every_part_runs_once_per_job() {
        for threads in [1, 2, 3] {
            for parts in [0, 1, 2, 7, 300] {
                assert_eq!(
                    counts(threads, parts, 50),
                    vec![50; parts],
                    "{threads} threads, {parts} parts"
                );
            }
        }
    }

    #[test]
    fn helpers_take_parts() {
        let pool = ThreadPool::new(2).unwrap();
        let on_helpers = AtomicUsize::new(0);
        pool.install(|| {
            let leader = std::thread::current().id();
            team(|| {
                for_each_part(64, |_| {
                    if std::thread::current().id() != leader {
                        on_helpers.fetch_add(1, SeqCst);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(1));
                });
            })
        });
        assert!(on_helpers.into_inner() > 0, "no part ran on a helper");
    }

    #[test]
    fn results_come_back_in_part_order() {
        let pool = ThreadPool::new(2).unwrap();
        let squares = pool.install(|| team(|| map_parts(1000, |part| part * part)));
        assert_eq!(
            squares,
            (0..1000).map(|part| part * part).collect::<Vec<_>>()
        );
        // and without a team, over rayon
        let squares = pool.install(|| map_parts(1000, |part| part * part));
        assert_eq!(
            squares,
            (0..1000).map(|part| part * part).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_part_may_split_its_own_work() {
        let pool = ThreadPool::new(2).unwrap();
        let sums = pool.install(|| {
            team(|| {
                map_parts(8, |outer| {
                    map_parts(100, |inner| outer * inner).iter().sum::<usize>()
                })
            })
        });
        let expected: Vec<usize> = (0..8).map(|outer| outer * 4950).collect();
        assert_eq!(sums, expected);
    }

    #[test]
    fn a_panicking_part_reaches_the_leader_and_the_team_goes_on() {
        let pool = ThreadPool::new(2).unwrap();
        pool.install(|| {
            team(|| {
                let outcome = catch_unwind(|| {
                    for_each_part(16, |part| assert!(part != 11, "part {part} failed"));
                });
                let message = outcome.expect_err("the panic was lost");
                assert_eq!(message.downcast_ref::<String>().unwrap(), "part 11 failed");
                assert_eq!(map_parts(16, |part| part + 1)[15], 16);
            })
        });
        // the team let its helpers go: the pool still runs work
        assert_eq!(pool.install(|| map_parts(4, |part| part)), vec![0, 1, 2, 3]);
    }

    /// As many leaders outside the pool as it has threads, each in a team (so that every pool
    /// thread may be spinning as some team's helper) and each then blocked on a rayon call of its
    /// own, which only the pool's threads can run: the helpers must give way to it.
    #[test]
    fn teams_led_from_outside_the_pool_let_their_leaders_use_rayon() {
        let leaders = rayon::current_num_threads().max(2);
        let (sender, receiver) = std::sync::mpsc::channel();
        for leader in 0..leaders {
            let sender = sender.clone();
            std::thread::spawn(move || {
                let sum = team(|| {
                    // let the helpers of every team reach their pool threads first
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    (0..1000u64)
                        .into_par_iter()
                        .map(|x| x * leader as u64)
                        .sum::<u64>()
                });
                sender.send((leader, sum)).unwrap();
            });
        }
        for _ in 0..leaders {
            let (leader, sum) = receiver
                .recv_timeout(std::time::Duration::from_secs(60))
                .expect("a team's leader stayed blocked on its rayon call");
            assert_eq!(sum, 499_500 * leader as u64);
        }
    }

    #[test]
    fn a_team_outside_any_pool_uses_the_global_one() {
        let parts = team(|| map_parts(100, |part| part));
        assert_eq!(parts, (0..100).collect::<Vec<_>>());
    }
}
