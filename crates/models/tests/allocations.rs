//! A forward pass after warm-up allocates per call (its output, the batch's layout), nothing per
//! layer: each layer writes into the model's workspace, and the kernels allocate nothing. For the
//! encoders, for GPT-2's decoding steps, and for the decoding steps of T5, BART and Marian.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::reference::model_dir;
use oxformer_models::bart::BartForConditionalGeneration;
use oxformer_models::bert::BertModel;
use oxformer_models::distilbert::DistilBertModel;
use oxformer_models::gpt2::{Gpt2Input, Gpt2Model};
use oxformer_models::marian::MarianMTModel;
use oxformer_models::seq2seq::Seq2SeqCache;
use oxformer_models::t5::T5ForConditionalGeneration;
use oxformer_models::{
    BartConfig, BertConfig, DistilBertConfig, EncoderInput, ForwardOptions, Gpt2Config,
    MarianConfig, ModelConfig, T5Config,
};
use oxformer_nn::Weights;
use oxformer_tensor::ThreadPool;

/// The system allocator, counting allocations.
struct Counting;

thread_local! {
    /// This thread's allocations (tests run side by side: a global count would mix theirs).
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count_one() {
    ALLOCATIONS.with(|count| count.set(count.get() + 1));
}

// SAFETY: forwards to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which is the system
        // allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, that is from `System`, with this `layout` (the
        // caller's contract).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: `ptr` came from `System` with `layout` and `new_size` is valid (the caller's
        // contract).
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations made by the second of two identical forward passes of `forward`, on a pool of one
/// thread, which does all the work (a thread's first GEMM grows its own A block: with more
/// threads, which of them the warm-up pass used is up to rayon).
fn allocations_per_pass(forward: impl Fn(&EncoderInput<'_>) + Sync) -> usize {
    let ids = ndarray::Array2::<u32>::from_shape_fn((2, 9), |(b, t)| (7 + 13 * b + t) as u32);
    let mask = ndarray::Array2::<u32>::from_shape_fn((2, 9), |(b, t)| u32::from(b == 0 || t < 6));
    let input = EncoderInput::new(ids.view(), mask.view());
    ThreadPool::new(1).unwrap().install(|| {
        forward(&input);
        let before = ALLOCATIONS.get();
        forward(&input);
        ALLOCATIONS.get() - before
    })
}

/// Allocations per pass of the `name` fixture cut to 1 and to 2 layers, which must agree.
fn check(name: &str, per_pass: impl Fn(usize) -> usize) {
    let (one, two) = (per_pass(1), per_pass(2));
    println!("{name}: allocations per forward pass: 1 layer {one}, 2 layers {two}");
    assert_eq!(one, two, "{name}: allocations grow with the layers");
}

#[test]
fn bert_layers_allocate_nothing_after_warm_up() {
    let dir = model_dir("bert");
    let ModelConfig::Bert(config) = ModelConfig::from_folder(&dir).unwrap() else {
        unreachable!()
    };
    let weights = Weights::from_folder(&dir).unwrap();
    check("bert", |layers| {
        let config = BertConfig {
            num_hidden_layers: layers,
            ..config.clone()
        };
        let model = BertModel::load(&weights, &config, true).unwrap();
        allocations_per_pass(|input| {
            drop(model.forward(input, &ForwardOptions::default()).unwrap())
        })
    });
}

#[test]
fn distilbert_layers_allocate_nothing_after_warm_up() {
    let dir = model_dir("distilbert");
    let ModelConfig::DistilBert(config) = ModelConfig::from_folder(&dir).unwrap() else {
        unreachable!()
    };
    let weights = Weights::from_folder(&dir).unwrap();
    check("distilbert", |layers| {
        let config = DistilBertConfig {
            n_layers: layers,
            ..config.clone()
        };
        let model = DistilBertModel::load(&weights, &config).unwrap();
        allocations_per_pass(|input| {
            drop(model.forward(input, &ForwardOptions::default()).unwrap())
        })
    });
}

#[test]
fn gpt2_decoding_steps_allocate_nothing_per_block() {
    let dir = model_dir("gpt2");
    let ModelConfig::Gpt2(config) = ModelConfig::from_folder(&dir).unwrap() else {
        unreachable!()
    };
    let weights = Weights::from_folder(&dir).unwrap();
    check("gpt2", |layers| {
        let config = Gpt2Config {
            n_layer: layers,
            ..config.clone()
        };
        // the transformer's weights sit under `transformer.` in a GPT2LMHeadModel checkpoint,
        // at the top in a GPT2Model one
        let model = Gpt2Model::load(&weights, &config)
            .or_else(|_| Gpt2Model::load(&weights.sub("transformer"), &config))
            .unwrap();
        let mut cache = model.new_cache(2, 8);
        let prompt = ndarray::Array2::<u32>::from_shape_fn((2, 3), |(b, t)| (5 + 7 * b + t) as u32);
        let step = |cache: &mut _, token: u32| {
            let ids = ndarray::Array2::<u32>::from_elem((2, 1), token);
            let input = Gpt2Input {
                input_ids: ids.view(),
                position_ids: None,
                attention_mask: None,
            };
            drop(model.forward(&input, Some(cache), false).unwrap());
        };
        ThreadPool::new(1).unwrap().install(|| {
            let input = Gpt2Input {
                input_ids: prompt.view(),
                position_ids: None,
                attention_mask: None,
            };
            drop(model.forward(&input, Some(&mut cache), false).unwrap());
            step(&mut cache, 11);
            let before = ALLOCATIONS.get();
            step(&mut cache, 12);
            ALLOCATIONS.get() - before
        })
    });
}

/// Allocations of the third decoding step (two rows per input, two inputs) of an
/// encoder-decoder model, after its encoder and two warm-up steps, on one thread.
fn allocations_per_decoder_step(
    start: impl Fn(&EncoderInput<'_>) -> Seq2SeqCache + Sync,
    step: impl Fn(&mut Seq2SeqCache, u32) + Sync,
) -> usize {
    let ids = ndarray::Array2::<u32>::from_shape_fn((2, 9), |(b, t)| (7 + 13 * b + t) as u32);
    let mask = ndarray::Array2::<u32>::from_shape_fn((2, 9), |(b, t)| u32::from(b == 0 || t < 6));
    let input = EncoderInput::new(ids.view(), mask.view());
    ThreadPool::new(1).unwrap().install(|| {
        let mut cache = start(&input);
        step(&mut cache, 3);
        step(&mut cache, 4);
        let before = ALLOCATIONS.get();
        step(&mut cache, 5);
        ALLOCATIONS.get() - before
    })
}

#[test]
fn t5_decoding_steps_allocate_nothing_per_layer() {
    for name in ["t5", "t5-v1_1"] {
        let dir = model_dir(name);
        let ModelConfig::T5(config) = ModelConfig::from_folder(&dir).unwrap() else {
            unreachable!()
        };
        let weights = Weights::from_folder(&dir).unwrap();
        check(name, |layers| {
            let config = T5Config {
                num_layers: layers,
                num_decoder_layers: layers,
                ..config.clone()
            };
            let model = T5ForConditionalGeneration::load(weights.clone(), &config).unwrap();
            allocations_per_decoder_step(
                |input| model.start(input, 2, 8).unwrap(),
                |cache, token| {
                    let ids = ndarray::Array2::<u32>::from_elem((4, 1), token);
                    drop(model.decode_last(ids.view(), cache).unwrap());
                },
            )
        });
    }
}

#[test]
fn bart_and_marian_decoding_steps_allocate_nothing_per_layer() {
    let dir = model_dir("bart");
    let ModelConfig::Bart(config) = ModelConfig::from_folder(&dir).unwrap() else {
        unreachable!()
    };
    let weights = Weights::from_folder(&dir).unwrap();
    check("bart", |layers| {
        let config = BartConfig {
            encoder_layers: layers,
            decoder_layers: layers,
            ..config.clone()
        };
        let model = BartForConditionalGeneration::load(weights.clone(), &config).unwrap();
        allocations_per_decoder_step(
            |input| model.start(input, 2, 8).unwrap(),
            |cache, token| {
                let ids = ndarray::Array2::<u32>::from_elem((4, 1), token);
                drop(model.decode_last(ids.view(), cache).unwrap());
            },
        )
    });
    let dir = model_dir("marian");
    let ModelConfig::Marian(config) = ModelConfig::from_folder(&dir).unwrap() else {
        unreachable!()
    };
    let weights = Weights::from_folder(&dir).unwrap();
    check("marian", |layers| {
        let config = MarianConfig {
            encoder_layers: layers,
            decoder_layers: layers,
            ..config.clone()
        };
        let model = MarianMTModel::load(weights.clone(), &config).unwrap();
        allocations_per_decoder_step(
            |input| model.start(input, 2, 8).unwrap(),
            |cache, token| {
                let ids = ndarray::Array2::<u32>::from_elem((4, 1), token);
                drop(model.decode_last(ids.view(), cache).unwrap());
            },
        )
    });
}
