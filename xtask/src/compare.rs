//! `cargo xtask compare [--json] [--quick] [--rounds N] [--seq2seq]`: oxformer beside PyTorch and ONNX Runtime on
//! the same models and shapes, on 2 threads, alternating, in one run.
//!
//! 1. The Python side: the fixtures venv (`<cache>/pyenv`, `xtask/python/requirements.txt`) plus the
//!    peers of `xtask/python/requirements-compare.txt` (onnxruntime, onnx), installed when that file
//!    changed (stamp `oxformer-compare.sha256` in the venv).
//! 2. `xtask/python/compare.py build`: random-weight BERT-base, DistilBERT-base, GPT-2-small folders
//!    in `<cache>/compare-models/` (cached) and the encoders' ONNX exports; ONNX Runtime runs the
//!    graphs fused by its transformer optimizer (attention, skip + LayerNorm, bias + GELU).
//! 3. `cargo build --release -p oxformer-cli`, then for every case and round, each runner in turn
//!    (the starting runner rotates from round to round): `oxformer bench ... --json` as a fresh
//!    process, PyTorch and ONNX Runtime as two long-lived `compare.py serve` processes that keep
//!    their models loaded (Python's imports are paid once, not per round).
//! 4. Every runner's times from all rounds are pooled; the table shows their medians and the
//!    latency ratios oxformer ÷ peer (below 1: oxformer is faster).
//! 5. Load time and peak RSS (VmHWM) of a BERT-base folder, oxformer against a fresh Python
//!    process, and the cold start of a text classification from the shell, `oxformer
//!    text-classification` against a `pipeline()` script, timed from spawn to exit.
//!
//! 6. Encoder-decoder generation (issue 13): random-weight t5-small and opus-mt-en-de, a 64-token
//!    input and exactly 64 new tokens, greedy and 4 beams, batch 1 and 8, against PyTorch's
//!    `generate()` and CTranslate2 (float32, converted by `TransformersConverter`), in a table of
//!    their own; with `--json` each row carries `model`, `batch`, `num_beams`, `new_tokens`,
//!    `oxformer_tokens_per_s`, `torch_tokens_per_s` and `ct2_tokens_per_s` (new tokens of all inputs
//!    per second).
//!
//! `--seq2seq` runs only part 6 (and builds only its models): the encoder-decoder rows alone.
//!
//! A runner that cannot run a case (an oxformer part not written yet, an unsupported option) gives
//! "n/a (reason)" in its cell instead of stopping the comparison.

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use oxformer_tensor::Isa;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::paths::{cache_dir, workspace_root};
use crate::{fetch, fixtures};

const USAGE: &str = "usage: cargo xtask compare [--json] [--quick] [--rounds N] [--seq2seq]

  --json      one JSON object per case per line instead of the table
  --quick     one round, fewer iterations (a smoke test, not a measurement)
  --rounds N  rounds of alternation (default 3)
  --seq2seq   only the encoder-decoder rows (t5-small, opus-mt-en-de against PyTorch and CTranslate2)";

/// Threads given to every runner.
const THREADS: usize = 2;
/// Prompt length before greedy decoding, for oxformer and PyTorch alike.
const PROMPT_TOKENS: usize = 8;
/// Pause between two runners so that the previous one's spinning worker threads go to sleep.
const SETTLE: Duration = Duration::from_millis(200);
/// The text classified in the cold-start case.
const COLD_START_TEXT: &str = "oxformer starts before Python has imported torch.";

/// Who runs a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Runner {
    Oxformer,
    PyTorch,
    OnnxRuntime,
    CTranslate2,
}

impl Runner {
    fn key(self) -> &'static str {
        match self {
            Runner::Oxformer => "oxformer",
            Runner::PyTorch => "pytorch",
            Runner::OnnxRuntime => "onnxruntime",
            Runner::CTranslate2 => "ctranslate2",
        }
    }
}

/// What a case runs.
#[derive(Debug, Clone, PartialEq)]
enum Workload {
    /// One forward pass of an encoder; `lengths` makes a right-padded batch of mixed lengths.
    Encoder {
        batch: usize,
        seq: usize,
        lengths: Option<Vec<usize>>,
    },
    /// Greedy decoding of `new_tokens` after a prompt of `PROMPT_TOKENS` random ids.
    Generate { new_tokens: usize },
    /// Encoder-decoder generation: `batch` inputs of `SEQ2SEQ_INPUT_TOKENS` random ids, exactly
    /// `new_tokens` new tokens each, greedy (`num_beams` 1) or beam search.
    Seq2Seq {
        batch: usize,
        num_beams: usize,
        new_tokens: usize,
    },
}

/// Source length of the encoder-decoder cases.
const SEQ2SEQ_INPUT_TOKENS: usize = 64;

/// The encoder-decoder cases (issue 13): t5-small and opus-mt-en-de, 64 → 64 tokens, greedy and 4
/// beams, batch 1 and 8.
fn seq2seq_cases(quick: bool) -> Vec<Case> {
    let mut cases = Vec::new();
    for model in ["t5-small", "opus-mt-en-de"] {
        for (batch, num_beams) in [(1, 1), (1, 4), (8, 1), (8, 4)] {
            let search = if num_beams == 1 {
                "greedy".to_string()
            } else {
                format!("beam {num_beams}")
            };
            cases.push(Case {
                name: format!("{model} {batch}x64 {search}"),
                model,
                workload: Workload::Seq2Seq {
                    batch,
                    num_beams,
                    new_tokens: 64,
                },
                runners: vec![Runner::Oxformer, Runner::PyTorch, Runner::CTranslate2],
                iterations: if quick { 1 } else { 2 },
                warmup: 1,
            });
        }
    }
    cases
}

/// One row of the table.
#[derive(Debug, Clone)]
struct Case {
    name: String,
    /// Folder name in `<cache>/compare-models/`.
    model: &'static str,
    workload: Workload,
    runners: Vec<Runner>,
    /// Timed runs per runner per round, after `warmup` untimed ones.
    iterations: usize,
    warmup: usize,
}

