//! Layer norm with the fused residual add (BERT-base: 128 tokens × 768) and GELU over the
//! feed-forward activations (128 × 3072). Throughput in elements.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use oxformer_benches::{filled, pool};
use oxformer_tensor::{Activation, apply_activation, layer_norm_in_place};

fn layer_norm(c: &mut Criterion) {
    let pool = pool();
    let (rows, dim) = (128, 768);
    let x = filled((rows, dim), 1);
    let residual = filled((rows, dim), 2);
    let weight = filled(dim, 3).to_vec();
    let bias = filled(dim, 4).to_vec();
    let mut out = x.clone();
    let mut group = c.benchmark_group("layer_norm_residual_128x768");
    group.throughput(Throughput::Elements((rows * dim) as u64));
    group.bench_function("oxformer", |bench| {
        bench.iter(|| {
            out.assign(&x);
            pool.install(|| {
                layer_norm_in_place(out.view_mut(), Some(residual.view()), &weight, &bias, 1e-12)
            })
        })
    });
    group.finish();
}

fn gelu(c: &mut Criterion) {
    let (rows, dim) = (128, 3072);
    let x = filled((rows, dim), 5) * 8.0;
    let mut out = x.clone();
    let mut group = c.benchmark_group("gelu_128x3072");
    group.throughput(Throughput::Elements((rows * dim) as u64));
    for (name, activation) in [
        ("gelu", Activation::Gelu),
        ("gelu_tanh", Activation::GeluTanh),
    ] {
        group.bench_function(name, |bench| {
            bench.iter(|| {
                out.assign(&x);
                apply_activation(out.view_mut(), activation)
            })
        });
    }
    group.bench_function("gelu_scalar_definition", |bench| {
        bench.iter(|| {
            out.assign(&x);
            out.mapv_inplace(|v| Activation::Gelu.apply(v))
        })
    });
    group.finish();
}

criterion_group!(benches, layer_norm, gelu);
criterion_main!(benches);
