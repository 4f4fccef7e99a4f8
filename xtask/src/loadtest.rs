//! `cargo xtask loadtest`: the load benchmark of issue 16. It serves the real all-MiniLM-L6-v2
//! (fetched as `cargo xtask fetch` does) with `oxformer serve` on 127.0.0.1 and drives
//! `POST /embed` from threads in this process: 15 s at each concurrency of 1, 8, 32 and 128, each
//! request 1 to 8 sentences of realistic length, chosen deterministically, at most
//! [`MAX_REQUESTS_PER_LEVEL`] requests per level. It prints requests/s, sentences/s, p50, p99 and
//! errors per level, and the server's RSS after a warm-up, after the run, and at its peak.
//!
//! The anchor, on the same machine and sentences: sentence-transformers' `encode()` in-process,
//! batch 32, 2 threads (`xtask/python/loadtest_anchor.py`, in the pinned venv). Then the bar:
//! sentences/s at concurrency 32 ≥ 1.5× the anchor's, p99 ≤ 4× p50, 0 errors, and RSS after the
//! run within 10% of RSS after the warm-up.
//!
//! Options: `--seconds N` per level; `--concurrency 1,8,32,128`; `--url URL` drives a server
//! already running (no RSS then, unless `--pid PID`); `--stand-in` drives a tiny in-process
//! stand-in of `/embed` instead (a check of the load generator, not a benchmark);
//! `--no-anchor` skips sentence-transformers.
//!
//! The warm-up runs at concurrency 8 and then at the largest level, so that the RSS after it
//! includes the work buffers of the largest batches.
//!
//! The load generator shares the CPUs with the server (the anchor has them to itself): on a small
//! machine that costs the server some of its throughput, which the ratio does not correct for.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::paths::{cache_dir, workspace_root};

/// Requests per concurrency level at most, whatever the time: the run stays bounded.
pub const MAX_REQUESTS_PER_LEVEL: u64 = 200_000;
const DEFAULT_SECONDS: f64 = 15.0;
const DEFAULT_LEVELS: [usize; 4] = [1, 8, 32, 128];
const WARM_UP_SECONDS: f64 = 3.0;
/// Sentences the anchor encodes per round: the first requests' sentences, in order.
const ANCHOR_SENTENCES: usize = 2048;

/// Sentences of the lengths people embed: questions, product text, support tickets, news,
/// documentation. Requests draw from these and from pairs of them joined (longer passages).
const SENTENCES: &[&str] = &[
    "How do I reset my password if I no longer have access to the email on my account?",
    "The package arrived two days late and the box was damaged, but the headphones work fine.",
    "A man is eating food.",
    "Transformers process every token of a sequence in parallel, which is why they train so fast on GPUs.",
    "What is the difference between a Roth IRA and a traditional IRA?",
    "The city council voted on Tuesday to extend the bike lane network to the northern districts.",
    "Preheat the oven to 200 degrees, then roast the vegetables for about thirty-five minutes.",
    "Our quarterly revenue grew by eleven percent, driven mainly by subscriptions in Europe.",
    "Can I bring a power bank in my checked luggage?",
    "The function returns an error when the input file is missing or cannot be parsed.",
    "She had been walking along the river for hours before she noticed the bridge was gone.",
    "Best hiking trails near Lake Tahoe for beginners",
    "The new firmware update fixes the Bluetooth disconnection issue reported by many users.",
    "A cheetah is running behind its prey.",
    "Symptoms of vitamin D deficiency include fatigue, bone pain, muscle weakness and mood changes.",
    "This laptop is lightweight and the battery easily lasts a full working day.",
    "Please cancel my order number 48213; I bought the wrong size.",
    "The committee will publish its final report after reviewing the public comments in March.",
    "How many calories are burned during thirty minutes of moderate cycling?",
    "Kubernetes restarts a container when its liveness probe fails several times in a row.",
    "The museum's new wing houses a collection of modern sculpture donated by a local family.",
    "I love this coffee maker, but the water tank is hard to clean.",
    "Why does my sourdough bread come out dense and flat?",
    "The central bank left interest rates unchanged, citing uncertainty about inflation.",
    "Two men pushed carts through the woods.",
    "Install the package with pip, then import it and call the encode method on a list of sentences.",
    "Is it safe to take ibuprofen and paracetamol together?",
    "The train to Amsterdam was delayed by forty minutes because of a signal failure near Utrecht.",
    "Customers who bought this item also bought a protective case and a screen protector.",
    "Solar panels convert sunlight into electricity using photovoltaic cells made of silicon.",
    "The quick brown fox jumps over the lazy dog.",
    "Which programming language should I learn first if I want to work in data science?",
    "After the merger, the company plans to close three offices and move staff to the headquarters.",
    "The hotel room was clean and quiet, and the staff at the front desk were very helpful.",
    "A woman is playing violin.",
    "Recent studies suggest that regular exercise may reduce the risk of several chronic diseases.",
    "My flight was cancelled; how do I request a refund for the unused ticket?",
    "The library lends laptops and Wi-Fi hotspots to students for up to two weeks at a time.",
    "Rust's ownership rules let the compiler prove that references never outlive their data.",
    "Heavy rain is expected across the region tonight, with local flooding possible near rivers.",
];