/// `count` sequence lengths spread evenly from `shortest` to `longest` (both included).
fn spread_lengths(count: usize, shortest: usize, longest: usize) -> Vec<usize> {
    if count <= 1 {
        return vec![longest; count];
    }
    (0..count)
        .map(|index| shortest + (longest - shortest) * index / (count - 1))
        .collect()
}

fn cases(quick: bool) -> Vec<Case> {
    let all = vec![Runner::Oxformer, Runner::PyTorch, Runner::OnnxRuntime];
    let encoder = |name: &str, model, batch, seq, lengths: Option<Vec<usize>>, iterations| Case {
        name: name.to_string(),
        model,
        workload: Workload::Encoder {
            batch,
            seq,
            lengths,
        },
        runners: all.clone(),
        iterations: if quick { 1 } else { iterations },
        warmup: 1,
    };
    vec![
        encoder("bert-base 1x128", "bert-base", 1, 128, None, 10),
        encoder("bert-base 8x128", "bert-base", 8, 128, None, 3),
        encoder("bert-base 1x512", "bert-base", 1, 512, None, 3),
        encoder(
            "bert-base 8 mixed 16..128",
            "bert-base",
            8,
            128,
            Some(spread_lengths(8, 16, 128)),
            5,
        ),
        encoder("distilbert-base 1x128", "distilbert-base", 1, 128, None, 10),
        Case {
            name: "gpt2-small greedy 64".to_string(),
            model: "gpt2-small",
            workload: Workload::Generate { new_tokens: 64 },
            runners: vec![Runner::Oxformer, Runner::PyTorch],
            iterations: if quick { 1 } else { 2 },
            warmup: 1,
        },
    ]
}

#[derive(Debug)]
struct Options {
    json: bool,
    quick: bool,
    rounds: usize,
    /// Only the encoder-decoder rows.
    seq2seq: bool,
}

fn parse_options(args: &[String]) -> Result<Options> {
    let mut options = Options {
        json: false,
        quick: false,
        rounds: 3,
        seq2seq: false,
    };
    let mut rounds_given = false;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--json" => options.json = true,
            "--quick" => options.quick = true,
            "--seq2seq" => options.seq2seq = true,
            "--rounds" => {
                let value = args.next().context("--rounds needs a number")?;
                options.rounds = value
                    .parse()
                    .ok()
                    .filter(|rounds| *rounds > 0)
                    .with_context(|| format!("--rounds: `{value}` is not a positive number"))?;
                rounds_given = true;
            }
            "-h" | "--help" => bail!("{USAGE}"),
            other => bail!("unknown option `{other}`\n\n{USAGE}"),
        }
    }
    if options.quick && !rounds_given {
        options.rounds = 1;
    }
    Ok(options)
}

pub fn run(args: &[String]) -> Result<()> {
    let options = parse_options(args)?;
    let root = workspace_root();
    let cache = cache_dir();
    // The tokenizers of the compare folders come from the fetched real models.
    fetch::fetch_all(&cache)?;
    let python = fixtures::ensure_venv(&cache, &root.join("xtask/python/requirements.txt"))?;
    ensure_compare_extras(&python, &root.join("xtask/python/requirements-compare.txt"))?;
    let script = root.join("xtask/python/compare.py");
    let models = cache.join("compare-models");
    let manifest = build_models(&python, &script, &cache, &models, options.seq2seq)?;
    let oxformer = build_oxformer(&root)?;
    let logs = cache.join("compare-logs");
    fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    note(
        &options,
        &format!(
            "oxformer: {}\npeers: {}\n{}\nrounds: {}{}; {THREADS} threads each; logs of the Python side in {}",
            oxformer.display(),
            versions_line(&manifest),
            isa_line(&manifest),
            options.rounds,
            if options.quick { " (quick)" } else { "" },
            logs.display()
        ),
    );

    let mut harness = Harness {
        oxformer,
        models: models.clone(),
        torch: PeerServer::start(&python, &script, "torch", &logs)?,
        ort: PeerServer::start(&python, &script, "ort", &logs)?,
        ct2: PeerServer::start(&python, &script, "ct2", &logs)?,
    };
    note(
        &options,
        &format!(
            "encoder-decoder peer: CTranslate2 {} (float32, {THREADS} intra-op threads)",
            manifest["ctranslate2"].as_str().unwrap_or("?")
        ),
    );
    note(
        &options,
        &format!("load average at the start: {}", load_average()),
    );
    let encoder_cases = if options.seq2seq {
        Vec::new()
    } else {
        cases(options.quick)
    };
    if !options.json && !encoder_cases.is_empty() {
        println!("{}", table_header());
    }
    for case in encoder_cases {
        let result = harness.run_case(&case, options.rounds);
        if options.json {
            println!("{}", result.to_json(&case, options.rounds));
        } else {
            println!("{}", result.table_row(&case));
        }
    }
    if !options.json {
        println!();
        println!("{}", seq2seq_table_header());
    }
    for case in seq2seq_cases(options.quick) {
        let result = harness.run_case(&case, options.rounds);
        if options.json {
            println!("{}", result.to_json(&case, options.rounds));
        } else {
            println!("{}", result.seq2seq_table_row(&case));
        }
    }
    harness.torch.stop();
    harness.ort.stop();
    harness.ct2.stop();
    if options.seq2seq {
        note(
            &options,
            &format!("load average at the end: {}", load_average()),
        );
        return Ok(());
    }

    let load = measure_load(&harness.oxformer, &python, &script, &models, &options)?;
    let cold = measure_cold_start(&harness.oxformer, &python, &script, &models, &options)?;
    if options.json {
        println!("{load}");
        println!("{cold}");
    } else {
        println!();
        print!("{}", load_table(&load));
        println!();
        print!("{}", cold_start_table(&cold));
        println!(
            "\nlatency ratios are oxformer ÷ peer on pooled medians (below 1: oxformer is faster); \
             the machine is shared, so compare ratios, not absolute times"
        );
    }
    note(
        &options,
        &format!("load average at the end: {}", load_average()),
    );
    Ok(())
}

