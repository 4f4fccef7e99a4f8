//! The matrix product on every path this CPU has, against `gemm_reference`.

mod common;

use common::{assert_bit_identical, assert_close, available_paths, on_threads, random};
use oxformer_tensor::ndarray::{Array2, Array3, Axis, concatenate, s};
use oxformer_tensor::{
    Activation, Epilogue, GemmPath, Isa, PackedMatrix, RowNorm, Transpose, batched_matmul,
    gemm_path, gemm_reference, layer_norm_in_place_on, matmul, matmul_packed,
    matmul_packed_into_on, team,
};

/// Awkward shapes (M, K, N): empty, one, odd, around a vector and a panel, a 4096 × 4 × 4096
/// product, M = 1 against transformer widths, K beyond one KC block, and M beyond one row block
/// with K beyond one stretch of KC blocks (and a partial last panel and sliver); K long enough
/// that the AVX2 path, whose stretches are sized from L2, splits it too (up to 2 MiB of L2); and
/// the few rows (2 to 4) of the small-M kernel and just beyond, whole and partial strips.
const SHAPES: &[(usize, usize, usize)] = &[
    (0, 7, 7),
    (7, 0, 7),
    (7, 7, 0),
    (1, 1, 1),
    (7, 7, 7),
    (63, 63, 63),
    (65, 65, 65),
    (1, 63, 65),
    (1, 768, 2304),
    (1, 65, 1000),
    (2, 300, 33),
    (3, 300, 33),
    (4, 512, 1000),
    (4, 63, 65),
    (5, 65, 200),
    (8, 768, 2304),
    (9, 70, 130),
    (13, 600, 97),
    (25, 17, 250),
    (4096, 4, 4096),
    (200, 1000, 70),
    (400, 5000, 20),
];

fn tolerance(k: usize) -> f32 {
    2e-6 * (1.0 + (k as f32).sqrt())
}

/// The panel layouts of packed B (one per SIMD path's microkernel: 32 wide for AVX-512, 16 for
/// AVX2); every path runs on each, whatever this CPU has (packing needs no SIMD).
const LAYOUTS: [GemmPath; 2] = [GemmPath::Avx512, GemmPath::Avx2];

fn run(path: GemmPath, a: &Array2<f32>, b: &PackedMatrix, epilogue: &Epilogue<'_>) -> Array2<f32> {
    let mut out = Array2::<f32>::from_elem((a.nrows(), b.n()), f32::NAN);
    matmul_packed_into_on(path, a.view(), b, epilogue, out.view_mut());
    out
}

#[test]
fn every_path_matches_the_reference_on_awkward_shapes() {
    for path in available_paths("gemm") {
        for (index, &(m, k, n)) in SHAPES.iter().enumerate() {
            let a = random((m, k), 1 + index as u64);
            let b = random((k, n), 100 + index as u64);
            let expected = gemm_reference(a.view(), b.view(), &Epilogue::none());
            for layout in LAYOUTS {
                let packed = PackedMatrix::from_in_out_for(layout, b.view());
                let actual = run(path, &a, &packed, &Epilogue::none());
                assert_close(
                    &actual,
                    &expected,
                    tolerance(k),
                    &format!("{path:?} {m}×{k}×{n} packed for {layout:?}"),
                );
            }
        }
    }
}

