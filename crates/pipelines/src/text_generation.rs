//! The text-generation pipeline, as transformers/pipelines/text_generation.py.