/// The 1, 5 and 15 minute load averages (how busy the shared machine was), or "unknown".
fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| "unknown".to_string())
}

/// Human notes go to stderr with `--json` so that stdout stays one object per line.
fn note(options: &Options, text: &str) {
    if options.json {
        eprintln!("{text}");
    } else {
        println!("{text}\n");
    }
}

fn versions_line(manifest: &Value) -> String {
    let versions = &manifest["versions"];
    let checks = manifest["export_check"]
        .as_object()
        .map(|checks| {
            checks
                .iter()
                .map(|(name, diff)| format!("{name} {:.1e}", diff.as_f64().unwrap_or(f64::NAN)))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let (torch, transformers) = (
        versions["torch"].as_str().unwrap_or("?"),
        versions["transformers"].as_str().unwrap_or("?"),
    );
    if checks.is_empty() {
        // --seq2seq: no ONNX export was built
        return format!("torch {torch}, transformers {transformers}");
    }
    format!(
        "torch {torch}, transformers {transformers}, onnxruntime {} (ONNX opset {}, graph fused by \
         onnxruntime.transformers.optimizer, ORT_ENABLE_ALL; max |ONNX - PyTorch| on attended \
         positions: {checks})",
        versions["onnxruntime"].as_str().unwrap_or("?"),
        versions["opset"]
    )
}

// ---------------------------------------------------------------------------------------------
// Preparation: Python extras, model folders, the release binary.

/// Installs `requirements-compare.txt` into the venv when it changed since the last install.
fn ensure_compare_extras(python: &Path, requirements: &Path) -> Result<()> {
    let wanted: String = Sha256::digest(
        fs::read(requirements).with_context(|| format!("reading {}", requirements.display()))?,
    )
    .iter()
    .map(|byte| format!("{byte:02x}"))
    .collect();
    let venv = python
        .parent()
        .and_then(Path::parent)
        .context("the venv's python is not in <venv>/bin")?;
    let stamp = venv.join("oxformer-compare.sha256");
    if fs::read_to_string(&stamp).unwrap_or_default().trim() == wanted {
        return Ok(());
    }
    let status = Command::new(python)
        .args(["-m", "pip", "install", "--quiet", "-r"])
        .arg(requirements)
        .status()
        .with_context(|| format!("could not start {}", python.display()))?;
    if !status.success() {
        bail!(
            "pip install -r {} failed with {status}",
            requirements.display()
        );
    }
    fs::write(&stamp, format!("{wanted}\n"))
        .with_context(|| format!("writing {}", stamp.display()))?;
    Ok(())
}

/// The environment of every Python process: offline, no tokenizer threads of its own, and
/// PyTorch's instruction set capped as `OXFORMER_ISA` caps ours ([`torch_isa_caps`]).
fn python_command(python: &Path, script: &Path) -> Command {
    let mut command = Command::new(python);
    command
        .arg(script)
        .env("HF_HUB_OFFLINE", "1")
        .env("TRANSFORMERS_OFFLINE", "1")
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .env("TOKENIZERS_PARALLELISM", "false")
        .env("PYTHONWARNINGS", "ignore")
        .envs(torch_isa_caps());
    command
}

/// The variables that cap PyTorch (ATen's kernels, oneDNN, MKL) at the instruction set
/// `OXFORMER_ISA` caps ours at: none when it is unset or `avx512`.
fn torch_isa_caps() -> Vec<(&'static str, &'static str)> {
    match oxformer_tensor::isa() {
        _ if std::env::var_os("OXFORMER_ISA").is_none() => Vec::new(),
        Isa::Avx512 => Vec::new(),
        Isa::Avx2 => vec![
            ("ATEN_CPU_CAPABILITY", "avx2"),
            ("ONEDNN_MAX_CPU_ISA", "AVX2"),
            ("MKL_ENABLE_INSTRUCTIONS", "AVX2"),
        ],
        Isa::Scalar => vec![
            ("ATEN_CPU_CAPABILITY", "default"),
            ("ONEDNN_MAX_CPU_ISA", "SSE41"),
            ("MKL_ENABLE_INSTRUCTIONS", "SSE4_2"),
        ],
    }
}

/// The CPU and the instruction set each side runs, for the report's header.
fn isa_line(manifest: &Value) -> String {
    let caps = torch_isa_caps()
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "CPU: {}; oxformer: {} (OXFORMER_ISA={}); PyTorch: {} ({}); ONNX Runtime: uncapped (its own detection, no switch)",
        oxformer_tensor::cpu_model(),
        oxformer_tensor::isa(),
        std::env::var("OXFORMER_ISA").unwrap_or_else(|_| "unset".to_string()),
        manifest["torch_cpu_capability"].as_str().unwrap_or("?"),
        if caps.is_empty() {
            "uncapped".to_string()
        } else {
            caps
        }
    )
}

/// Runs `compare.py build` (cached folders are kept) and returns its manifest.
fn build_models(
    python: &Path,
    script: &Path,
    cache: &Path,
    models: &Path,
    seq2seq_only: bool,
) -> Result<Value> {
    let mut command = python_command(python, script);
    command
        .arg("build")
        .arg("--out")
        .arg(models)
        .arg("--cache")
        .arg(cache);
    if seq2seq_only {
        command.arg("--seq2seq-only");
    }
    let output = command
        .stderr(Stdio::inherit())
        .output()
        .context("could not start compare.py build")?;
    if !output.status.success() {
        bail!("compare.py build failed with {}", output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .context("compare.py build printed no manifest")?;
    serde_json::from_str(last).with_context(|| format!("compare.py build printed `{last}`"))
}

/// `cargo build --release -p oxformer-cli`; returns the binary's path as cargo reports it.
fn build_oxformer(root: &Path) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let output = Command::new(cargo)
        .current_dir(root)
        .args([
            "build",
            "--release",
            "-p",
            "oxformer-cli",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("could not start cargo build")?;
    if !output.status.success() {
        bail!("cargo build --release -p oxformer-cli failed");
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    for line in stdout.lines() {
        let Ok(message) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" || message["target"]["name"] != "oxformer" {
            continue;
        }
        if let Some(executable) = message["executable"].as_str() {
            return Ok(PathBuf::from(executable));
        }
    }
    bail!("cargo build did not report the `oxformer` executable")
}

// ---------------------------------------------------------------------------------------------
// Runners.

/// A `compare.py serve` process answering one JSON request per line.
struct PeerServer {
    framework: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    log: PathBuf,
}

impl PeerServer {
    fn start(python: &Path, script: &Path, framework: &'static str, logs: &Path) -> Result<Self> {
        let log = logs.join(format!("{framework}.log"));
        let log_file =
            fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut child = python_command(python, script)
            .args(["serve", "--framework", framework])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("could not start compare.py serve --framework {framework}"))?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().context("no stdout pipe")?);
        let mut server = PeerServer {
            framework,
            child,
            stdin,
            stdout,
            log,
        };
        let ready = server.read_reply()?;
        if ready["ok"] != true {
            bail!("compare.py serve --framework {framework} answered {ready}");
        }
        Ok(server)
    }

    fn read_reply(&mut self) -> Result<Value> {
        let mut line = String::new();
        let read = self.stdout.read_line(&mut line)?;
        if read == 0 {
            bail!(
                "compare.py serve --framework {} exited (see {})",
                self.framework,
                self.log.display()
            );
        }
        serde_json::from_str(&line)
            .with_context(|| format!("compare.py serve answered `{}`", line.trim()))
    }

    /// Sends one request; an `Err` is the reason to print as "n/a".
    fn request(&mut self, request: &Value) -> std::result::Result<Value, String> {
        let stdin = self.stdin.as_mut().ok_or("server stopped")?;
        writeln!(stdin, "{request}")
            .and_then(|()| stdin.flush())
            .map_err(|error| format!("{} server: {error}", self.framework))?;
        let reply = self.read_reply().map_err(|error| format!("{error:#}"))?;
        if reply["ok"] == true {
            Ok(reply)
        } else {
            Err(reply["error"].as_str().unwrap_or("failed").to_string())
        }
    }

    /// Closes stdin (the server's loop ends) and waits for it.
    fn stop(&mut self) {
        self.stdin = None;
        let _ = self.child.wait();
    }
}

impl Drop for PeerServer {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            self.stdin = None;
            let _ = self.child.wait();
        }
    }
}

