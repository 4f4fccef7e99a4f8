//! `ArgmaxScreen` against the f32 product it stands in for: the same index, bit for bit the same
//! scores for the rows it recomputes, on random heads and on heads built to tie.

mod common;

use common::{available_isas, available_paths, on_threads, random};
use oxformer_tensor::ndarray::{Array1, Array2, Axis};
use oxformer_tensor::{
    ArgmaxScreen, Epilogue, GemmPath, Isa, PackedMatrix, argmax_reference, matmul_packed_into_on,
    team,
};

/// The first largest score, as `torch.argmax` (and greedy decoding) picks it.
fn first_largest(scores: &[f32]) -> usize {
    let mut best = 0;
    for (j, &score) in scores.iter().enumerate() {
        if score > scores[best] {
            best = j;
        }
    }
    best
}

/// The scores by the GEMM on `path`, as the language-model head computes them.
fn product_scores(path: GemmPath, x: &Array1<f32>, weight: &Array2<f32>) -> Vec<f32> {
    let packed = PackedMatrix::from_linear_weight(weight.view());
    let mut out = Array2::<f32>::zeros((1, weight.nrows()));
    let x = x.view().insert_axis(Axis(0));
    matmul_packed_into_on(path, x, &packed, &Epilogue::none(), out.view_mut());
    out.into_raw_vec_and_offset().0
}

/// Heads to screen: random ones of awkward widths and ones whose rows tie or nearly tie.
fn heads() -> Vec<(String, Array2<f32>)> {
    let mut heads = Vec::new();
    for (n, k, seed) in [
        (1, 1, 1),
        (7, 63, 2),
        (129, 65, 3),
        (3001, 768, 4),
        (50, 3072, 5),
    ] {
        heads.push((format!("random {n}x{k}"), random((n, k), seed) * 0.05));
    }
    // every row the same: every score ties, the first row must win
    let row = random((1, 96), 6);
    heads.push((
        "identical rows".to_string(),
        Array2::from_shape_fn((300, 96), |(_, p)| row[[0, p]]),
    ));
    // rows one f32 step apart in one weight: estimates cannot tell them apart, the f32 pass must
    let mut near = Array2::from_shape_fn((257, 96), |(_, p)| row[[0, p]]);
    for (j, mut target) in near.rows_mut().into_iter().enumerate() {
        let w = target[5];
        target[5] = f32::from_bits(w.to_bits().wrapping_add((j % 9) as u32));
    }
    heads.push(("rows one ulp apart".to_string(), near));
    // rows with one weight far larger than the rest: a coarse step for the row's other weights
    let mut spiky = random((2000, 256), 9) * 0.05;
    for (j, mut target) in spiky.rows_mut().into_iter().enumerate() {
        target[j % 256] = if j % 2 == 0 { 4.0 } else { -4.0 };
    }
    heads.push(("rows with outlier weights".to_string(), spiky));
    heads
}

/// Inputs for a head of K columns: random ones at several magnitudes, and ones with a few
/// outlier features (as a language model's final hidden states have).
fn inputs(k: usize) -> Vec<Vec<f32>> {
    let mut inputs = Vec::new();
    for seed in 0..6u64 {
        let x = random(k, 100 + seed) * (1.0 + seed as f32 * 10.0);
        inputs.push(x.to_vec());
    }
    for seed in 0..3u64 {
        let mut x = random(k, 200 + seed).to_vec();
        for p in (0..k).step_by(97) {
            x[p] *= 300.0;
        }
        inputs.push(x);
    }
    inputs
}

