//! Fused attention at BERT-base's head layout (12 heads × 64), Q, K and V read as strided views
//! of one fused QKV product as the models do: sequences of 128 and 512, batch 1 and 8, padded
//! (with a key-padding mask) and packed (one sequence per call, no mask); GPT-2's causal prefill
//! of 128 tokens; and one decoding step (1 query against 512 cached keys, causal).

#[path = "common/flops.rs"]
mod flops;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flops::FlopTime;
use ndarray::{Array2, Array4, Array5, Axis};
use oxformer_benches::{filled, pool};
use oxformer_tensor::{AttentionMask, attention_into};

const HEADS: usize = 12;
const HEAD_DIM: usize = 64;

/// One case: `batch` sequences of `queries` queries against `keys` keys.
struct Case {
    name: &'static str,
    batch: usize,
    queries: usize,
    keys: usize,
    padding: bool,
    causal: bool,
}

const CASES: &[Case] = &[
    Case {
        name: "attention_s128",
        batch: 1,
        queries: 128,
        keys: 128,
        padding: true,
        causal: false,
    },
    Case {
        name: "attention_s128_packed",
        batch: 1,
        queries: 128,
        keys: 128,
        padding: false,
        causal: false,
    },
    Case {
        name: "attention_b8_s128",
        batch: 8,
        queries: 128,
        keys: 128,
        padding: true,
        causal: false,
    },
    Case {
        name: "attention_s512",
        batch: 1,
        queries: 512,
        keys: 512,
        padding: true,
        causal: false,
    },
    Case {
        name: "attention_s512_packed",
        batch: 1,
        queries: 512,
        keys: 512,
        padding: false,
        causal: false,
    },
    Case {
        name: "attention_causal_s128",
        batch: 1,
        queries: 128,
        keys: 128,
        padding: false,
        causal: true,
    },
    Case {
        name: "attention_decode_k512",
        batch: 1,
        queries: 1,
        keys: 512,
        padding: true,
        causal: true,
    },
];

fn attention(c: &mut Criterion<FlopTime>) {
    let pool = pool();
    for case in CASES {
        let (batch, queries, keys) = (case.batch, case.queries, case.keys);
        // (batch, seq, heads, head_dim) rows of a QKV product, seen as (batch, heads, seq, head_dim)
        let q_storage = filled((batch, queries, HEADS, HEAD_DIM), 1);
        let kv_storage: Array5<f32> = filled((batch, keys, 2, HEADS, HEAD_DIM), 2);
        let q = q_storage.view().permuted_axes([0, 2, 1, 3]);
        let k = kv_storage
            .index_axis(Axis(2), 0)
            .permuted_axes([0, 2, 1, 3]);
        let v = kv_storage
            .index_axis(Axis(2), 1)
            .permuted_axes([0, 2, 1, 3]);
        let padding = Array2::<f32>::ones((batch, keys));
        let mask = AttentionMask {
            key_padding: case.padding.then(|| padding.view()),
            causal: case.causal,
            bias: None,
        };
        let mut out = Array4::<f32>::zeros((batch, queries, HEADS, HEAD_DIM));
        let mut group = c.benchmark_group(case.name);
        // Q·Kᵀ and P·V: 2 · 2 · batch · heads · queries · keys · head_dim (causal: as if full)
        group.throughput(Throughput::Elements(
            4 * (batch * HEADS * queries * keys * HEAD_DIM) as u64,
        ));
        group.sample_size(10);
        group.bench_function("oxformer", |bench| {
            bench.iter(|| {
                pool.install(|| {
                    attention_into(
                        q,
                        k,
                        v,
                        &mask,
                        0.125,
                        out.view_mut().permuted_axes([0, 2, 1, 3]),
                    )
                })
            })
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    // throughput in FLOP/s (see common/flops.rs)
    config = Criterion::default().with_measurement(FlopTime);
    targets = attention
}
criterion_main!(benches);