struct Harness {
    oxformer: PathBuf,
    models: PathBuf,
    torch: PeerServer,
    ort: PeerServer,
    ct2: PeerServer,
}

/// The pooled timings of one runner over every round, or why it has none.
#[derive(Debug, Clone, Default)]
struct Timings {
    times_ms: Vec<f64>,
    /// Tokens one timed run processes (real tokens, padding excluded; new tokens for generation).
    tokens: f64,
    missing: Option<String>,
}

impl Timings {
    fn median_ms(&self) -> Option<f64> {
        if self.missing.is_some() {
            return None;
        }
        median(&self.times_ms)
    }

    fn tokens_per_s(&self) -> Option<f64> {
        self.median_ms().map(|ms| self.tokens / (ms / 1000.0))
    }
}

struct CaseResult {
    timings: Vec<(Runner, Timings)>,
}

impl Harness {
    fn run_case(&mut self, case: &Case, rounds: usize) -> CaseResult {
        let mut timings: Vec<(Runner, Timings)> = case
            .runners
            .iter()
            .map(|&runner| (runner, Timings::default()))
            .collect();
        for round in 0..rounds {
            // Rotate who goes first so that no runner always follows the same neighbour.
            for offset in 0..timings.len() {
                let slot = (round + offset) % timings.len();
                let (runner, pooled) = &mut timings[slot];
                if pooled.missing.is_some() {
                    continue;
                }
                match self.measure(*runner, case) {
                    Ok((times, tokens)) => {
                        pooled.times_ms.extend(times);
                        pooled.tokens = tokens;
                    }
                    Err(reason) => pooled.missing = Some(reason),
                }
                thread::sleep(SETTLE);
            }
        }
        CaseResult { timings }
    }

    /// One round of one runner: its timed runs (ms) and the tokens per run.
    fn measure(
        &mut self,
        runner: Runner,
        case: &Case,
    ) -> std::result::Result<(Vec<f64>, f64), String> {
        let folder = self.models.join(case.model);
        let reply = match runner {
            Runner::Oxformer => {
                let mut command = Command::new(&self.oxformer);
                command.arg("bench").arg("--model").arg(&folder);
                command.args(bench_args(case));
                run_json(&mut command)?
            }
            Runner::CTranslate2 => {
                let mut request = peer_request(case, &folder);
                request["ct2_model"] = json!(self.models.join("ct2").join(case.model));
                self.ct2.request(&request)?
            }
            Runner::PyTorch | Runner::OnnxRuntime => {
                let mut request = peer_request(case, &folder);
                let server = if runner == Runner::PyTorch {
                    &mut self.torch
                } else {
                    request["onnx"] = json!(
                        self.models
                            .join("onnx")
                            .join(format!("{}.fused.onnx", case.model))
                    );
                    &mut self.ort
                };
                server.request(&request)?
            }
        };
        let times = reply["times_ms"]
            .as_array()
            .map(|times| times.iter().filter_map(Value::as_f64).collect::<Vec<_>>())
            .filter(|times| !times.is_empty())
            .or_else(|| reply["median_ms"].as_f64().map(|median| vec![median]))
            .ok_or_else(|| format!("no times in {reply}"))?;
        let tokens = reply["tokens"]
            .as_f64()
            .or_else(|| reply["new_tokens"].as_f64())
            .unwrap_or_else(|| case_tokens(case));
        Ok((times, tokens))
    }
}

