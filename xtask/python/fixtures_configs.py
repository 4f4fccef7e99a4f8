#!/usr/bin/env python3
"""Config defaults of HF transformers for oxformer's config tests.

Run by `cargo xtask fixtures` (xtask/src/fixtures.rs) from the pinned venv as
`fixtures_configs.py --out DIR`. Writes `DIR/configs/defaults.json`: for each case, the partial
`config.json` object given to transformers (`input`) and what transformers makes of it: the full
`to_dict()` of `AutoConfig.for_model(**input)` (`config`, every attribute including defaults) and
its `num_labels`. The Rust test (crates/models/tests/config_defaults.rs) parses each `input` with
`ModelConfig` and compares every field it models. Deterministic: sorted keys, floats by repr.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import transformers
from transformers import AutoConfig

CASES = {
    # Nothing but the model type: every default of the class and of PretrainedConfig.
    "bert-minimal": {"model_type": "bert"},
    "roberta-minimal": {"model_type": "roberta"},
    "xlm-roberta-minimal": {"model_type": "xlm-roberta"},
    "distilbert-minimal": {"model_type": "distilbert"},
    "gpt2-minimal": {"model_type": "gpt2"},
    # Labels from num_labels, and from id2label (keys are strings in JSON).
    "bert-num-labels-3": {"model_type": "bert", "num_labels": 3},
    "roberta-id2label": {
        "model_type": "roberta",
        "id2label": {"0": "NEGATIVE", "1": "NEUTRAL", "2": "POSITIVE"},
        "label2id": {"NEGATIVE": 0, "NEUTRAL": 1, "POSITIVE": 2},
        "problem_type": "single_label_classification",
    },
    # Explicit nulls and lists where the class has a default.
    "bert-null-pad": {"model_type": "bert", "pad_token_id": None, "classifier_dropout": 0.3},
    "gpt2-eos-list-no-inner": {
        "model_type": "gpt2",
        "eos_token_id": [50256, 198],
        "n_inner": None,
        "activation_function": "gelu_pytorch_tanh",
        "tie_word_embeddings": False,
        "summary_activation": "tanh",
        "summary_type": "last",
    },
    # Non-default sizes and activations, the old torch_dtype key.
    "distilbert-sizes": {
        "model_type": "distilbert",
        "dim": 64,
        "n_heads": 8,
        "hidden_dim": 100,
        "activation": "relu",
        "sinusoidal_pos_embds": True,
        "torch_dtype": "float16",
    },
    # Encoder-decoder models (issue 13): T5 v1.0 / v1.1, BART, Marian.
    "t5-minimal": {"model_type": "t5"},
    "mt5-minimal": {"model_type": "mt5"},
    "bart-minimal": {"model_type": "bart"},
    "marian-minimal": {"model_type": "marian"},
    "t5-v1_1-gated": {
        "model_type": "t5",
        "feed_forward_proj": "gated-gelu",
        "tie_word_embeddings": False,
        "num_decoder_layers": None,
        "num_layers": 4,
        "d_kv": 32,
    },
    "t5-gated-silu": {"model_type": "t5", "feed_forward_proj": "gated-silu", "num_decoder_layers": 3},
    "bart-scaled-relu": {
        "model_type": "bart",
        "scale_embedding": True,
        "activation_function": "relu",
        "num_labels": 2,
        "decoder_start_token_id": 0,
    },
    "marian-unshared": {
        "model_type": "marian",
        "share_encoder_decoder_embeddings": False,
        "decoder_vocab_size": 1000,
        "activation_function": "swish",
    },
    "xlm-roberta-relative": {
        "model_type": "xlm-roberta",
        "position_embedding_type": "relative_key_query",
        "hidden_act": "silu",
        "layer_norm_eps": 1e-5,
        "type_vocab_size": 1,
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    cases = {}
    for name, given in CASES.items():
        config = AutoConfig.for_model(**given)
        cases[name] = {
            "input": given,
            "config": config.to_dict(),
            "num_labels": config.num_labels,
        }
    out = args.out / "configs"
    out.mkdir(parents=True, exist_ok=True)
    document = {
        "cases": cases,
        "versions": {"python": sys.version.split()[0], "transformers": transformers.__version__},
    }
    text = json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    (out / "defaults.json").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