#[test]
fn linear_layout_is_the_transpose() {
    // K = 70: packed value by value; K = 64 and 3072: by 8 × 8 tiles, with a partial last panel
    for (out, k, seed) in [(45, 70, 3), (77, 64, 5), (40, 3072, 6)] {
        let weight = random((out, k), seed); // [out, in]
        let x = random((9, k), seed + 1);
        let packed = PackedMatrix::from_linear_weight(weight.view());
        assert_eq!((packed.k(), packed.n()), (k, out));
        assert_eq!(packed.to_in_out(), weight.t(), "{out}x{k}");
        // a strided view packs to the same values
        let wide = random((out, 2 * k), seed + 2);
        let strided = wide.slice(s![.., ..;2]);
        let packed_strided = PackedMatrix::from_linear_weight(strided);
        assert_eq!(packed_strided.to_in_out(), strided.t(), "{out}x{k} strided");
        for path in available_paths("gemm linear layout") {
            let expected = gemm_reference(x.view(), weight.t(), &Epilogue::none());
            assert_close(
                &run(path, &x, &packed, &Epilogue::none()),
                &expected,
                tolerance(k),
                &format!("{path:?} {out}x{k}"),
            );
        }
    }
}

#[test]
fn linear_parts_pack_as_their_stack() {
    // whole panels before the last (packed part by part), then a part of 45 rows first (stacked)
    for sizes in [&[64usize, 32, 45][..], &[45, 64], &[32]] {
        let parts: Vec<_> = sizes
            .iter()
            .enumerate()
            .map(|(index, &rows)| random((rows, 96), 20 + index as u64))
            .collect();
        let views: Vec<_> = parts.iter().map(|part| part.view()).collect();
        let stacked = concatenate(Axis(0), &views).expect("same width");
        let packed = PackedMatrix::from_linear_weights(&views);
        assert_eq!((packed.k(), packed.n()), (96, stacked.nrows()), "{sizes:?}");
        assert_eq!(packed.to_in_out(), stacked.t(), "{sizes:?}");
    }
}

#[test]
fn fused_epilogue_matches_the_reference() {
    let activations = [
        Activation::Identity,
        Activation::Gelu,
        Activation::GeluTanh,
        Activation::Relu,
        Activation::Silu,
        Activation::Tanh,
    ];
    for path in available_paths("gemm epilogue") {
        for &(m, k, n) in &[
            (1, 70, 77),
            (4, 300, 77),
            (7, 65, 130),
            (29, 300, 70),
            (64, 768, 96),
        ] {
            let a = random((m, k), 5);
            let b = random((k, n), 6);
            let bias = random(n, 7).to_vec();
            let residual = random((m, n), 8);
            let packed = PackedMatrix::from_in_out(b.view());
            for activation in activations {
                let epilogue = Epilogue {
                    bias: Some(&bias),
                    activation,
                    residual: Some(residual.view()),
                    layer_norm: None,
                };
                let expected = gemm_reference(a.view(), b.view(), &epilogue);
                let actual = run(path, &a, &packed, &epilogue);
                assert_close(
                    &actual,
                    &expected,
                    tolerance(k),
                    &format!("{path:?} {activation:?} {m}×{k}×{n}"),
                );
            }
        }
    }
}

#[test]
fn strided_operands_and_output() {
    let a_storage = random((40, 30), 9);
    let a = a_storage.t(); // (30, 40), column-major
    let b = random((40, 50), 10);
    let residual_storage = random((50, 30), 11);
    let residual = residual_storage.t();
    let packed = PackedMatrix::from_in_out(b.view());
    let epilogue = Epilogue {
        bias: None,
        activation: Activation::Relu,
        residual: Some(residual),
        layer_norm: None,
    };
    let expected = gemm_reference(a, b.view(), &epilogue);
    for path in available_paths("gemm strided") {
        let mut storage = Array2::<f32>::zeros((50, 30));
        matmul_packed_into_on(
            path,
            a,
            &packed,
            &epilogue,
            storage.view_mut().reversed_axes(),
        );
        assert_close(
            &storage.t().to_owned(),
            &expected,
            tolerance(40),
            &format!("{path:?}"),
        );
    }
}