/// splitmix64: request `i`'s choices depend on `i` alone.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The sentences of request `index`: 1 to 8 of them, one in four a pair of corpus sentences.
pub fn request_sentences(index: u64) -> Vec<String> {
    let mut state = mix(index ^ 0x6F78_666F_726D_6572);
    let mut next = || {
        state = mix(state);
        state
    };
    let count = 1 + (next() % 8) as usize;
    (0..count)
        .map(|_| {
            let first = SENTENCES[(next() % SENTENCES.len() as u64) as usize];
            if next() % 4 == 0 {
                let second = SENTENCES[(next() % SENTENCES.len() as u64) as usize];
                format!("{first} {second}")
            } else {
                first.to_string()
            }
        })
        .collect()
}

/// What one concurrency level measured.
#[derive(Debug, Default)]
pub struct Level {
    pub concurrency: usize,
    pub requests: u64,
    pub sentences: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub seconds: f64,
    /// Of the successful requests, sorted.
    pub latencies: Vec<Duration>,
}

impl Level {
    pub fn percentile(&self, fraction: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((self.latencies.len() as f64 * fraction).ceil() as usize)
            .clamp(1, self.latencies.len());
        self.latencies[rank - 1]
    }

    pub fn sentences_per_second(&self) -> f64 {
        self.sentences as f64 / self.seconds.max(1e-9)
    }
}

/// Drives `POST {url}/embed` from `concurrency` threads, each with its own connection, for
/// `seconds` or `max_requests` requests, starting at request `first`. A request counts as an
/// error unless it answers 200 with one vector per sentence.
pub fn drive(url: &str, concurrency: usize, seconds: f64, first: u64, max_requests: u64) -> Level {
    let next = AtomicU64::new(first);
    let end = first + max_requests;
    let results = Mutex::new(Level {
        concurrency,
        ..Level::default()
    });
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    std::thread::scope(|scope| {
        for _ in 0..concurrency {
            scope.spawn(|| {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(120)))
                    .build()
                    .into();
                let mut mine = Level::default();
                while Instant::now() < deadline {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= end {
                        break;
                    }
                    let sentences = request_sentences(index);
                    let body = serde_json::json!({ "inputs": sentences }).to_string();
                    let sent = Instant::now();
                    let outcome = embed(&agent, url, &body, sentences.len());
                    let took = sent.elapsed();
                    mine.requests += 1;
                    match outcome {
                        Ok(()) => {
                            mine.sentences += sentences.len() as u64;
                            mine.latencies.push(took);
                        }
                        Err(error) => {
                            mine.errors += 1;
                            mine.first_error.get_or_insert(error);
                        }
                    }
                }
                let mut all = results.lock().expect("no worker panics holding it");
                all.requests += mine.requests;
                all.sentences += mine.sentences;
                all.errors += mine.errors;
                if all.first_error.is_none() {
                    all.first_error = mine.first_error;
                }
                all.latencies.extend(mine.latencies);
            });
        }
    });
    let mut level = results.into_inner().expect("no worker panics holding it");
    level.seconds = started.elapsed().as_secs_f64();
    level.latencies.sort();
    level
}

