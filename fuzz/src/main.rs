//! The deterministic fuzz driver: `oxformer-fuzz [--seconds N] [--target NAME]... [--seed S]
//! [--replay I]`, run by `cargo xtask fuzz`.
//!
//! For each target it runs inputs for N seconds (default 10): mutations of the seed corpus
//! (`fuzz/corpus/<target>/` and the target's fixture files) and fresh random bytes, most of them
//! in the structured mode (see the crate docs). Input `i` of a run depends only on the seed, the
//! target and `i`, so `--replay i` runs exactly that input again. It watches for
//!
//! - panics (caught, reported with the input saved under `fuzz/findings/<target>/`);
//! - inputs that take over 1 s (reported), or over 30 s (the run stops);
//! - allocations larger than the input justifies: a single allocation over 64 MiB + 64 bytes
//!   per input byte is refused and the run stops, naming the input to replay.
//!
//! The exit status is 0 when no target found anything.
//!
//! Two more modes serve coverage-guided fuzzing with AFL++ (`cargo xtask fuzz --afl NAME`):
//! `--write-seeds DIR --target NAME` writes the target's seeds (corpus and fixture files) as
//! files, afl-fuzz's input folder; and, in a build by `cargo afl build --features afl`,
//! `--afl --target NAME` is the persistent-mode program afl-fuzz runs (setting the target up
//! after the fork server forks, so that its thread pools exist in the child). There a panic aborts (a
//! crash for AFL++), as does an allocation over the limit above; AFL++'s own timeout catches
//! slow inputs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use oxformer_fuzz::{TARGETS, Target, make};

// --- the allocation watch ----------------------------------------------------------------------

/// The largest single allocation allowed now (`usize::MAX` outside an input).
static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);
/// The largest single allocation requested during inputs of the current target.
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// What is running, for the message of a refused allocation.
static CURRENT_TARGET: AtomicUsize = AtomicUsize::new(0);
static CURRENT_INPUT: AtomicU64 = AtomicU64::new(0);
static SEED: AtomicU64 = AtomicU64::new(0);
/// Milliseconds since `EPOCH` when the current input started, 0 between inputs.
static STARTED_MS: AtomicU64 = AtomicU64::new(0);

const BASE_LIMIT: usize = 64 << 20;
const LIMIT_PER_INPUT_BYTE: usize = 64;

struct Watched;

impl Watched {
    fn check(size: usize) -> bool {
        let limit = LIMIT.load(Ordering::Relaxed);
        if limit != usize::MAX {
            PEAK.fetch_max(size, Ordering::Relaxed);
        }
        if size <= limit {
            return true;
        }
        // No allocation may happen here: write the message from a stack buffer.
        let mut buffer = [0u8; 512];
        let mut cursor = std::io::Cursor::new(&mut buffer[..]);
        let target = TARGETS
            .get(CURRENT_TARGET.load(Ordering::Relaxed))
            .copied()
            .unwrap_or("?");
        let _ = write!(
            cursor,
            "\nfuzz: FINDING: target {target}: an allocation of {size} bytes (limit {limit}) in \
             input {input}; replay: cargo xtask fuzz --target {target} --seed {seed} --replay \
             {input}\n",
            input = CURRENT_INPUT.load(Ordering::Relaxed),
            seed = SEED.load(Ordering::Relaxed),
        );
        let written = cursor.position() as usize;
        let _ = std::io::stderr().write_all(&buffer[..written]);
        false
    }
}