/// The LayerNorm epilogue gives, bit for bit, the product (with its residual) normalised in place
/// afterwards, on every path, thread count and team, over one row, one or many row blocks, and
/// more row blocks than the product counts; and the reference's norm within tolerance.
#[test]
fn layer_norm_epilogue_is_the_norm_of_the_finished_product() {
    for &(m, k, n) in &[
        (1, 300, 768),
        (4, 300, 768),
        (7, 33, 65),
        (128, 700, 768),
        (400, 256, 200),
        (50_000, 3, 40),
        // one row block, columns in several parts per thread
        (32, 64, 5000),
    ] {
        let a = random((m, k), 30);
        let b = random((k, n), 31);
        let bias = random(n, 32).to_vec();
        let residual = random((m, n), 33);
        let weight = random(n, 34).to_vec();
        let norm_bias = random(n, 35).to_vec();
        let packed = PackedMatrix::from_in_out(b.view());
        let epilogue = Epilogue {
            bias: Some(&bias),
            activation: Activation::Identity,
            residual: Some(residual.view()),
            layer_norm: None,
        };
        let normed = Epilogue {
            layer_norm: Some(RowNorm {
                weight: &weight,
                bias: &norm_bias,
                eps: 1e-12,
            }),
            ..epilogue
        };
        let mut expected = gemm_reference(a.view(), b.view(), &epilogue);
        layer_norm_in_place_on(
            Isa::Scalar,
            expected.view_mut(),
            None,
            &weight,
            &norm_bias,
            1e-12,
        );
        for path in available_paths("gemm layer norm") {
            let mut separate = run(path, &a, &packed, &epilogue);
            layer_norm_in_place_on(
                path.isa(),
                separate.view_mut(),
                None,
                &weight,
                &norm_bias,
                1e-12,
            );
            assert_close(&separate, &expected, 1e-4, &format!("{path:?} {m}×{k}×{n}"));
            for threads in [1, 2, 3] {
                let what = format!("{path:?} {m}×{k}×{n} {threads} threads");
                let fused = on_threads(threads, || run(path, &a, &packed, &normed));
                assert_bit_identical(&fused, &separate, &what);
                let teamed = on_threads(threads, || team(|| run(path, &a, &packed, &normed)));
                assert_bit_identical(&teamed, &separate, &format!("{what}, a team"));
            }
        }
    }
}

#[test]
fn nan_and_infinity_propagate_as_in_the_reference() {
    let mut a = random((9, 40), 12);
    let mut b = random((40, 37), 13);
    a[[2, 5]] = f32::NAN;
    a[[4, 7]] = f32::INFINITY;
    a[[6, 1]] = f32::NEG_INFINITY;
    b[[3, 30]] = f32::INFINITY;
    b[[9, 2]] = f32::NAN;
    let packed = PackedMatrix::from_in_out(b.view());
    let expected = gemm_reference(a.view(), b.view(), &Epilogue::none());
    assert!(expected.iter().any(|v| v.is_nan()) && expected.iter().any(|v| v.is_infinite()));
    for path in available_paths("gemm nan") {
        for rows in [1, 9] {
            let a = a.slice(s![..rows, ..]).to_owned();
            let expected = expected.slice(s![..rows, ..]).to_owned();
            assert_close(
                &run(path, &a, &packed, &Epilogue::none()),
                &expected,
                tolerance(40),
                &format!("{path:?} rows {rows}"),
            );
        }
    }
}

