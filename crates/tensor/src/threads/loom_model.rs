//! Model checks of the team's claim protocol ([`Shared`]) under loom, which runs each model once
//! per interleaving of its threads' atomic operations, treating `SeqCst` as the weaker `AcqRel`,
//! and fails on a broken assertion, on a data race between the parts' writes and the leader's
//! reads, on a deadlock, and on a model that does not finish (a spin loop that never ends: a
//! leader left waiting for a part nobody runs, a helper never let go).
//!
//! `--cfg loom` swaps the protocol's atomics for loom's (the `sync` shim in `threads.rs`) and
//! rebuilds every dependency, hence a target directory of its own:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test -p oxformer-tensor --lib --profile test-release loom_model
//! ```
//!
//! The helpers and the leader wait in spin loops, and every round of one is a step loom may
//! interleave differently, so an unbounded search does not end in useful time: the models bound
//! the preemptions (switches away from a thread that could have gone on) per execution, to
//! [`PREEMPTIONS`] unless `LOOM_MAX_PREEMPTIONS` says otherwise. With two helpers, which loom
//! (no fair scheduler) may let yield to each other while the leader waits, the search ends only
//! within one preemption (with two it runs past loom's limit of branches per execution), so that
//! model keeps a bound of one.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering::SeqCst;

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;

use super::Shared;

/// Preemptions per execution the models explore when `LOOM_MAX_PREEMPTIONS` is not set (loom's
/// authors find most bugs within 2 or 3).
const PREEMPTIONS: usize = 3;

/// Runs `model` under loom within `preemptions` per execution and says how many executions it
/// explored (shown with `--nocapture`).
fn check(name: &str, preemptions: usize, model: impl Fn() + Sync + Send + 'static) {
    let executions = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(preemptions);
    builder.check({
        let executions = std::sync::Arc::clone(&executions);
        move || {
            executions.fetch_add(1, SeqCst);
            model();
        }
    });
    eprintln!(
        "{name}: {} executions, at most {preemptions} preemptions each",
        executions.load(SeqCst)
    );
}

/// [`PREEMPTIONS`], or `LOOM_MAX_PREEMPTIONS` when set.
fn preemptions() -> usize {
    std::env::var("LOOM_MAX_PREEMPTIONS")
        .ok()
        .and_then(|bound| bound.parse().ok())
        .unwrap_or(PREEMPTIONS)
}

/// How often each part of one job ran. Each part writes only its own cell and the leader reads
/// them after `run`; loom reports a data race unless every part's write happens before the read.
struct Runs(Vec<UnsafeCell<usize>>);

// SAFETY: each cell is written by one part at a time (the part's index is claimed once) and read
// by the leader only after `run` returned; loom checks both claims in every interleaving.
unsafe impl Sync for Runs {}

impl Runs {
    fn new(parts: usize) -> Self {
        Self((0..parts).map(|_| UnsafeCell::new(0)).collect())
    }

    fn count(&self, part: usize) {
        // SAFETY: only the thread that claimed `part` writes its cell (see `Runs`).
        self.0[part].with_mut(|count| unsafe { *count += 1 });
    }

    fn counts(&self) -> Vec<usize> {
        self.0
            .iter()
            // SAFETY: called by the leader after `run` (see `Runs`).
            .map(|cell| cell.with(|count| unsafe { *count }))
            .collect()
    }
}

/// A leader and `helpers` helper threads: `jobs` jobs of `parts` parts one after the other, each
/// checked when `run` returns (every part ran exactly once, its write visible to the leader);
/// then the helpers are let go and joined.
fn every_part_once(helpers: usize, jobs: usize, parts: usize) -> impl Fn() + Sync + Send + 'static {
    move || {
        let shared = Arc::new(Shared::new());
        let handles: Vec<_> = (0..helpers)
            .map(|_| {
                let shared = Arc::clone(&shared);
                thread::spawn(move || shared.help())
            })
            .collect();
        for job in 0..jobs {
            let runs = Runs::new(parts);
            shared.run(parts, &|part| runs.count(part));
            assert_eq!(runs.counts(), vec![1; parts], "job {job}");
        }
        shared.stop.store(true, SeqCst);
        for handle in handles {
            handle.join().unwrap();
        }
    }
}

#[test]
fn one_helper_three_jobs_of_two_parts() {
    // later jobs reuse the claim word and the task slot: a helper late from one job must not
    // claim or run a part of the next with the old task
    check(
        "one helper, 3 jobs of 2 parts",
        preemptions(),
        every_part_once(1, 3, 2),
    );
}

#[test]
fn two_helpers_one_job_of_three_parts() {
    // one preemption: see the module's documentation
    check("two helpers, 1 job of 3 parts", 1, every_part_once(2, 1, 3));
}

#[test]
fn a_panicking_part_reaches_the_leader_after_every_part_ran() {
    // the model runs many times over: the panic of part 0 is expected, so not printed (the hook
    // stays: a hook put back could drop one that loom's coroutines installed meanwhile)
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<&str>() != Some(&"part 0 failed") {
            default_hook(info);
        }
    }));
    check("a panicking part, one helper", preemptions(), || {
        let shared = Arc::new(Shared::new());
        let helper = {
            let shared = Arc::clone(&shared);
            thread::spawn(move || shared.help())
        };
        let runs = Runs::new(2);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            shared.run(2, &|part| {
                runs.count(part);
                assert!(part != 0, "part 0 failed");
            })
        }));
        let payload = outcome.expect_err("the part's panic was lost");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"part 0 failed"));
        assert_eq!(runs.counts(), vec![1, 1]);
        // the team goes on
        let runs = Runs::new(2);
        shared.run(2, &|part| runs.count(part));
        assert_eq!(runs.counts(), vec![1, 1]);
        shared.stop.store(true, SeqCst);
        helper.join().unwrap();
    });
}
