//! Prometheus text with TEI's metric names (router/src/lib.rs and router/src/prometheus.rs):
//! request counters, duration histograms, queue size and the size of the next batch.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// A histogram with fixed upper bounds, rendered cumulatively.
#[derive(Debug)]
struct Histogram {
    bounds: Vec<f64>,
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: Vec<f64>) -> Self {
        let counts = vec![0; bounds.len()];
        Self {
            bounds,
            counts,
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, value: f64) {
        if let Some(index) = self.bounds.iter().position(|&bound| value <= bound) {
            self.counts[index] += 1;
        }
        self.sum += value;
        self.count += 1;
    }

    fn render(&self, name: &str, out: &mut String) {
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count;
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}

/// TEI's duration buckets (seconds): 35 of them, from 1.5e-5, each 1.5 times the last.
fn duration_buckets() -> Vec<f64> {
    let mut value = 0.00001;
    (0..35)
        .map(|_| {
            value *= 1.5;
            value
        })
        .collect()
}

/// Powers of two, 2^0 to 2^`top` (TEI: 2^12 for batch sizes, 2^20 for batch tokens).
fn power_buckets(top: i32) -> Vec<f64> {
    (0..=top).map(|power| 2f64.powi(power)).collect()
}

struct Histograms {
    duration: Histogram,
    tokenization: Histogram,
    queue: Histogram,
    inference: Histogram,
    batch_size: Histogram,
    batch_tokens: Histogram,
}

/// TEI's `method` label of `te_request_count` and `te_request_success`: whether the inputs
/// came as one or as a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Single,
    Batch,
}

impl Method {
    const ALL: [Method; 2] = [Method::Single, Method::Batch];

    fn label(self) -> &'static str {
        match self {
            Method::Single => "single",
            Method::Batch => "batch",
        }
    }
}

/// The server's counters.
pub struct Metrics {
    /// By [`Method`], in [`Method::ALL`]'s order.
    request_count: [AtomicU64; 2],
    request_success: [AtomicU64; 2],
    failures: Mutex<BTreeMap<&'static str, u64>>,
    panics: AtomicU64,
    queue_size: AtomicI64,
    histograms: Mutex<Histograms>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            request_count: Default::default(),
            request_success: Default::default(),
            failures: Mutex::new(BTreeMap::new()),
            panics: AtomicU64::new(0),
            queue_size: AtomicI64::new(0),
            histograms: Mutex::new(Histograms {
                duration: Histogram::new(duration_buckets()),
                tokenization: Histogram::new(duration_buckets()),
                queue: Histogram::new(duration_buckets()),
                inference: Histogram::new(duration_buckets()),
                batch_size: Histogram::new(power_buckets(12)),
                batch_tokens: Histogram::new(power_buckets(20)),
            }),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these locks leaves plain numbers behind: keep counting.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Metrics {
    /// A request reached an inference route.
    pub fn request(&self, method: Method) {
        self.request_count[method as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A request was answered, with its timings (as TEI's `ResponseMetadata::record_metrics`).
    pub fn success(
        &self,
        method: Method,
        total: Duration,
        tokenization: Duration,
        queue: Duration,
        inference: Duration,
    ) {
        self.request_success[method as usize].fetch_add(1, Ordering::Relaxed);
        let mut histograms = lock(&self.histograms);
        histograms.duration.observe(total.as_secs_f64());
        histograms.tokenization.observe(tokenization.as_secs_f64());
        histograms.queue.observe(queue.as_secs_f64());
        histograms.inference.observe(inference.as_secs_f64());
    }

    /// A request failed (`err`: TEI's label).
    pub fn failure(&self, err: &'static str) {
        *lock(&self.failures).entry(err).or_default() += 1;
    }

    /// A request panicked (also counted as a `backend` failure by its route).
    pub fn panic(&self) {
        self.panics.fetch_add(1, Ordering::Relaxed);
    }

    /// Panics caught so far.
    pub fn panics(&self) -> u64 {
        self.panics.load(Ordering::Relaxed)
    }

    /// Inputs entering (positive) or leaving (negative) the queue.
    pub fn queue(&self, inputs: i64) {
        self.queue_size.fetch_add(inputs, Ordering::Relaxed);
    }

    /// A batch of `inputs` inputs and `tokens` tokens left the queue.
    pub fn batch(&self, inputs: usize, tokens: usize) {
        let mut histograms = lock(&self.histograms);
        histograms.batch_size.observe(inputs as f64);
        histograms.batch_tokens.observe(tokens as f64);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, value: u64| {
            let _ = writeln!(out, "# TYPE {name} counter\n{name} {value}");
        };
        for (name, counts) in [
            ("te_request_count", &self.request_count),
            ("te_request_success", &self.request_success),
        ] {
            let _ = writeln!(out, "# TYPE {name} counter");
            for method in Method::ALL {
                let count = counts[method as usize].load(Ordering::Relaxed);
                let _ = writeln!(out, "{name}{{method=\"{}\"}} {count}", method.label());
            }
        }
        let _ = writeln!(out, "# TYPE te_request_failure counter");
        for (err, count) in lock(&self.failures).iter() {
            let _ = writeln!(out, "te_request_failure{{err=\"{err}\"}} {count}");
        }
        counter(&mut out, "oxformer_request_panic", self.panics());
        let _ = writeln!(
            out,
            "# TYPE te_queue_size gauge\nte_queue_size {}",
            self.queue_size.load(Ordering::Relaxed).max(0)
        );
        let histograms = lock(&self.histograms);
        histograms.duration.render("te_request_duration", &mut out);
        histograms
            .tokenization
            .render("te_request_tokenization_duration", &mut out);
        histograms
            .queue
            .render("te_request_queue_duration", &mut out);
        histograms
            .inference
            .render("te_request_inference_duration", &mut out);
        histograms.batch_size.render("te_batch_next_size", &mut out);
        histograms
            .batch_tokens
            .render("te_batch_next_tokens", &mut out);
        out
    }
}