// SAFETY: every call is forwarded to the system allocator unchanged, or refused with a null
// pointer, which GlobalAlloc allows (the caller then reports the allocation failure).
unsafe impl GlobalAlloc for Watched {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !Self::check(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !Self::check(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: `pointer` came from `System` with this layout.
        unsafe { System.dealloc(pointer, layout) }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !Self::check(new_size) {
            return std::ptr::null_mut();
        }
        // SAFETY: `pointer` came from `System` with `layout`.
        unsafe { System.realloc(pointer, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Watched = Watched;

// --- inputs ------------------------------------------------------------------------------------

/// splitmix64: input `i`'s random stream, from (seed, target, i) alone.
struct Random(u64);

impl Random {
    fn new(seed: u64, target: usize, input: u64) -> Self {
        let mut random = Self(
            seed ^ (target as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                ^ input.wrapping_mul(0xD1B5_4A32_D192_ED03),
        );
        random.next();
        random
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: usize) -> usize {
        if bound == 0 {
            0
        } else {
            (self.next() % bound as u64) as usize
        }
    }

    fn bytes(&mut self, count: usize) -> Vec<u8> {
        (0..count).map(|_| self.next() as u8).collect()
    }
}

const INTERESTING_BYTES: &[u8] = b"\x00\xff\x7f\x80\x01\"{}[],:09-. \\en";
const INTERESTING_U64: &[u64] = &[
    0,
    1,
    7,
    8,
    255,
    256,
    65535,
    1 << 31,
    1 << 32,
    1 << 60,
    u64::MAX,
    u64::MAX / 2,
];

/// Input `i`: a mutated seed (raw or structured, as the seed is) or fresh random bytes.
fn generate(seeds: &[Vec<u8>], random: &mut Random) -> Vec<u8> {
    let choice = random.below(10);
    if seeds.is_empty() || choice < 6 {
        // fresh: mostly structured (mode 1), sometimes raw
        let mode = if choice < 5 { 1 } else { 0 };
        let bound = if random.below(4) == 0 { 8192 } else { 512 };
        let length = random.below(bound);
        let mut data = vec![mode];
        data.extend(random.bytes(length));
        return data;
    }
    let mut data = seeds[random.below(seeds.len())].clone();
    let rounds = 1 + random.below(8);
    for _ in 0..rounds {
        mutate(&mut data, seeds, random);
    }
    data
}

/// One mutation of `data`, never of its mode byte.
fn mutate(data: &mut Vec<u8>, seeds: &[Vec<u8>], random: &mut Random) {
    if data.len() < 2 {
        let count = 1 + random.below(16);
        data.extend(random.bytes(count));
        return;
    }
    let length = data.len();
    let at = 1 + random.below(length - 1);
    match random.below(9) {
        0 => data[at] ^= 1 << random.below(8),
        1 => data[at] = INTERESTING_BYTES[random.below(INTERESTING_BYTES.len())],
        2 => data[at] = random.next() as u8,
        3 => {
            let count = 1 + random.below(32);
            let bytes = random.bytes(count);
            data.splice(at..at, bytes);
        }
        4 => {
            let end = (at + 1 + random.below(64)).min(length);
            data.drain(at..end);
        }
        5 => {
            let end = (at + 1 + random.below(64)).min(length);
            let copy = data[at..end].to_vec();
            let to = 1 + random.below(data.len() - 1);
            data.splice(to..to, copy);
        }
        6 => {
            // splice in a piece of another seed
            let other = &seeds[random.below(seeds.len())];
            if other.len() > 1 {
                let from = 1 + random.below(other.len() - 1);
                let end = (from + 1 + random.below(256)).min(other.len());
                let piece = other[from..end].to_vec();
                let replace_end = (at + piece.len()).min(length);
                data.splice(at..replace_end, piece);
            }
        }
        7 => data.truncate(at.max(1)),
        _ => {
            // a little-endian length or count at `at` (a safetensors header length, say)
            let value = INTERESTING_U64[random.below(INTERESTING_U64.len())];
            let bytes = value.to_le_bytes();
            let end = (at + 8).min(length);
            data[at..end].copy_from_slice(&bytes[..end - at]);
        }
    }
}

// --- the run -----------------------------------------------------------------------------------

struct Options {
    seconds: f64,
    targets: Vec<usize>,
    seed: u64,
    replay: Option<u64>,
    root: PathBuf,
    /// Run as afl-fuzz's persistent-mode program (needs the `afl` feature).
    afl: bool,
    /// Write the seeds of the target to this folder and exit.
    write_seeds: Option<PathBuf>,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        seconds: 10.0,
        targets: Vec::new(),
        seed: 1,
        replay: None,
        root: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."),
        afl: false,
        write_seeds: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--seconds" => {
                options.seconds = value("--seconds")?
                    .parse()
                    .map_err(|_| "--seconds takes a number")?
            }
            "--seed" => {
                options.seed = value("--seed")?
                    .parse()
                    .map_err(|_| "--seed takes an integer")?
            }
            "--replay" => {
                options.replay = Some(
                    value("--replay")?
                        .parse()
                        .map_err(|_| "--replay takes an integer")?,
                )
            }
            "--root" => options.root = PathBuf::from(value("--root")?),
            "--afl" => options.afl = true,
            "--write-seeds" => options.write_seeds = Some(PathBuf::from(value("--write-seeds")?)),
            "--target" => {
                for name in value("--target")?.split(',') {
                    let index = TARGETS
                        .iter()
                        .position(|target| *target == name)
                        .ok_or_else(|| {
                            format!("no target `{name}`; targets: {}", TARGETS.join(", "))
                        })?;
                    options.targets.push(index);
                }
            }
            "-h" | "--help" => {
                return Err(format!(
                    "usage: oxformer-fuzz [--seconds N] [--target NAME[,NAME]] [--seed S] \
                     [--replay I] [--root DIR]\n       oxformer-fuzz --write-seeds DIR --target \
                     NAME\n       oxformer-fuzz --afl --target NAME (a cargo-afl build with \
                     --features afl)\ntargets: {}",
                    TARGETS.join(", ")
                ));
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if (options.afl || options.write_seeds.is_some()) && options.targets.len() != 1 {
        return Err("--afl and --write-seeds take one --target".to_string());
    }
    if options.targets.is_empty() {
        options.targets = (0..TARGETS.len()).collect();
    }
    Ok(options)
}

/// The committed corpus of `target` and the target's own seeds.
fn seeds_of(root: &Path, name: &str, target: &dyn Target) -> Vec<Vec<u8>> {
    let mut seeds = target.seeds();
    let folder = root.join("fuzz").join("corpus").join(name);
    if let Ok(entries) = std::fs::read_dir(&folder) {
        let mut files: Vec<PathBuf> = entries.flatten().map(|entry| entry.path()).collect();
        files.sort();
        seeds.extend(files.iter().filter_map(|file| std::fs::read(file).ok()));
    }
    seeds
}

#[derive(Default)]
struct Report {
    inputs: u64,
    accepted: u64,
    panics: Vec<(u64, String)>,
    slow: Vec<(u64, Duration)>,
    slowest: (u64, Duration),
}

static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

fn main() {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    SEED.store(options.seed, Ordering::Relaxed);
    if let Some(folder) = &options.write_seeds {
        let name = TARGETS[options.targets[0]];
        let target = make(name, &options.root);
        let seeds = seeds_of(&options.root, name, target.as_ref());
        if let Err(error) = write_seeds(folder, &seeds) {
            eprintln!("{}: {error}", folder.display());
            std::process::exit(2);
        }
        eprintln!(
            "fuzz {name}: {} seeds written to {}",
            seeds.len(),
            folder.display()
        );
        return;
    }
    if options.afl {
        run_under_afl(&options);
    }
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|location| format!("{}:{}", location.file(), location.line()))
            .unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|text| text.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = Some(format!("{message} at {location}"));
        }
    }));
    let epoch = Instant::now();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(500));
            let started = STARTED_MS.load(Ordering::Relaxed);
            let now = epoch.elapsed().as_millis() as u64;
            if started != 0 && now.saturating_sub(started) > 30_000 {
                let target = TARGETS[CURRENT_TARGET.load(Ordering::Relaxed)];
                let input = CURRENT_INPUT.load(Ordering::Relaxed);
                eprintln!(
                    "\nfuzz: FINDING: target {target}: input {input} has run for 30 s; replay: \
                     cargo xtask fuzz --target {target} --seed {} --replay {input}",
                    SEED.load(Ordering::Relaxed)
                );
                std::process::exit(1);
            }
        }
    });

    let mut found = false;
    for &index in &options.targets {
        let name = TARGETS[index];
        let setup = Instant::now();
        let mut target = make(name, &options.root);
        let seeds = seeds_of(&options.root, name, target.as_ref());
        CURRENT_TARGET.store(index, Ordering::Relaxed);
        PEAK.store(0, Ordering::Relaxed);
        eprint!(
            "fuzz {name}: {} seeds, set up in {:.1} s ... ",
            seeds.len(),
            setup.elapsed().as_secs_f64()
        );
        let _ = std::io::stderr().flush();
        let start = Instant::now();
        let mut report = Report::default();
        let mut next = 0u64;
        loop {
            let input = match options.replay {
                Some(_) if report.inputs > 0 => break,
                Some(replay) => replay,
                None if start.elapsed().as_secs_f64() >= options.seconds => break,
                None => {
                    next += 1;
                    next - 1
                }
            };
            // every seed once first, then generated inputs
            let data = match usize::try_from(input)
                .ok()
                .and_then(|input| seeds.get(input))
            {
                Some(seed) => seed.clone(),
                None => generate(&seeds, &mut Random::new(options.seed, index, input)),
            };
            CURRENT_INPUT.store(input, Ordering::Relaxed);
            LIMIT.store(
                BASE_LIMIT.saturating_add(data.len().saturating_mul(LIMIT_PER_INPUT_BYTE)),
                Ordering::Relaxed,
            );
            STARTED_MS.store(
                (epoch.elapsed().as_millis() as u64).max(1),
                Ordering::Relaxed,
            );
            let began = Instant::now();
            let outcome = catch_unwind(AssertUnwindSafe(|| target.run(&data)));
            report.accepted += u64::from(matches!(outcome, Ok(true)));
            let took = began.elapsed();
            STARTED_MS.store(0, Ordering::Relaxed);
            LIMIT.store(usize::MAX, Ordering::Relaxed);
            report.inputs += 1;
            if took > report.slowest.1 {
                report.slowest = (input, took);
            }
            if took > Duration::from_secs(1) {
                report.slow.push((input, took));
                save(&options.root, name, input, &data);
            }
            if outcome.is_err() {
                let message = LAST_PANIC
                    .lock()
                    .ok()
                    .and_then(|mut last| last.take())
                    .unwrap_or_default();
                let file = save(&options.root, name, input, &data);
                if !report.panics.iter().any(|(_, seen)| *seen == message) {
                    eprintln!(
                        "\nfuzz: FINDING: target {name}: input {input} panicked: {message} \
                         (saved to {})",
                        file.display()
                    );
                }
                report.panics.push((input, message));
            }
        }
        let seconds = start.elapsed().as_secs_f64();
        eprintln!(
            "{} inputs in {seconds:.1} s ({:.0}/s, {:.0}% accepted); slowest input {} took {:.3} s; largest \
             allocation {} bytes; {} panics ({} distinct), {} inputs over 1 s",
            report.inputs,
            report.inputs as f64 / seconds.max(1e-9),
            100.0 * report.accepted as f64 / (report.inputs.max(1)) as f64,
            report.slowest.0,
            report.slowest.1.as_secs_f64(),
            PEAK.load(Ordering::Relaxed),
            report.panics.len(),
            {
                let mut distinct: Vec<&String> = report.panics.iter().map(|(_, m)| m).collect();
                distinct.sort();
                distinct.dedup();
                distinct.len()
            },
            report.slow.len(),
        );
        for (input, took) in &report.slow {
            eprintln!(
                "fuzz: FINDING: target {name}: input {input} took {:.2} s",
                took.as_secs_f64()
            );
        }
        found |= !report.panics.is_empty() || !report.slow.is_empty();
    }
    std::process::exit(i32::from(found));
}