#[test]
fn bit_identical_for_any_thread_count() {
    for path in available_paths("gemm threads") {
        for &(m, k, n) in &[
            (1, 768, 3072),
            (128, 700, 768),
            (37, 1000, 200),
            (400, 800, 300),
            // one row block, wide: several column parts per thread (a decoding step's LM head)
            (32, 300, 9001),
        ] {
            let a = random((m, k), 14);
            let b = random((k, n), 15);
            let bias = random(n, 16).to_vec();
            let epilogue = Epilogue {
                bias: Some(&bias),
                activation: Activation::Gelu,
                residual: None,
                layer_norm: None,
            };
            // the panel layout changes where B's values lie, never a result
            let one = on_threads(1, || {
                run(path, &a, &PackedMatrix::from_in_out(b.view()), &epilogue)
            });
            for layout in LAYOUTS {
                let packed = PackedMatrix::from_in_out_for(layout, b.view());
                for threads in [1, 2, 3] {
                    let many = on_threads(threads, || run(path, &a, &packed, &epilogue));
                    assert_bit_identical(
                        &many,
                        &one,
                        &format!("{path:?} {m}×{k}×{n} {threads} threads, packed for {layout:?}"),
                    );
                    let teamed = on_threads(threads, || team(|| run(path, &a, &packed, &epilogue)));
                    assert_bit_identical(
                        &teamed,
                        &one,
                        &format!("{path:?} {m}×{k}×{n} a team of {threads}, packed for {layout:?}"),
                    );
                }
            }
        }
    }
}

#[test]
fn a_few_rows_are_bit_identical_to_the_same_rows_of_a_larger_product() {
    let a = random((20, 900), 17);
    let b = random((900, 130), 18);
    for (path, layout) in available_paths("gemm single row")
        .into_iter()
        .flat_map(|path| LAYOUTS.map(|layout| (path, layout)))
    {
        if matches!(path, GemmPath::Portable | GemmPath::Reference) {
            continue;
        }
        let packed = PackedMatrix::from_in_out_for(layout, b.view());
        let all = run(path, &a, &packed, &Epilogue::none());
        // one row (matrix-vector), and the few rows of the small-M kernel
        for (row, rows) in [
            (0, 1),
            (13, 1),
            (19, 1),
            (3, 2),
            (5, 3),
            (11, 4),
            (2, 5),
            (12, 8),
        ] {
            let few = run(
                path,
                &a.slice(s![row..row + rows, ..]).to_owned(),
                &packed,
                &Epilogue::none(),
            );
            assert_bit_identical(
                &few,
                &all.slice(s![row..row + rows, ..]).to_owned(),
                &format!("{path:?} rows {row}..{}, packed for {layout:?}", row + rows),
            );
        }
    }
}