/// The flags of `oxformer bench` for a case.
fn bench_args(case: &Case) -> Vec<String> {
    let mut args = Vec::new();
    match &case.workload {
        Workload::Encoder {
            batch,
            seq,
            lengths,
        } => {
            args.extend(["--batch".to_string(), batch.to_string()]);
            args.extend(["--seq".to_string(), seq.to_string()]);
            if let Some(lengths) = lengths {
                args.push("--lengths".to_string());
                args.push(join(lengths));
            }
        }
        Workload::Generate { new_tokens } => {
            args.extend(["--generate".to_string(), new_tokens.to_string()]);
            args.extend(["--prompt-tokens".to_string(), PROMPT_TOKENS.to_string()]);
        }
        Workload::Seq2Seq {
            batch,
            num_beams,
            new_tokens,
        } => {
            args.extend(["--generate".to_string(), new_tokens.to_string()]);
            args.extend([
                "--prompt-tokens".to_string(),
                SEQ2SEQ_INPUT_TOKENS.to_string(),
            ]);
            args.extend(["--batch".to_string(), batch.to_string()]);
            args.extend(["--num-beams".to_string(), num_beams.to_string()]);
        }
    }
    args.extend(["--threads".to_string(), THREADS.to_string()]);
    args.extend(["--iterations".to_string(), case.iterations.to_string()]);
    args.extend(["--warmup".to_string(), case.warmup.to_string()]);
    args.push("--json".to_string());
    args
}

fn peer_request(case: &Case, folder: &Path) -> Value {
    match &case.workload {
        Workload::Encoder {
            batch,
            seq,
            lengths,
        } => json!({
            "op": "encoder",
            "model": folder,
            "batch": batch,
            "seq": seq,
            "lengths": lengths,
            "iterations": case.iterations,
            "warmup": case.warmup,
            "seed": 0,
        }),
        Workload::Generate { new_tokens } => json!({
            "op": "generate",
            "model": folder,
            "new_tokens": new_tokens,
            "prompt_tokens": PROMPT_TOKENS,
            "iterations": case.iterations,
            "warmup": case.warmup,
            "seed": 0,
        }),
        Workload::Seq2Seq {
            batch,
            num_beams,
            new_tokens,
        } => json!({
            "op": "seq2seq",
            "model": folder,
            "batch": batch,
            "num_beams": num_beams,
            "input_tokens": SEQ2SEQ_INPUT_TOKENS,
            "new_tokens": new_tokens,
            "iterations": case.iterations,
            "warmup": case.warmup,
            "seed": 0,
        }),
    }
}

/// Tokens one run of the case processes: real tokens of the batch, or new tokens.
fn case_tokens(case: &Case) -> f64 {
    match &case.workload {
        Workload::Encoder {
            lengths: Some(lengths),
            ..
        } => lengths.iter().sum::<usize>() as f64,
        Workload::Encoder { batch, seq, .. } => (batch * seq) as f64,
        Workload::Generate { new_tokens } => *new_tokens as f64,
        Workload::Seq2Seq {
            batch, new_tokens, ..
        } => (batch * new_tokens) as f64,
    }
}

fn join(values: &[usize]) -> String {
    values
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Runs a command that prints one JSON object; an `Err` is the reason to print as "n/a".
fn run_json(command: &mut Command) -> std::result::Result<Value, String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("could not start {:?}: {error}", command.get_program()))?;
    if !output.status.success() {
        return Err(failure_reason(&output.stderr, output.status));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .ok_or("printed nothing")?;
    serde_json::from_str(last).map_err(|_| format!("printed `{}`, not JSON", shorten(last)))
}

/// The last line of stderr, shortened, or the exit status.
fn failure_reason(stderr: &[u8], status: std::process::ExitStatus) -> String {
    let stderr = String::from_utf8_lossy(stderr);
    match stderr.lines().rev().find(|line| !line.trim().is_empty()) {
        Some(line) => shorten(line.trim()),
        None => format!("exited with {status}"),
    }
}

fn shorten(text: &str) -> String {
    const LIMIT: usize = 100;
    if text.chars().count() <= LIMIT {
        text.to_string()
    } else {
        let cut: String = text.chars().take(LIMIT).collect();
        format!("{cut}…")
    }
}

fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    })
}

// ---------------------------------------------------------------------------------------------
// Output of the timed cases.

const COLUMNS: [Runner; 3] = [Runner::Oxformer, Runner::PyTorch, Runner::OnnxRuntime];

const SEQ2SEQ_COLUMNS: [Runner; 3] = [Runner::Oxformer, Runner::PyTorch, Runner::CTranslate2];

fn seq2seq_table_header() -> String {
    format!(
        "{:<30} {:>26} {:>26} {:>26} {:>12} {:>12}\n{}",
        "encoder-decoder, 64 → 64 tokens",
        "oxformer",
        "PyTorch generate()",
        "CTranslate2 fp32",
        "PyTorch÷ox",
        "CT2÷ox",
        "-".repeat(138)
    )
}

fn table_header() -> String {
    format!(
        "{:<27} {:>26} {:>26} {:>26} {:>10} {:>10}\n{}",
        "case (median of pooled runs)",
        "oxformer",
        "PyTorch",
        "ONNX Runtime",
        "ox÷PyTorch",
        "ox÷ORT",
        "-".repeat(130)
    )
}

impl CaseResult {
    fn get(&self, runner: Runner) -> Option<&Timings> {
        self.timings
            .iter()
            .find(|(candidate, _)| *candidate == runner)
            .map(|(_, timings)| timings)
    }

