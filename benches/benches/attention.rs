//! Fused attention at BERT-base's head layout (12 heads × 64), one sequence of 128 and of 512,
//! with a padding mask; and one decoding step of GPT-2 (1 query against 512 cached keys, causal).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ndarray::{Array2, Array4};
use oxformer_benches::{filled, pool};
use oxformer_tensor::{AttentionMask, attention_into};

const HEADS: usize = 12;
const HEAD_DIM: usize = 64;

fn attention(c: &mut Criterion) {
    let pool = pool();
    for (name, queries, keys, causal) in [
        ("attention_s128", 128, 128, false),
        ("attention_s512", 512, 512, false),
        ("attention_decode_k512", 1, 512, true),
    ] {
        let q = filled((1, HEADS, queries, HEAD_DIM), 1);
        let k = filled((1, HEADS, keys, HEAD_DIM), 2);
        let v = filled((1, HEADS, keys, HEAD_DIM), 3);
        let padding = Array2::<f32>::ones((1, keys));
        let mask = AttentionMask {
            key_padding: Some(padding.view()),
            causal,
        };
        let mut out = Array4::<f32>::zeros((1, HEADS, queries, HEAD_DIM));
        let mut group = c.benchmark_group(name);
        // Q·Kᵀ and P·V: 2 · 2 · heads · queries · keys · head_dim
        group.throughput(Throughput::Elements(
            4 * (HEADS * queries * keys * HEAD_DIM) as u64,
        ));
        group.sample_size(10);
        group.bench_function("oxformer", |bench| {
            bench.iter(|| {
                pool.install(|| {
                    attention_into(q.view(), k.view(), v.view(), &mask, 0.125, out.view_mut())
                })
            })
        });
        group.finish();
    }
}

criterion_group!(benches, attention);
criterion_main!(benches);
