//! oxformer-pipelines
