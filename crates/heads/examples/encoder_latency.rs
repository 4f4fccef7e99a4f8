//! Median latency of an encoder forward pass on random ids, for side-by-side comparisons.
//!
//! `cargo run --release -p oxformer-heads --example encoder_latency -- <model dir> [batch] [seq]
//! [threads] [runs] [lengths] [padding]`, where `lengths` (e.g. `16,40,128`) makes a right-padded
//! batch of those lengths instead of `batch` full rows, and `padding` = `computed` runs the padded
//! positions too (the default skips them).

use std::path::PathBuf;
use std::time::Instant;

use ndarray::Array2;
use oxformer_heads::{EncoderInput, EncoderModel, HeadKind};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = PathBuf::from(
        args.first()
            .ok_or("usage: encoder_latency <model dir> [batch] [seq] [threads] [runs] [lengths]")?,
    );
    let number = |index: usize, default: usize| {
        args.get(index)
            .map_or(Ok(default), |value| value.parse::<usize>())
    };
    let (batch, seq, threads, runs) = (
        number(1, 1)?,
        number(2, 128)?,
        number(3, 2)?,
        number(4, 15)?,
    );
    let lengths: Vec<usize> = match args.get(5) {
        Some(list) => list.split(',').map(str::parse).collect::<Result<_, _>>()?,
        None => vec![seq; batch],
    };
    let longest = lengths.iter().copied().max().unwrap_or(0);

    let start = Instant::now();
    let mut model = EncoderModel::from_folder_as(&dir, HeadKind::Base)?;
    let load_ms = start.elapsed().as_secs_f64() * 1e3;
    model.set_num_threads(threads)?;
    let compute_padding = args.get(6).is_some_and(|mode| mode == "computed");
    model.set_skip_padding(!compute_padding);

    // Deterministic pseudo-random ids in 1000..30000 (a linear congruential generator).
    let mut state = 12345u64;
    let mut next_id = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        1000 + ((state >> 33) % 29000) as u32
    };
    let mut ids = Array2::<u32>::zeros((lengths.len(), longest));
    let mut mask = Array2::<u32>::zeros((lengths.len(), longest));
    for (row, &length) in lengths.iter().enumerate() {
        for position in 0..length {
            ids[[row, position]] = next_id();
            mask[[row, position]] = 1;
        }
    }
    let input = EncoderInput::new(ids.view(), mask.view());
    for _ in 0..3 {
        model.forward(&input)?;
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        model.forward(&input)?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "oxformer lengths {lengths:?} threads {threads} padding {}: median {:.1} ms (min {:.1}), load {load_ms:.0} ms",
        if compute_padding {
            "computed"
        } else {
            "skipped"
        },
        times[times.len() / 2],
        times[0]
    );
    Ok(())
}
