//! The generation engine: model-agnostic decoding (greedy, sampling, beam search) with a KV cache.
