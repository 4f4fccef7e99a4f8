#!/usr/bin/env python3
"""HF transformers' summarization, translation and text2text-generation pipelines on the tiny
encoder-decoder checkpoints that `fixtures_seq2seq.py` writes (run after it by `cargo xtask fixtures`).

Writes `pipelines/seq2seq/<model>.json` under `--out`: per case the task, the inputs (one text or a list),
the call options, what the pipeline returns, and, from each `generate()` call the pipeline makes (one per
input, as transformers runs a list one input at a time), the token ids and the beam scores
(`sequences_scores`), with the generation settings the pipeline resolved (its defaults
`max_new_tokens=256, num_beams=4`, the model's generation config, `task_specific_params[task]`, the call's
options).

Deterministic: single-threaded torch, sorted JSON keys.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import transformers
from transformers import pipeline

VERSIONS = {"torch": torch.__version__, "transformers": transformers.__version__}

T5_TEXTS = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Hello world!",
]
BART_TEXTS = [
    "The quick brown fox jumps over the lazy dog. The house at the end of the street has a red door.",
    "Hello world!",
]
MARIAN_TEXTS = [
    "The train to Paris leaves at nine in the morning, and the meeting was moved to Tuesday.",
    "Hello world.",
]

# (case, task, inputs, options)
CASES = {
    "t5": [
        ("summarization-default", "summarization", T5_TEXTS, {}),
        ("summarization-single", "summarization", T5_TEXTS[1], {}),
        ("summarization-max-length-only", "summarization", T5_TEXTS, {"max_length": 20, "min_length": 5}),
        ("summarization-beams-2-new-10", "summarization", T5_TEXTS, {"num_beams": 2, "max_new_tokens": 10}),
        (
            "summarization-return-2",
            "summarization",
            T5_TEXTS,
            {"num_beams": 3, "num_return_sequences": 2, "max_new_tokens": 12},
        ),
        (
            "summarization-never-penalty-0.5",
            "summarization",
            T5_TEXTS,
            {"early_stopping": "never", "length_penalty": 0.5, "max_new_tokens": 16, "min_length": 0},
        ),
        (
            "summarization-not-early-penalty-1",
            "summarization",
            T5_TEXTS,
            {"early_stopping": False, "length_penalty": 1.0, "max_new_tokens": 16, "min_length": 0},
        ),
        ("summarization-greedy", "summarization", T5_TEXTS, {"num_beams": 1, "max_new_tokens": 12, "min_length": 0}),
        (
            "summarization-return-tensors",
            "summarization",
            T5_TEXTS,
            {"num_beams": 1, "max_new_tokens": 6, "return_tensors": True},
        ),
        ("translation_en_to_de-default", "translation_en_to_de", T5_TEXTS, {}),
        ("translation_en_to_fr-greedy", "translation_en_to_fr", T5_TEXTS, {"num_beams": 1, "max_new_tokens": 8}),
        ("translation-default", "translation", T5_TEXTS, {}),
        ("text2text-default", "text2text-generation", T5_TEXTS, {}),
        (
            "text2text-no-repeat-repetition",
            "text2text-generation",
            T5_TEXTS,
            {"no_repeat_ngram_size": 2, "repetition_penalty": 1.5, "max_new_tokens": 20},
        ),
    ],
    "t5-v1_1": [
        ("text2text-default", "text2text-generation", T5_TEXTS, {}),
        ("text2text-greedy", "text2text-generation", T5_TEXTS, {"num_beams": 1, "max_new_tokens": 12}),
        ("summarization-default", "summarization", T5_TEXTS, {}),
    ],
    "bart": [
        ("summarization-default", "summarization", BART_TEXTS, {}),
        ("summarization-new-20", "summarization", BART_TEXTS, {"max_new_tokens": 20, "min_length": 4}),
        (
            "summarization-greedy-clean-up",
            "summarization",
            BART_TEXTS,
            {"num_beams": 1, "max_new_tokens": 12, "min_length": 0, "clean_up_tokenization_spaces": True},
        ),
        ("text2text-default", "text2text-generation", BART_TEXTS, {}),
    ],
    "marian": [
        ("translation-default", "translation", MARIAN_TEXTS, {}),
        ("translation_en_to_de-default", "translation_en_to_de", MARIAN_TEXTS, {}),
        ("translation-greedy", "translation", MARIAN_TEXTS, {"num_beams": 1, "max_new_tokens": 15}),
        (
            "translation-beams-3-penalty",
            "translation",
            MARIAN_TEXTS,
            {"num_beams": 3, "max_new_tokens": 20, "length_penalty": 0.7, "no_repeat_ngram_size": 2},
        ),
    ],
}

# The generation settings recorded from each generate() call.
RECORDED = [
    "max_length",
    "max_new_tokens",
    "min_length",
    "min_new_tokens",
    "num_beams",
    "num_return_sequences",
    "length_penalty",
    "early_stopping",
    "no_repeat_ngram_size",
    "repetition_penalty",
    "do_sample",
    "bad_words_ids",
    "forced_bos_token_id",
    "forced_eos_token_id",
    "decoder_start_token_id",
    "eos_token_id",
    "pad_token_id",
]


def jsonable(value):
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    return value


def write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(jsonable(value), indent=1, sort_keys=True, ensure_ascii=False) + "\n")


def run_case(folder: Path, task: str, inputs, options: dict) -> dict:
    runner = pipeline(task, model=str(folder), tokenizer=str(folder), framework="pt", device="cpu")
    model = runner.model
    original = model.generate
    calls = []

    def recording_generate(*args, **kwargs):
        output = original(*args, **kwargs, output_scores=True, return_dict_in_generate=True)
        # the settings generate() resolved: the pipeline's config with the call's options over it
        config, _ = model._prepare_generation_config(kwargs.get("generation_config"), None, **{
            key: value for key, value in kwargs.items() if key != "generation_config" and key != "attention_mask"
            and key != "input_ids"
        })
        call = {
            "input_ids": kwargs["input_ids"],
            "sequences": output.sequences,
            "settings": {key: getattr(config, key) for key in RECORDED},
        }
        if getattr(output, "sequences_scores", None) is not None:
            call["sequences_scores"] = output.sequences_scores
        calls.append(call)
        return output.sequences

    model.generate = recording_generate
    result = runner(inputs, **options)
    return {
        "task": task,
        "inputs": inputs,
        "options": options,
        "prefix": runner.prefix,
        "output": result,
        "generate_calls": calls,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    for model_name, cases in CASES.items():
        folder = args.out / "models" / model_name
        if not folder.is_dir():
            sys.exit(f"{folder} is missing: fixtures_seq2seq.py writes it first")
        record = {"model": model_name, "versions": VERSIONS, "cases": {}}
        for case, task, inputs, options in cases:
            record["cases"][case] = run_case(folder, task, inputs, options)
        write_json(args.out / "pipelines" / "seq2seq" / f"{model_name}.json", record)
        print(f"pipelines/seq2seq/{model_name}.json", flush=True)


if __name__ == "__main__":
    main()