fn embed(agent: &ureq::Agent, url: &str, body: &str, count: usize) -> Result<(), String> {
    let mut response = agent
        .post(&format!("{url}/embed"))
        .header("Content-Type", "application/json")
        .send(body)
        .map_err(|error| format!("request failed: {error}"))?;
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .read_to_string()
        .map_err(|error| format!("reading the answer: {error}"))?;
    if status != 200 {
        return Err(format!(
            "HTTP {status}: {}",
            text.chars().take(200).collect::<String>()
        ));
    }
    let vectors: Value =
        serde_json::from_str(&text).map_err(|error| format!("not JSON ({error})"))?;
    let vectors = vectors
        .as_array()
        .ok_or_else(|| "not a list of vectors".to_string())?;
    let well_formed = vectors.len() == count
        && vectors
            .iter()
            .all(|vector| vector.as_array().is_some_and(|values| !values.is_empty()));
    if !well_formed {
        return Err(format!("{} vectors for {count} sentences", vectors.len()));
    }
    Ok(())
}

struct Options {
    seconds: f64,
    levels: Vec<usize>,
    url: Option<String>,
    pid: Option<u32>,
    stand_in: bool,
    anchor: bool,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut options = Options {
        seconds: DEFAULT_SECONDS,
        levels: DEFAULT_LEVELS.to_vec(),
        url: None,
        pid: None,
        stand_in: false,
        anchor: true,
    };
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let mut value = || iter.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--seconds" => options.seconds = value()?.parse().context("--seconds: a number")?,
            "--concurrency" => {
                options.levels = value()?
                    .split(',')
                    .map(|level| level.trim().parse::<usize>())
                    .collect::<Result<_, _>>()
                    .context("--concurrency: a list like 1,8,32,128")?
            }
            "--url" => options.url = Some(value()?.trim_end_matches('/').to_string()),
            "--pid" => options.pid = Some(value()?.parse().context("--pid: a process id")?),
            "--stand-in" => options.stand_in = true,
            "--no-anchor" => options.anchor = false,
            other => bail!(
                "unknown option `{other}`; usage: cargo xtask loadtest [--seconds N] \
                 [--concurrency 1,8,32,128] [--url URL [--pid PID]] [--stand-in] [--no-anchor]"
            ),
        }
    }
    if options.levels.is_empty() || options.levels.contains(&0) || options.seconds <= 0.0 {
        bail!("--concurrency takes positive counts and --seconds a positive number");
    }
    Ok(options)
}

pub fn run(args: &[String]) -> Result<()> {
    let options = parse(args)?;
    let cache = cache_dir();
    let model = crate::fetch::minilm_dir(&cache);
    let mut server = None;
    let (url, pid) = if let Some(url) = &options.url {
        (url.clone(), options.pid)
    } else if options.stand_in {
        let url = stand_in::start()?;
        eprintln!(
            "loadtest: driving a stand-in of /embed at {url} (checks the load generator; not a benchmark)"
        );
        (url, None)
    } else {
        crate::fetch::fetch_all(&cache)?;
        let binary = build_cli()?;
        // Admission is per input: room for every level's worst case (8 inputs per request), so
        // that a 429 is never what the levels measure.
        let max_inputs = 8 * options.levels.iter().max().copied().unwrap_or(1);
        let child = start_server(&binary, &model, max_inputs.max(512))?;
        let pid = child.child.id();
        let url = child.url.clone();
        server = Some(child);
        (url, Some(pid))
    };

    let outcome = measure(&options, &url, pid, &model);
    if let Some(server) = server {
        server.stop();
    }
    outcome
}

