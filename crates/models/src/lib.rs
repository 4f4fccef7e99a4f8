//! oxformer-models
