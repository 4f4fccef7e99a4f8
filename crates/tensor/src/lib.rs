//! oxformer-tensor