    /// oxformer's median latency ÷ the peer's, when both ran.
    fn ratio(&self, peer: Runner) -> Option<f64> {
        let ours = self.get(Runner::Oxformer)?.median_ms()?;
        let theirs = self.get(peer)?.median_ms()?;
        Some(ours / theirs)
    }

    fn cell(&self, runner: Runner) -> String {
        match self.get(runner) {
            None => "-".to_string(),
            Some(Timings {
                missing: Some(reason),
                ..
            }) => format!("n/a ({reason})"),
            Some(timings) => match (timings.median_ms(), timings.tokens_per_s()) {
                (Some(ms), Some(rate)) => format!("{ms:.1} ms {rate:.1} tok/s"),
                _ => "n/a (no runs)".to_string(),
            },
        }
    }

    fn table_row(&self, case: &Case) -> String {
        let ratio = |peer| {
            self.ratio(peer)
                .map(|ratio| format!("{ratio:.2}×"))
                .unwrap_or_else(|| "-".to_string())
        };
        let mut row = format!("{:<27}", case.name);
        for runner in COLUMNS {
            let cell = self.cell(runner);
            // A long "n/a (reason)" keeps its full text; the other cells stay aligned.
            let _ = write!(row, " {cell:>26}");
        }
        let _ = write!(
            row,
            " {:>10} {:>10}",
            ratio(Runner::PyTorch),
            ratio(Runner::OnnxRuntime)
        );
        row
    }

    /// A row of the encoder-decoder table: tokens/s of each runner and oxformer's speed-ups
    /// (peer's latency ÷ oxformer's: above 1, oxformer is faster; the bar is ≥ 2× PyTorch and
    /// ≥ 1× CTranslate2).
    fn seq2seq_table_row(&self, case: &Case) -> String {
        let speedup = |peer| {
            self.ratio(peer)
                .map(|ratio| format!("{:.2}×", 1.0 / ratio))
                .unwrap_or_else(|| "-".to_string())
        };
        let mut row = format!("{:<30}", case.name);
        for runner in SEQ2SEQ_COLUMNS {
            let _ = write!(row, " {:>26}", self.cell(runner));
        }
        let _ = write!(
            row,
            " {:>12} {:>12}",
            speedup(Runner::PyTorch),
            speedup(Runner::CTranslate2)
        );
        row
    }

    fn to_json(&self, case: &Case, rounds: usize) -> Value {
        let mut object = json!({
            "case": case.name,
            "model": case.model,
            "threads": THREADS,
            "rounds": rounds,
            "iterations_per_round": case.iterations,
        });
        match &case.workload {
            Workload::Encoder {
                batch,
                seq,
                lengths,
            } => {
                object["batch"] = json!(batch);
                object["seq"] = json!(seq);
                object["lengths"] = json!(lengths);
            }
            Workload::Generate { new_tokens } => {
                object["new_tokens"] = json!(new_tokens);
                object["prompt_tokens"] = json!(PROMPT_TOKENS);
            }
            Workload::Seq2Seq {
                batch,
                num_beams,
                new_tokens,
            } => {
                object["batch"] = json!(batch);
                object["num_beams"] = json!(num_beams);
                object["new_tokens"] = json!(new_tokens);
                object["input_tokens"] = json!(SEQ2SEQ_INPUT_TOKENS);
                let rate = |runner| self.get(runner).and_then(Timings::tokens_per_s);
                object["oxformer_tokens_per_s"] = json!(rate(Runner::Oxformer));
                object["torch_tokens_per_s"] = json!(rate(Runner::PyTorch));
                object["ct2_tokens_per_s"] = json!(rate(Runner::CTranslate2));
            }
        }
        for (runner, timings) in &self.timings {
            object[runner.key()] = match &timings.missing {
                Some(reason) => json!({ "na": reason }),
                None => json!({
                    "median_ms": timings.median_ms(),
                    "tokens_per_s": timings.tokens_per_s(),
                    "runs": timings.times_ms.len(),
                }),
            };
        }
        for peer in [Runner::PyTorch, Runner::OnnxRuntime, Runner::CTranslate2] {
            if self.get(peer).is_some() {
                object[format!("ratio_oxformer_to_{}", peer.key())] = json!(self.ratio(peer));
            }
        }
        object
    }
}

// ---------------------------------------------------------------------------------------------
// Load time and peak RSS; cold start from the shell.

fn rounds_for_processes(options: &Options) -> usize {
    options.rounds.max(1)
}

/// BERT-base folder: oxformer's load (bench's `load_ms`, VmHWM after loading and at the end of one
/// 1x128 forward) against a fresh Python process doing the same with transformers.
fn measure_load(
    oxformer: &Path,
    python: &Path,
    script: &Path,
    models: &Path,
    options: &Options,
) -> Result<Value> {
    let folder = models.join("bert-base");
    let checkpoint_mb = fs::metadata(folder.join("model.safetensors"))
        .map(|meta| meta.len() as f64 / (1024.0 * 1024.0))
        .context("the bert-base folder has no model.safetensors")?;
    let mut ours: Vec<Value> = Vec::new();
    let mut theirs: Vec<Value> = Vec::new();
    let mut ours_missing = None;
    let mut theirs_missing = None;
    for _ in 0..rounds_for_processes(options) {
        if ours_missing.is_none() {
            let mut command = Command::new(oxformer);
            command
                .arg("bench")
                .arg("--model")
                .arg(&folder)
                .args(["--batch", "1", "--seq", "128", "--threads", "2"])
                .args(["--iterations", "1", "--warmup", "0", "--json"]);
            match run_json(&mut command) {
                Ok(reply) => ours.push(reply),
                Err(reason) => ours_missing = Some(reason),
            }
            thread::sleep(SETTLE);
        }
        if theirs_missing.is_none() {
            let mut command = python_command(python, script);
            command.arg("load").arg("--model").arg(&folder);
            match run_json(&mut command) {
                Ok(reply) => theirs.push(reply),
                Err(reason) => theirs_missing = Some(reason),
            }
            thread::sleep(SETTLE);
        }
    }
    let summary = |replies: &[Value], missing: Option<String>, keys: &[&str]| -> Value {
        if let Some(reason) = missing {
            return json!({ "na": reason });
        }
        let mut object = json!({});
        for key in keys {
            let values: Vec<f64> = replies.iter().filter_map(|r| r[*key].as_f64()).collect();
            object[*key] = json!(median(&values));
        }
        object
    };
    Ok(json!({
        "case": "bert-base load",
        "checkpoint_mb": checkpoint_mb,
        "runs": rounds_for_processes(options),
        "oxformer": summary(&ours, ours_missing, &["load_ms", "load_peak_rss_mb", "peak_rss_mb"]),
        "pytorch": summary(
            &theirs,
            theirs_missing,
            &["import_ms", "load_ms", "load_peak_rss_mb", "peak_rss_mb"],
        ),
    }))
}

