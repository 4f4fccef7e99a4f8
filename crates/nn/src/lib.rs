//! oxformer-nn
