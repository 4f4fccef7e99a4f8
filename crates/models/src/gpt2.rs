//! GPT-2, mirroring transformers/models/gpt2/modeling_gpt2.py.