fn load_table(load: &Value) -> String {
    let checkpoint = load["checkpoint_mb"].as_f64().unwrap_or(f64::NAN);
    let mut out = format!(
        "BERT-base load (checkpoint {checkpoint:.0} MiB; peak RSS = VmHWM; median of {} fresh processes)\n",
        load["runs"]
    );
    let _ = writeln!(
        out,
        "{:<12} {:>12} {:>12} {:>24} {:>24}",
        "runner", "import", "load", "peak RSS after load", "peak RSS after 1x128"
    );
    for (runner, label) in [("oxformer", "oxformer"), ("pytorch", "PyTorch")] {
        let entry = &load[runner];
        if let Some(reason) = entry["na"].as_str() {
            let _ = writeln!(out, "{label:<12} n/a ({reason})");
            continue;
        }
        let ms = |key: &str| {
            entry[key]
                .as_f64()
                .map(|value| format!("{value:.0} ms"))
                .unwrap_or_else(|| "-".to_string())
        };
        let rss = |key: &str| {
            entry[key]
                .as_f64()
                .map(|value| format!("{value:.0} MiB ({:.2}×)", value / checkpoint))
                .unwrap_or_else(|| "-".to_string())
        };
        let _ = writeln!(
            out,
            "{label:<12} {:>12} {:>12} {:>24} {:>24}",
            ms("import_ms"),
            ms("load_ms"),
            rss("load_peak_rss_mb"),
            rss("peak_rss_mb")
        );
    }
    out
}

/// Wall time from spawn to exit of the first text classification from the shell.
fn measure_cold_start(
    oxformer: &Path,
    python: &Path,
    script: &Path,
    models: &Path,
    options: &Options,
) -> Result<Value> {
    let folder = models.join("bert-base-seqcls");
    let mut ours: Vec<f64> = Vec::new();
    let mut theirs: Vec<f64> = Vec::new();
    let mut ours_missing = None;
    let mut theirs_missing = None;
    let mut labels = (None, None);
    for _ in 0..rounds_for_processes(options) {
        if ours_missing.is_none() {
            let mut command = Command::new(oxformer);
            command
                .arg("text-classification")
                .arg("--model")
                .arg(&folder)
                .arg("--json")
                .arg(COLD_START_TEXT);
            match timed_json(&mut command) {
                Ok((ms, reply)) => {
                    ours.push(ms);
                    labels.0 = first_label(&reply);
                }
                Err(reason) => ours_missing = Some(reason),
            }
            thread::sleep(SETTLE);
        }
        if theirs_missing.is_none() {
            let mut command = python_command(python, script);
            command
                .arg("pipeline")
                .arg("--model")
                .arg(&folder)
                .arg(COLD_START_TEXT);
            match timed_json(&mut command) {
                Ok((ms, reply)) => {
                    theirs.push(ms);
                    labels.1 = first_label(&reply);
                }
                Err(reason) => theirs_missing = Some(reason),
            }
            thread::sleep(SETTLE);
        }
    }
    let entry = |times: &[f64], missing: Option<String>, label: Option<String>| match missing {
        Some(reason) => json!({ "na": reason }),
        None => json!({ "median_ms": median(times), "runs": times.len(), "label": label }),
    };
    let ratio = match (median(&ours), median(&theirs)) {
        (Some(a), Some(b)) if ours_missing.is_none() && theirs_missing.is_none() => Some(a / b),
        _ => None,
    };
    Ok(json!({
        "case": "cli cold start text-classification",
        "oxformer": entry(&ours, ours_missing, labels.0),
        "pytorch": entry(&theirs, theirs_missing, labels.1),
        "ratio_oxformer_to_pytorch": ratio,
    }))
}

/// Runs a command to completion; its wall time in ms and the JSON of its last line.
fn timed_json(command: &mut Command) -> std::result::Result<(f64, Value), String> {
    let start = Instant::now();
    let reply = run_json(command)?;
    Ok((start.elapsed().as_secs_f64() * 1000.0, reply))
}

/// The `label` of a pipeline answer: an object, or the first object of a list.
fn first_label(reply: &Value) -> Option<String> {
    let object = match reply {
        Value::Array(items) => items.first()?,
        other => other,
    };
    object["label"].as_str().map(str::to_string)
}