/// The seeds as files `seed-0000`, ... (distinct contents only; afl-fuzz refuses empty files).
fn write_seeds(folder: &Path, seeds: &[Vec<u8>]) -> std::io::Result<()> {
    std::fs::create_dir_all(folder)?;
    let mut written: Vec<&Vec<u8>> = Vec::new();
    for seed in seeds {
        if seed.is_empty() || written.contains(&seed) {
            continue;
        }
        std::fs::write(folder.join(format!("seed-{:04}", written.len())), seed)?;
        written.push(seed);
    }
    Ok(())
}

/// afl-fuzz's persistent-mode loop over one target: a panic aborts (a crash), and so does an
/// allocation over the limit (the allocator refuses it and the allocation failure aborts).
///
/// The target is set up in the first iteration, after the fork server has forked: setting up
/// loads models, which starts thread pools, and a forked child has none of its parent's threads
/// (work handed to them would wait forever: afl-fuzz saw every generation input as a hang).
#[cfg(feature = "afl")]
fn run_under_afl(options: &Options) -> ! {
    let index = options.targets[0];
    let root = options.root.clone();
    let mut target = AssertUnwindSafe(None::<Box<dyn Target>>);
    CURRENT_TARGET.store(index, Ordering::Relaxed);
    // No abort-on-panic hook: the panics the libraries catch themselves (the tokenizers
    // library's, turned into errors) are not crashes; afl::fuzz aborts on the ones that escape.
    afl::fuzz(false, move |data: &[u8]| {
        let target = target.get_or_insert_with(|| make(TARGETS[index], &root));
        LIMIT.store(
            BASE_LIMIT.saturating_add(data.len().saturating_mul(LIMIT_PER_INPUT_BYTE)),
            Ordering::Relaxed,
        );
        target.run(data);
        LIMIT.store(usize::MAX, Ordering::Relaxed);
    });
    std::process::exit(0);
}

#[cfg(not(feature = "afl"))]
fn run_under_afl(_: &Options) -> ! {
    eprintln!(
        "--afl needs a cargo-afl build with the `afl` feature: cargo xtask fuzz --afl NAME \
         (cargo afl build -p oxformer-fuzz --features afl)"
    );
    std::process::exit(2);
}

/// Saves a finding's input as `fuzz/findings/<target>/<seed>-<input>`.
fn save(root: &Path, target: &str, input: u64, data: &[u8]) -> PathBuf {
    let folder = root.join("fuzz").join("findings").join(target);
    let file = folder.join(format!("{}-{input}", SEED.load(Ordering::Relaxed)));
    let _ = std::fs::create_dir_all(&folder);
    let _ = std::fs::write(&file, data);
    file
}
