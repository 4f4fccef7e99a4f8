//! oxformer-tokenizer
