//! Criterion's wall-clock measurement with the throughput read as a FLOP rate.
//!
//! criterion prints `Throughput::Elements` as "elem/s" and has no unit of its own for
//! floating-point operations; the GEMM and attention benches count 2 FLOPs per multiply-add, so
//! [`FlopTime`] times as criterion's `WallTime` does and prints that count per second as
//! `GFLOP/s` (the estimates criterion saves are the same times as with `WallTime`).

use std::time::{Duration, Instant};

use criterion::Throughput;
use criterion::measurement::{Measurement, ValueFormatter, WallTime};

/// `WallTime`, with `Throughput::Elements(n)` meaning n floating-point operations.
pub struct FlopTime;

impl Measurement for FlopTime {
    type Intermediate = Instant;
    type Value = Duration;

    fn start(&self) -> Instant {
        Instant::now()
    }

    fn end(&self, start: Instant) -> Duration {
        start.elapsed()
    }

    fn add(&self, left: &Duration, right: &Duration) -> Duration {
        *left + *right
    }

    fn zero(&self) -> Duration {
        Duration::ZERO
    }

    fn to_f64(&self, value: &Duration) -> f64 {
        // nanoseconds, as WallTime
        value.as_nanos() as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        &FlopFormatter
    }
}

struct FlopFormatter;

impl ValueFormatter for FlopFormatter {
    fn scale_values(&self, typical_value: f64, values: &mut [f64]) -> &'static str {
        WallTime.formatter().scale_values(typical_value, values)
    }

    fn scale_throughputs(
        &self,
        typical_value: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let Throughput::Elements(flops) = *throughput else {
            return WallTime
                .formatter()
                .scale_throughputs(typical_value, throughput, values);
        };
        // values are nanoseconds per iteration
        let typical_rate = flops as f64 * 1e9 / typical_value;
        let (scale, unit) = [
            (1e12, "TFLOP/s"),
            (1e9, "GFLOP/s"),
            (1e6, "MFLOP/s"),
            (1e3, "KFLOP/s"),
        ]
        .into_iter()
        .find(|(scale, _)| typical_rate >= *scale)
        .unwrap_or((1.0, "FLOP/s"));
        for value in values {
            *value = flops as f64 * 1e9 / *value / scale;
        }
        unit
    }

    fn scale_for_machines(&self, values: &mut [f64]) -> &'static str {
        WallTime.formatter().scale_for_machines(values)
    }
}
