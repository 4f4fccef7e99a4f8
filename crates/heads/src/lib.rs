//! oxformer-heads