#[test]
fn picks_the_first_largest_score_of_the_f32_product() {
    let paths = available_paths("screen");
    let isas = available_isas("screen");
    let mut screened = 0;
    for (name, weight) in heads() {
        let screen = ArgmaxScreen::from_linear_weight(weight.view()).expect("finite weights");
        for (seed, x) in inputs(weight.ncols()).iter().enumerate() {
            let x = x.as_slice();
            let expected = argmax_reference(x, weight.view()).expect("rows");
            // the screen's f32 recheck is the GEMM's arithmetic on every SIMD path, bit for bit
            for &path in &paths {
                if matches!(path, GemmPath::Avx512 | GemmPath::Avx2) {
                    let scores = product_scores(path, &Array1::from(x.to_vec()), &weight);
                    for (j, row) in weight.rows().into_iter().enumerate() {
                        let definition = row
                            .iter()
                            .zip(x)
                            .fold(0.0f32, |acc, (&w, &v)| v.mul_add(w, acc));
                        assert_eq!(
                            scores[j].to_bits(),
                            definition.to_bits(),
                            "{name}, seed {seed}, {path:?}: row {j} {} vs {definition}",
                            scores[j]
                        );
                    }
                    assert_eq!(first_largest(&scores), expected, "{name}, seed {seed}");
                }
            }
            // every instruction set this CPU has: AVX-512 and AVX2 answer, scalar declines
            for &isa in &isas {
                match screen.argmax_counted_on(isa, x, weight.view()) {
                    Some(screened_answer) => {
                        screened += 1;
                        assert_ne!(isa, Isa::Scalar, "{name}: the scalar path has no screen");
                        assert_eq!(
                            screened_answer.index, expected,
                            "{name}, seed {seed}, {isa}"
                        );
                    }
                    None => assert_eq!(isa, Isa::Scalar, "{name}, seed {seed}: {isa} undecided"),
                }
            }
        }
    }
    if isas.iter().all(|&isa| isa == Isa::Scalar) {
        println!(
            "screen: no SIMD instruction set on this CPU; only the scalar path's refusal checked"
        );
    } else {
        assert!(screened > 0);
    }
}

#[test]
fn declines_what_it_cannot_bound() {
    let mut weight = random((40, 16), 7);
    let screen = ArgmaxScreen::from_linear_weight(weight.view()).expect("finite weights");
    let isas: Vec<Isa> = available_isas("screen declines")
        .into_iter()
        .filter(|&isa| isa != Isa::Scalar)
        .collect();
    if isas.is_empty() {
        println!("screen declines: skipped (no SIMD instruction set on this CPU)");
    }
    for isa in isas {
        let mut x = random(16, 8);
        // decided while x is finite, so the declines below are the special values' doing
        assert!(
            screen
                .argmax_counted_on(isa, x.as_slice().unwrap(), weight.view())
                .is_some(),
            "{isa}: finite x"
        );
        for special in [f32::NAN, f32::INFINITY] {
            x[3] = special;
            assert_eq!(
                screen.argmax_counted_on(isa, x.as_slice().unwrap(), weight.view()),
                None,
                "{isa}: x with {special}"
            );
        }
    }
    weight[[2, 2]] = f32::NAN;
    assert!(ArgmaxScreen::from_linear_weight(weight.view()).is_none());
}

/// The bound must be tight enough to matter: on a random head of GPT-2's width, a few rows out of
/// thousands are recomputed, whatever the scale of `x` (a bound that let every row through would
/// still be exact, and useless).
#[test]
fn rechecks_few_rows_of_a_random_head() {
    let weight = random((20000, 768), 11) * 0.04;
    let screen = ArgmaxScreen::from_linear_weight(weight.view()).expect("finite weights");
    let isas: Vec<Isa> = available_isas("screen rechecks")
        .into_iter()
        .filter(|&isa| isa != Isa::Scalar)
        .collect();
    if isas.is_empty() {
        println!("screen rechecks: skipped (no SIMD instruction set on this CPU)");
    }
    let inputs = inputs(768);
    for (isa, (seed, x)) in isas
        .iter()
        .flat_map(|&isa| inputs.iter().enumerate().map(move |input| (isa, input)))
    {
        let screened = screen
            .argmax_counted_on(isa, x, weight.view())
            .expect("decided");
        assert_eq!(
            Some(screened.index),
            argmax_reference(x, weight.view()),
            "input {seed}, {isa}"
        );
        assert!(
            screened.rechecked < weight.nrows() / 50,
            "input {seed}, {isa}: {} rows of {} rechecked",
            screened.rechecked,
            weight.nrows()
        );
    }
}

/// Split over a team of threads ([`team`]), the screen gives the same answer and rechecks the
/// same rows as on one thread.
#[test]
fn a_team_screens_as_one_thread() {
    let weight = random((20000, 768), 12) * 0.04;
    let screen = ArgmaxScreen::from_linear_weight(weight.view()).expect("finite weights");
    let inputs = inputs(768);
    for isa in available_isas("screen team") {
        for (seed, x) in inputs.iter().enumerate() {
            let screen_on = || screen.argmax_counted_on(isa, x, weight.view());
            let one = on_threads(1, screen_on);
            for threads in [2, 3] {
                let teamed = on_threads(threads, || team(screen_on));
                assert_eq!(teamed, one, "input {seed}, {isa}, a team of {threads}");
            }
        }
    }
}
