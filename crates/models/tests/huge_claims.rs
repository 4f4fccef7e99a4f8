//! A config that claims more layers than its checkpoint holds fails at the first missing layer,
//! without making room for the claimed count (found by the fuzzer: `num_hidden_layers` 2^40
//! asked for terabytes). The largest single allocation of the load is measured.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::reference::model_dir;
use oxformer_models::bert::BertModel;
use oxformer_models::distilbert::DistilBertModel;
use oxformer_models::gpt2::Gpt2Model;
use oxformer_models::{BertConfig, DistilBertConfig, Gpt2Config, ModelConfig};
use oxformer_nn::Weights;

/// The largest single allocation of any thread (the layers load on the rayon pool), since the
/// last reset. One test per file: no other test allocates meanwhile.
static PEAK: AtomicUsize = AtomicUsize::new(0);

struct Peak;

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for Peak {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        PEAK.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: `pointer` came from `System` with this layout.
        unsafe { System.dealloc(pointer, layout) }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        PEAK.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: `pointer` came from `System` with `layout`.
        unsafe { System.realloc(pointer, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Peak = Peak;

const CLAIMED: usize = 1 << 40;
/// Far above the tiny fixtures' largest tensor, far below what the claim would take.
const BOUND: usize = 64 << 20;

fn measured<T>(load: impl FnOnce() -> T) -> (T, usize) {
    PEAK.store(0, Ordering::Relaxed);
    let result = load();
    (result, PEAK.load(Ordering::Relaxed))
}

#[test]
fn configs_claiming_2_to_the_40_layers_fail_at_the_first_missing_one() {
    let dir = model_dir("bert");
    let weights = Weights::from_folder(&dir).unwrap();
    let ModelConfig::Bert(config) = ModelConfig::from_folder(&dir).unwrap() else {
        panic!("a BERT fixture")
    };
    let layers = config.num_hidden_layers;
    let claims = BertConfig {
        num_hidden_layers: CLAIMED,
        ..config
    };
    let (result, peak) = measured(|| BertModel::load(&weights, &claims, true));
    let error = result.unwrap_err().to_string();
    assert!(error.contains(&format!("layer.{layers}.")), "{error}");
    assert!(peak < BOUND, "BERT: allocated {peak} bytes");

    let dir = model_dir("distilbert");
    let weights = Weights::from_folder(&dir).unwrap();
    let ModelConfig::DistilBert(config) = ModelConfig::from_folder(&dir).unwrap() else {
        panic!("a DistilBERT fixture")
    };
    let layers = config.n_layers;
    let claims = DistilBertConfig {
        n_layers: CLAIMED,
        ..config
    };
    let (result, peak) = measured(|| DistilBertModel::load(&weights, &claims));
    let error = result.unwrap_err().to_string();
    assert!(error.contains(&format!("layer.{layers}.")), "{error}");
    assert!(peak < BOUND, "DistilBERT: allocated {peak} bytes");

    let dir = model_dir("gpt2");
    let weights = Weights::from_folder(&dir).unwrap();
    let ModelConfig::Gpt2(config) = ModelConfig::from_folder(&dir).unwrap() else {
        panic!("a GPT-2 fixture")
    };
    let layers = config.n_layer;
    let claims = Gpt2Config {
        n_layer: CLAIMED,
        ..config
    };
    let weights = weights.sub("transformer");
    let (result, peak) = measured(|| Gpt2Model::load(&weights, &claims).map(drop));
    let error = result.unwrap_err().to_string();
    assert!(error.contains(&format!("h.{layers}.")), "{error}");
    assert!(peak < BOUND, "GPT-2: allocated {peak} bytes");
}