fn measure(options: &Options, url: &str, pid: Option<u32>, model: &Path) -> Result<()> {
    // The warm-up reaches the largest concurrency too: the batches, and with them the server's
    // work buffers, grow with it, and the RSS check is about what happens after that.
    let largest = options.levels.iter().max().copied().unwrap_or(8);
    eprintln!(
        "loadtest: warming up ({WARM_UP_SECONDS} s at concurrency 8, then {WARM_UP_SECONDS} s at \
         {largest})"
    );
    for concurrency in [8, largest] {
        let warm_up = drive(
            url,
            concurrency,
            WARM_UP_SECONDS,
            1 << 40,
            MAX_REQUESTS_PER_LEVEL,
        );
        if warm_up.requests == 0 || warm_up.errors == warm_up.requests {
            bail!(
                "the warm-up got no answer from {url}/embed: {}",
                warm_up.first_error.unwrap_or_default()
            );
        }
    }
    let rss_warm = pid.and_then(|pid| memory(pid, "VmRSS"));

    println!();
    let what = if options.stand_in {
        "the stand-in (not a model)"
    } else {
        "all-MiniLM-L6-v2"
    };
    println!(
        "POST {url}/embed, {what}, {} s per level, 1-8 sentences per request",
        options.seconds
    );
    println!(
        "{:>11} {:>9} {:>10} {:>12} {:>9} {:>9} {:>8} {:>7}",
        "concurrency",
        "requests",
        "requests/s",
        "sentences/s",
        "p50 ms",
        "p99 ms",
        "p99/p50",
        "errors"
    );
    let mut levels = Vec::new();
    let mut first = 0u64;
    for &concurrency in &options.levels {
        let level = drive(
            url,
            concurrency,
            options.seconds,
            first,
            MAX_REQUESTS_PER_LEVEL,
        );
        first += level.requests;
        let (p50, p99) = (level.percentile(0.5), level.percentile(0.99));
        println!(
            "{:>11} {:>9} {:>10.1} {:>12.1} {:>9.1} {:>9.1} {:>8.2} {:>7}",
            concurrency,
            level.requests,
            level.requests as f64 / level.seconds,
            level.sentences_per_second(),
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            p99.as_secs_f64() / p50.as_secs_f64().max(1e-9),
            level.errors
        );
        if let Some(error) = &level.first_error {
            println!("            first error: {error}");
        }
        levels.push(level);
    }
    let rss_after = pid.and_then(|pid| memory(pid, "VmRSS"));
    let rss_peak = pid.and_then(|pid| memory(pid, "VmHWM"));
    let mib = |kib: Option<u64>| {
        kib.map_or("?".to_string(), |kib| {
            format!("{:.1} MiB", kib as f64 / 1024.0)
        })
    };
    println!(
        "server RSS: {} after warm-up, {} after the run, {} peak",
        mib(rss_warm),
        mib(rss_after),
        mib(rss_peak)
    );

    let anchor = if options.anchor && !options.stand_in {
        Some(anchor(model, options.seconds)?)
    } else {
        None
    };
    println!();
    println!("the bar (issue 16):");
    let at_32 = levels.iter().find(|level| level.concurrency == 32);
    match (at_32, anchor) {
        (Some(level), Some(anchor)) => {
            let ratio = level.sentences_per_second() / anchor;
            println!(
                "  sentences/s at concurrency 32: {:.1} vs sentence-transformers encode() {:.1} \
                 (batch 32, 2 threads) = {ratio:.2}x (bar >= 1.5x): {}",
                level.sentences_per_second(),
                anchor,
                verdict(ratio >= 1.5)
            );
        }
        _ => println!("  sentences/s at concurrency 32 vs sentence-transformers: not measured"),
    }
    for level in &levels {
        let (p50, p99) = (level.percentile(0.5), level.percentile(0.99));
        println!(
            "  p99 <= 4x p50 at concurrency {}: {:.1} ms vs {:.1} ms: {}",
            level.concurrency,
            p99.as_secs_f64() * 1e3,
            4.0 * p50.as_secs_f64() * 1e3,
            verdict(p99 <= 4 * p50)
        );
    }
    let errors: u64 = levels.iter().map(|level| level.errors).sum();
    println!("  0 errors: {errors} errors: {}", verdict(errors == 0));
    match (rss_warm, rss_after) {
        (Some(warm), Some(after)) => {
            let change = (after as f64 - warm as f64) / warm as f64;
            println!(
                "  RSS after the run within 10% of RSS after warm-up: {:+.1}%: {}",
                100.0 * change,
                verdict(change.abs() <= 0.10)
            );
        }
        _ => println!("  RSS: not measured (no server process id)"),
    }
    Ok(())
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

/// `/proc/<pid>/status`'s `field` in KiB.
fn memory(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// sentence-transformers' encode() on the load test's first sentences: sentences/s.
fn anchor(model: &Path, seconds: f64) -> Result<f64> {
    let root = workspace_root();
    let python =
        crate::fixtures::ensure_venv(&cache_dir(), &root.join("xtask/python/requirements.txt"))?;
    let mut sentences = Vec::new();
    let mut index = 0;
    while sentences.len() < ANCHOR_SENTENCES {
        sentences.extend(request_sentences(index));
        index += 1;
    }
    let file = std::env::temp_dir().join(format!("oxformer-loadtest-{}.json", std::process::id()));
    std::fs::write(&file, serde_json::to_string(&sentences)?)
        .with_context(|| format!("writing {}", file.display()))?;
    eprintln!(
        "loadtest: anchor: sentence-transformers encode(), batch 32, 2 threads, {} sentences, {seconds} s",
        sentences.len()
    );
    let output = Command::new(&python)
        .arg(root.join("xtask/python/loadtest_anchor.py"))
        .arg(model)
        .arg(&file)
        .arg(seconds.to_string())
        .env("OMP_NUM_THREADS", "2")
        .env("MKL_NUM_THREADS", "2")
        .env("TOKENIZERS_PARALLELISM", "false")
        .output()
        .context("could not start the anchor's python")?;
    let _ = std::fs::remove_file(&file);
    if !output.status.success() {
        bail!(
            "the anchor failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let line = String::from_utf8_lossy(&output.stdout);
    let result: Value = serde_json::from_str(line.trim().lines().last().unwrap_or_default())
        .context("the anchor's output")?;
    result["sentences_per_second"]
        .as_f64()
        .context("the anchor's sentences_per_second")
}

/// `cargo build --profile test-release -p oxformer-cli`: the binary's path.
fn build_cli() -> Result<PathBuf> {
    let root = workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    eprintln!("loadtest: building the CLI (profile test-release)");
    let status = Command::new(cargo)
        .current_dir(&root)
        .args(["build", "--profile", "test-release", "-p", "oxformer-cli"])
        .status()
        .context("could not start cargo build")?;
    if !status.success() {
        bail!("cargo build failed with {status}");
    }
    Ok(root.join("target/test-release/oxformer"))
}

struct Server {
    child: Child,
    url: String,
}

/// `oxformer serve` on a free loopback port, once `/health` answers 200.
fn start_server(binary: &Path, model: &Path, max_concurrent_inputs: usize) -> Result<Server> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let url = format!("http://127.0.0.1:{port}");
    let mut child = Command::new(binary)
        .arg("serve")
        .arg("--model")
        .arg(model)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args([
            "--max-concurrent-requests",
            &max_concurrent_inputs.to_string(),
        ])
        .spawn()
        .with_context(|| format!("could not start {} serve", binary.display()))?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("oxformer serve exited with {status} before it was ready");
        }
        let ready = agent
            .get(&format!("{url}/health"))
            .call()
            .is_ok_and(|response| response.status().as_u16() == 200);
        if ready {
            eprintln!(
                "loadtest: oxformer serve --max-concurrent-requests {max_concurrent_inputs} ready \
                 at {url} after {:.2} s",
                started.elapsed().as_secs_f64()
            );
            return Ok(Server { child, url });
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            bail!("oxformer serve was not ready after 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Server {
    /// SIGTERM (a graceful drain), then SIGKILL after 30 s.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(status)) = self.child.try_wait() {
                eprintln!("loadtest: oxformer serve stopped ({status})");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("loadtest: oxformer serve did not stop 30 s after SIGTERM; killed");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A stand-in of `POST /embed` and `GET /health` on 127.0.0.1: one 384-zero vector per input,
/// for checking the load generator where no server is at hand. With `fail_every` n > 0, every
/// n-th request answers 503.
pub mod stand_in {
    use super::*;

    pub fn start() -> Result<String> {
        start_failing(0)
    }

    pub fn start_failing(fail_every: u64) -> Result<String> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}", listener.local_addr()?);
        let count = std::sync::Arc::new(AtomicU64::new(0));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let count = std::sync::Arc::clone(&count);
                std::thread::spawn(move || serve(stream, &count, fail_every));
            }
        });
        Ok(url)
    }

    fn serve(stream: TcpStream, count: &AtomicU64, fail_every: u64) {
        let _ = stream.set_nodelay(true);
        let Ok(clone) = stream.try_clone() else {
            return;
        };
        let mut reader = BufReader::new(clone);
        let mut stream = stream;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let mut length = 0usize;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 {
                    return;
                }
                let header = header.trim_end();
                if header.is_empty() {
                    break;
                }
                if let Some((name, value)) = header.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; length];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("/");
            let (status, answer) = match path {
                "/health" => ("200 OK", String::new()),
                "/embed" => {
                    let number = count.fetch_add(1, Ordering::Relaxed) + 1;
                    let inputs = serde_json::from_slice::<Value>(&body)
                        .ok()
                        .map(|request| match &request["inputs"] {
                            Value::Array(inputs) => inputs.len(),
                            Value::String(_) => 1,
                            _ => 0,
                        })
                        .unwrap_or(0);
                    if fail_every > 0 && number.is_multiple_of(fail_every) {
                        (
                            "503 Service Unavailable",
                            "{\"error\":\"stand-in\"}".to_string(),
                        )
                    } else {
                        let vector = format!("[{}]", vec!["0.0"; 384].join(","));
                        ("200 OK", format!("[{}]", vec![vector; inputs].join(",")))
                    }
                }
                _ => ("404 Not Found", String::new()),
            };
            // One write: a head and a body in two small writes would wait on Nagle's algorithm.
            let message = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
                answer.len()
            );
            if stream.write_all(message.as_bytes()).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_deterministic_and_hold_one_to_eight_sentences() {
        let mut sizes = std::collections::BTreeSet::new();
        for index in 0..500 {
            let sentences = request_sentences(index);
            assert_eq!(sentences, request_sentences(index));
            assert!((1..=8).contains(&sentences.len()));
            sizes.insert(sentences.len());
        }
        assert_eq!(sizes.len(), 8, "every size from 1 to 8 occurs");
        assert_ne!(request_sentences(0), request_sentences(1));
    }

    #[test]
    fn the_load_generator_counts_requests_sentences_and_errors() {
        let url = stand_in::start().unwrap();
        let level = drive(&url, 4, 30.0, 0, 200);
        assert_eq!(level.requests, 200, "bounded by the request count");
        assert_eq!(level.errors, 0, "{:?}", level.first_error);
        let expected: u64 = (0..200)
            .map(|index| request_sentences(index).len() as u64)
            .sum();
        assert_eq!(level.sentences, expected);
        assert_eq!(level.latencies.len(), 200);
        assert!(level.percentile(0.5) <= level.percentile(0.99));

        let failing = stand_in::start_failing(5).unwrap();
        let level = drive(&failing, 3, 30.0, 0, 100);
        assert_eq!(level.requests, 100);
        assert_eq!(level.errors, 20);
        assert!(level.first_error.unwrap().contains("503"));
    }

    #[test]
    fn the_run_is_bounded_in_time() {
        let url = stand_in::start().unwrap();
        let started = Instant::now();
        let level = drive(&url, 2, 0.3, 0, u64::MAX / 2);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(level.requests > 0 && level.errors == 0);
    }
}