#[test]
fn plain_and_batched_products() {
    // `matmul`, `matmul_packed` and `batched_matmul` take the process's path (no `_on` variant):
    // a child process per path, forced by OXFORMER_GEMM_PATH, runs them
    if let Ok(name) = std::env::var("OXFORMER_TEST_PATH") {
        assert_eq!(format!("{:?}", gemm_path()).to_lowercase(), name);
        plain_and_batched_case();
        return;
    }
    let executable = std::env::current_exe().expect("test executable");
    for path in available_paths("gemm plain and batched") {
        let name = format!("{path:?}").to_lowercase();
        let output = std::process::Command::new(&executable)
            .args([
                "--exact",
                "plain_and_batched_products",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("OXFORMER_GEMM_PATH", &name)
            .env("OXFORMER_TEST_PATH", &name)
            .env_remove("OXFORMER_ISA")
            .output()
            .expect("run the test executable");
        assert!(
            output.status.success(),
            "{path:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

fn plain_and_batched_case() {
    let a = random((17, 33), 19);
    let b = random((33, 45), 20);
    let expected = gemm_reference(a.view(), b.view(), &Epilogue::none());
    assert_close(
        &matmul(a.view(), b.view()),
        &expected,
        tolerance(33),
        "matmul",
    );
    let packed = PackedMatrix::from_in_out(b.view());
    assert_close(
        &matmul_packed(a.view(), &packed, &Epilogue::none()),
        &expected,
        tolerance(33),
        "matmul_packed",
    );

    // attention-like: (batch·heads, seq, head_dim) · (batch·heads, seq, head_dim)ᵀ
    for (transpose_a, transpose_b) in [
        (Transpose::No, Transpose::No),
        (Transpose::No, Transpose::Yes),
        (Transpose::Yes, Transpose::No),
        (Transpose::Yes, Transpose::Yes),
    ] {
        let (batch, m, k, n) = (6, 13, 8, 11);
        let a_shape = if transpose_a == Transpose::Yes {
            (batch, k, m)
        } else {
            (batch, m, k)
        };
        let b_shape = if transpose_b == Transpose::Yes {
            (batch, n, k)
        } else {
            (batch, k, n)
        };
        let a: Array3<f32> = random(a_shape, 21);
        let b: Array3<f32> = random(b_shape, 22);
        let actual = batched_matmul(a.view(), transpose_a, b.view(), transpose_b);
        assert_eq!(actual.dim(), (batch, m, n));
        for index in 0..batch {
            let mut a_i = a.index_axis(Axis(0), index);
            let mut b_i = b.index_axis(Axis(0), index);
            if transpose_a == Transpose::Yes {
                a_i = a_i.reversed_axes();
            }
            if transpose_b == Transpose::Yes {
                b_i = b_i.reversed_axes();
            }
            let expected = gemm_reference(a_i, b_i, &Epilogue::none());
            assert_close(
                &actual.index_axis(Axis(0), index).to_owned(),
                &expected,
                tolerance(k),
                &format!("batched {transpose_a:?} {transpose_b:?} entry {index}"),
            );
        }
    }
}

/// Run as a child by `the_environment_forces_a_path`: prints the path this process chose.
#[test]
fn print_gemm_path() {
    println!("gemm_path={:?} isa={}", gemm_path(), oxformer_tensor::isa());
}

/// `OXFORMER_ISA` caps every kernel's instruction set, the product's path with it; a
/// `OXFORMER_GEMM_PATH` above the cap is refused.
#[test]
fn the_environment_caps_the_instruction_set() {
    let executable = std::env::current_exe().expect("test executable");
    let run = |variables: &[(&str, &str)]| {
        let output = std::process::Command::new(&executable)
            .args([
                "--exact",
                "print_gemm_path",
                "--nocapture",
                "--test-threads=1",
            ])
            .env_remove("OXFORMER_GEMM_PATH")
            .env_remove("OXFORMER_ISA")
            .envs(variables.iter().copied())
            .output()
            .expect("run the test executable");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    for (isa, path) in [
        (Isa::Avx512, GemmPath::Avx512),
        (Isa::Avx2, GemmPath::Avx2),
        (Isa::Scalar, GemmPath::Portable),
    ] {
        if !isa.available() {
            println!("gemm environment: skipped OXFORMER_ISA={isa} (not supported by this CPU)");
            continue;
        }
        let stdout = run(&[("OXFORMER_ISA", isa.name())]);
        assert!(
            stdout.contains(&format!("gemm_path={path:?} isa={isa}")),
            "OXFORMER_ISA={isa}: {stdout}"
        );
    }
    if Isa::Avx512.available() {
        let stdout = run(&[("OXFORMER_ISA", "avx2"), ("OXFORMER_GEMM_PATH", "avx512")]);
        assert!(
            stdout.contains("gemm_path=Avx2 isa=avx2"),
            "OXFORMER_ISA=avx2 OXFORMER_GEMM_PATH=avx512: {stdout}"
        );
    }
}

#[test]
fn the_environment_forces_a_path() {
    let executable = std::env::current_exe().expect("test executable");
    for (path, name) in [
        (GemmPath::Avx512, "avx512"),
        (GemmPath::Avx2, "avx2"),
        (GemmPath::Portable, "portable"),
        (GemmPath::Reference, "reference"),
    ] {
        if !available_paths("gemm environment").contains(&path) {
            continue;
        }
        let output = std::process::Command::new(&executable)
            .args([
                "--exact",
                "print_gemm_path",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("OXFORMER_GEMM_PATH", name)
            .env_remove("OXFORMER_ISA")
            .output()
            .expect("run the test executable");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.contains(&format!("gemm_path={path:?}")),
            "OXFORMER_GEMM_PATH={name}: {stdout}"
        );
    }
}