fn cold_start_table(cold: &Value) -> String {
    let mut out = String::from(
        "Cold start to the first text-classification result (bert-base-seqcls, spawn to exit)\n",
    );
    for (runner, label) in [
        ("oxformer", "oxformer text-classification --json"),
        ("pytorch", "python: pipeline(\"text-classification\")"),
    ] {
        let entry = &cold[runner];
        match entry["na"].as_str() {
            Some(reason) => {
                let _ = writeln!(out, "{label:<42} n/a ({reason})");
            }
            None => {
                let _ = writeln!(
                    out,
                    "{label:<42} {:>9.0} ms  (label {})",
                    entry["median_ms"].as_f64().unwrap_or(f64::NAN),
                    entry["label"].as_str().unwrap_or("?")
                );
            }
        }
    }
    if let Some(ratio) = cold["ratio_oxformer_to_pytorch"].as_f64() {
        let _ = writeln!(out, "{:<42} {ratio:>9.3}×", "oxformer ÷ PyTorch");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_lengths_covers_both_ends_evenly() {
        assert_eq!(
            spread_lengths(8, 16, 128),
            vec![16, 32, 48, 64, 80, 96, 112, 128]
        );
        assert_eq!(spread_lengths(1, 16, 128), vec![128]);
        assert!(spread_lengths(0, 16, 128).is_empty());
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn options_parse_and_reject_unknown_flags() {
        let parse = |args: &[&str]| {
            parse_options(&args.iter().map(|arg| arg.to_string()).collect::<Vec<_>>())
        };
        let quick = parse(&["--quick", "--json"]).unwrap();
        assert!(quick.quick && quick.json);
        assert_eq!(quick.rounds, 1);
        assert_eq!(parse(&["--rounds", "5"]).unwrap().rounds, 5);
        assert_eq!(parse(&["--quick", "--rounds", "2"]).unwrap().rounds, 2);
        assert!(parse(&["--rounds", "0"]).is_err());
        assert!(parse(&["--rounds"]).is_err());
        assert!(parse(&["--fast"]).is_err());
        assert!(parse(&["--seq2seq"]).unwrap().seq2seq);
        assert!(!parse(&["--json"]).unwrap().seq2seq);
    }

    #[test]
    fn bench_flags_of_a_mixed_batch_and_of_generation() {
        let all = cases(false);
        let mixed = all.iter().find(|case| case.name.contains("mixed")).unwrap();
        let args = bench_args(mixed);
        let lengths = args.iter().position(|arg| arg == "--lengths").unwrap();
        assert_eq!(args[lengths + 1], "16,32,48,64,80,96,112,128");
        assert_eq!(case_tokens(mixed), 576.0);
        let generate = all.iter().find(|case| case.model == "gpt2-small").unwrap();
        let args = bench_args(generate);
        assert!(args.windows(2).any(|pair| pair == ["--generate", "64"]));
        assert_eq!(generate.runners, vec![Runner::Oxformer, Runner::PyTorch]);
    }

    #[test]
    fn a_missing_runner_prints_its_reason_and_no_ratio() {
        let case = &cases(true)[0];
        let result = CaseResult {
            timings: vec![
                (
                    Runner::Oxformer,
                    Timings {
                        missing: Some("`oxformer bench` is not written yet".to_string()),
                        ..Timings::default()
                    },
                ),
                (
                    Runner::PyTorch,
                    Timings {
                        times_ms: vec![100.0, 300.0, 200.0],
                        tokens: 128.0,
                        missing: None,
                    },
                ),
            ],
        };
        let row = result.table_row(case);
        assert!(row.contains("n/a (`oxformer bench` is not written yet)"));
        assert!(row.contains("200.0 ms 640.0 tok/s"));
        assert_eq!(result.ratio(Runner::PyTorch), None);
        let object = result.to_json(case, 1);
        assert_eq!(
            object["oxformer"]["na"],
            "`oxformer bench` is not written yet"
        );
        assert_eq!(object["pytorch"]["median_ms"], 200.0);
        assert_eq!(object["ratio_oxformer_to_pytorch"], Value::Null);
    }

    #[test]
    fn seq2seq_rows_carry_each_runners_rate() {
        let cases = seq2seq_cases(false);
        assert_eq!(cases.len(), 8);
        let case = cases
            .iter()
            .find(|case| case.name == "opus-mt-en-de 8x64 beam 4")
            .unwrap();
        let args = bench_args(case).join(" ");
        assert!(
            args.contains("--generate 64 --prompt-tokens 64 --batch 8 --num-beams 4"),
            "{args}"
        );
        assert_eq!(peer_request(case, Path::new("m"))["op"], "seq2seq");
        assert_eq!(case_tokens(case), 512.0);
        let timings = |ms: f64| Timings {
            times_ms: vec![ms],
            tokens: 512.0,
            missing: None,
        };
        let result = CaseResult {
            timings: vec![
                (Runner::Oxformer, timings(1000.0)),
                (Runner::PyTorch, timings(4000.0)),
                (Runner::CTranslate2, timings(2000.0)),
            ],
        };
        let object = result.to_json(case, 1);
        assert_eq!(object["model"], "opus-mt-en-de");
        assert_eq!(object["batch"], 8);
        assert_eq!(object["num_beams"], 4);
        assert_eq!(object["new_tokens"], 64);
        assert_eq!(object["oxformer_tokens_per_s"], 512.0);
        assert_eq!(object["torch_tokens_per_s"], 128.0);
        assert_eq!(object["ct2_tokens_per_s"], 256.0);
        let row = result.seq2seq_table_row(case);
        assert!(row.contains("4.00×") && row.contains("2.00×"), "{row}");
    }

    #[test]
    fn ratio_is_oxformer_latency_over_the_peers() {
        let timings = |times: Vec<f64>| Timings {
            times_ms: times,
            tokens: 128.0,
            missing: None,
        };
        let result = CaseResult {
            timings: vec![
                (Runner::Oxformer, timings(vec![50.0])),
                (Runner::PyTorch, timings(vec![100.0])),
                (Runner::OnnxRuntime, timings(vec![40.0])),
            ],
        };
        assert_eq!(result.ratio(Runner::PyTorch), Some(0.5));
        assert_eq!(result.ratio(Runner::OnnxRuntime), Some(1.25));
    }

    #[test]
    fn first_label_of_an_object_or_a_list() {
        assert_eq!(
            first_label(&json!([{"label": "POSITIVE", "score": 0.6}])),
            Some("POSITIVE".to_string())
        );
        assert_eq!(
            first_label(&json!({"label": "NEGATIVE", "score": 0.6})),
            Some("NEGATIVE".to_string())
        );
        assert_eq!(first_label(&json!([])), None);
    }
}
