//! GEMM on BERT-base's shapes: ours (packed weights) beside matrixmultiply 0.3.11 in one group,
//! both on two threads. M = 1 (decoding), 128 (one sequence), 512 (one long sequence), 1024
//! (8 × 128).

#[path = "common/flops.rs"]
mod flops;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flops::FlopTime;
use ndarray::Array2;
use oxformer_benches::{filled, pool};
use oxformer_tensor::{Epilogue, PackedMatrix, matmul_packed_into};

/// (scenario, K, N)
const SHAPES: [(&str, usize, usize); 4] = [
    ("attention_output", 768, 768),
    ("qkv", 768, 2304),
    ("ffn_up", 768, 3072),
    ("ffn_down", 3072, 768),
];

fn gemm(c: &mut Criterion<FlopTime>) {
    let pool = pool();
    for m in [1, 128, 512, 1024] {
        for (scenario, k, n) in SHAPES {
            let a = filled((m, k), 1);
            let b = filled((k, n), 2);
            let packed = PackedMatrix::from_in_out(b.view());
            let mut out = Array2::<f32>::zeros((m, n));
            let mut group = c.benchmark_group(format!("gemm_{scenario}_m{m}"));
            group.throughput(Throughput::Elements(2 * (m * k * n) as u64));
            group.sample_size(10);
            group.bench_function("oxformer", |bench| {
                bench.iter(|| {
                    pool.install(|| {
                        matmul_packed_into(a.view(), &packed, &Epilogue::none(), out.view_mut())
                    })
                })
            });
            group.bench_function("matrixmultiply", |bench| {
                bench.iter(|| unsafe {
                    // SAFETY: row-major arrays of the stated shapes.
                    matrixmultiply::sgemm(
                        m,
                        k,
                        n,
                        1.0,
                        a.as_ptr(),
                        k as isize,
                        1,
                        b.as_ptr(),
                        n as isize,
                        1,
                        0.0,
                        out.as_mut_ptr(),
                        n as isize,
                        1,
                    )
                })
            });
            group.finish();
        }
    }
}

criterion_group! {
    name = benches;
    // throughput in FLOP/s (see common/flops.rs)
    config = Criterion::default().with_measurement(FlopTime);
    targets = gemm
}
criterion_main!(benches);
