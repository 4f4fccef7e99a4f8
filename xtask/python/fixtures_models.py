#!/usr/bin/env python3
"""Tiny random checkpoints and HF transformers' reference outputs for oxformer's tests.

Run by `cargo xtask fixtures` (xtask/src/fixtures.rs) from the pinned venv, after
`fixtures_tokenizers.py` has written `<out>/tokenizers/`. Writes, under `--out`:

- `models/<name>/`: HF folders (config, weights, tokenizer files) + `reference.safetensors` /
  `reference.json` with the fixed inputs and every layer's outputs;
- `generation/`: GPT-2 per-step logits, `generate()` outputs, logits processors' inputs and outputs;
- `pipelines/<task>/<case>.json`: what `pipeline(task)(inputs, **options)` returned;
- `minilm/`: sentence-transformers embeddings of the real all-MiniLM-L6-v2 (from the cache).

The layout is described in fixtures/README.md. Everything is deterministic: one seed per checkpoint,
deterministic single-threaded torch, sorted JSON keys, floats written with repr (round-trips).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import shutil
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import safetensors
import sentence_transformers
import tokenizers
import torch
import transformers
from safetensors.torch import save_file
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
    DistilBertConfig,
    DistilBertForMaskedLM,
    DistilBertForQuestionAnswering,
    DistilBertForSequenceClassification,
    DistilBertForTokenClassification,
    DistilBertModel,
    GenerationConfig,
    GPT2Config,
    GPT2LMHeadModel,
    LogitsProcessorList,
    MinNewTokensLengthLogitsProcessor,
    RobertaConfig,
    RobertaForMaskedLM,
    RobertaForQuestionAnswering,
    RobertaForSequenceClassification,
    RobertaForTokenClassification,
    RobertaModel,
    XLMRobertaConfig,
    XLMRobertaForMaskedLM,
    XLMRobertaForQuestionAnswering,
    XLMRobertaForSequenceClassification,
    XLMRobertaForTokenClassification,
    XLMRobertaModel,
    pipeline,
)

VERSIONS = {
    "python": sys.version.split()[0],
    "torch": torch.__version__,
    "transformers": transformers.__version__,
    "tokenizers": tokenizers.__version__,
    "safetensors": safetensors.__version__,
    "sentence_transformers": sentence_transformers.__version__,
}

# Shapes shared by every tiny checkpoint: hidden 32, 4 heads, an intermediate size that is not a
# multiple of 8 (so kernels meet a ragged edge), 128 positions like the trained tokenizers'
# model_max_length (the long texts below need several windows).
HIDDEN = 32
HEADS = 4
INTERMEDIATE = 37
MAX_POSITIONS = 128
# Random init: the body wider than HF's 0.02 so every layer and every input matters, yet narrow enough
# that tokens keep their identity through the layers (at 0.2 every position converges to one vector).
INIT_STD = 0.1
# The task heads drawn wider, so their logits are well separated (with 0.02 every class scores
# nearly the same, and pipelines' argmax becomes fragile).
HEAD_STD = 0.5
HEAD_PARAMETERS = ("classifier.", "qa_outputs.", "pre_classifier.")
# Biases and norm offsets: nonzero (a forgotten bias must show), small next to the token signal
# (large shared offsets would make every position alike).
BIAS_STD = 0.02
# GPT-2's LM head is its tied embedding: narrower, and greedy decoding repeats the last token forever.
GPT2_INIT_STD = 0.4

# The reference batch of every encoder checkpoint: mixed lengths, one sentence pair (token types).
ENCODER_TEXTS = [
    "The quick brown fox jumps over the dog.",
    ["Where does Sarah live?", "In London."],
    "Hello!",
    "Transformers for everyone.",
]

LONG_TEXT = (
    "My name is Wolfgang and I live in Berlin. Sarah works for Hugging Face in New York City, "
    "and she often travels to Paris and London to meet Clara, who studies at the University of "
    "Cambridge. Last summer, Thomas Müller visited Tokyo, Kyoto and Osaka with his sister Anna. "
    "The European Union and the United Nations held a meeting in Geneva, where delegates from "
    "Brazil, India and South Africa discussed climate policy. Later that week, Microsoft and "
    "Google announced a partnership in Seattle, while Amazon opened a new office in Madrid."
)

LONG_CONTEXT = (
    "The Amazon rainforest covers much of the Amazon basin of South America. This basin "
    "encompasses seven million square kilometres, of which five and a half million square "
    "kilometres are covered by the rainforest. The region includes territory belonging to nine "
    "nations. The majority of the forest is contained within Brazil, with sixty percent of the "
    "rainforest, followed by Peru with thirteen percent, and Colombia with ten percent. The "
    "rainforest likely formed during the Eocene era. It appeared following a global reduction of "
    "tropical temperatures when the Atlantic Ocean had widened sufficiently to provide a warm, "
    "moist climate to the Amazon basin."
)

GPT2_PROMPTS = [
    "Hello, my dog is cute",
    "The capital of France",
    "Once upon a time, there lived a",
]

SENTENCES = [
    "This is an example sentence",
    "Each sentence is converted",
    "That is a happy person",
    "That is a happy dog",
    "That is a very happy person",
    "Today is a sunny day",
]

TOKCLS_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]


# ---------------------------------------------------------------------------------------------
# Writing files deterministically


def jsonable(value):
    """Plain Python values for json: numpy / torch scalars and arrays become floats, ints, lists."""
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, torch.Tensor):
        return jsonable(value.tolist())
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(jsonable(value), sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")


def write_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    plain = {name: tensor.detach().contiguous().clone() for name, tensor in tensors.items()}
    save_file(plain, str(path), metadata={"format": "pt"})


def seed_for(name: str) -> int:
    return zlib.crc32(name.encode("utf-8")) & 0x7FFFFFFF


def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


# ---------------------------------------------------------------------------------------------
# Checkpoints


@dataclass
class Family:
    """One architecture: its tokenizer, config and classes per head."""

    tokenizer: str
    classes: dict[str, type]
    layers: int
    layer_norm_eps: float


FAMILIES = {
    "bert": Family(
        tokenizer="wordpiece-cased",
        classes={
            "model": BertModel,
            "seqcls": BertForSequenceClassification,
            "tokcls": BertForTokenClassification,
            "qa": BertForQuestionAnswering,
            "mlm": BertForMaskedLM,
        },
        layers=3,
        layer_norm_eps=1e-12,
    ),
    "roberta": Family(
        tokenizer="bpe-roberta",
        classes={
            "model": RobertaModel,
            "seqcls": RobertaForSequenceClassification,
            "tokcls": RobertaForTokenClassification,
            "qa": RobertaForQuestionAnswering,
            "mlm": RobertaForMaskedLM,
        },
        layers=2,
        layer_norm_eps=1e-5,
    ),
    "xlmr": Family(
        tokenizer="unigram-xlmr",
        classes={
            "model": XLMRobertaModel,
            "seqcls": XLMRobertaForSequenceClassification,
            "tokcls": XLMRobertaForTokenClassification,
            "qa": XLMRobertaForQuestionAnswering,
            "mlm": XLMRobertaForMaskedLM,
        },
        layers=2,
        layer_norm_eps=1e-6,
    ),
    "distilbert": Family(
        tokenizer="wordpiece-cased",
        classes={
            "model": DistilBertModel,
            "seqcls": DistilBertForSequenceClassification,
            "tokcls": DistilBertForTokenClassification,
            "qa": DistilBertForQuestionAnswering,
            "mlm": DistilBertForMaskedLM,
        },
        layers=2,
        layer_norm_eps=1e-12,
    ),
}


@dataclass
class Head:
    """A head: the class key in `Family.classes` and the config fields it sets."""

    kind: str
    problem_type: str | None = None
    labels: list[str] | None = None


HEADS_BY_SUFFIX = {
    "": Head("model"),
    "seqcls-single": Head("seqcls", "single_label_classification", ["NEGATIVE", "POSITIVE"]),
    "seqcls-multi": Head("seqcls", "multi_label_classification", ["toxic", "insult", "threat", "obscene"]),
    "regression": Head("seqcls", "regression", ["LABEL_0"]),
    "tokcls": Head("tokcls", None, TOKCLS_LABELS),
    "qa": Head("qa"),
    "mlm": Head("mlm"),
    "nli": Head("seqcls", "single_label_classification", ["contradiction", "neutral", "entailment"]),
    "seqcls": Head("seqcls", "single_label_classification", ["sadness", "joy", "love", "anger", "fear"]),
}

ACTIVATIONS = ["gelu", "gelu_new", "relu"]


@dataclass
class Checkpoint:
    name: str
    family: str
    suffix: str
    activation: str
    dtype: torch.dtype = torch.float32
    max_shard_size: str | None = None
    # Another checkpoint whose weights this one stores (in another dtype or sharded).
    same_weights_as: str | None = None


def encoder_checkpoints() -> list[Checkpoint]:
    plans = {
        "bert": ["", "seqcls-single", "seqcls-multi", "regression", "tokcls", "qa", "mlm", "nli"],
        "roberta": ["", "seqcls-single", "seqcls-multi", "regression", "tokcls", "qa", "mlm"],
        "xlmr": ["", "seqcls-single", "seqcls-multi", "regression", "tokcls", "qa", "mlm"],
        "distilbert": ["", "seqcls", "tokcls", "qa", "mlm"],
    }
    checkpoints = []
    for family_index, (family, suffixes) in enumerate(plans.items()):
        for head_index, suffix in enumerate(suffixes):
            name = family if not suffix else f"{family}-{suffix}"
            activation = ACTIVATIONS[(family_index + head_index) % len(ACTIVATIONS)]
            checkpoints.append(Checkpoint(name, family, suffix, activation))
    by_name = {checkpoint.name: checkpoint for checkpoint in checkpoints}

    def variant(base: str, name: str, **changes) -> Checkpoint:
        original = by_name[base]
        return Checkpoint(
            name, original.family, original.suffix, original.activation, same_weights_as=base, **changes
        )

    checkpoints += [
        variant("bert-seqcls-single", "bert-seqcls-single-f16", dtype=torch.float16),
        variant("roberta-tokcls", "roberta-tokcls-bf16", dtype=torch.bfloat16),
        variant("xlmr-qa", "xlmr-qa-sharded", max_shard_size="40KB"),
    ]
    return checkpoints


def tokenizer_source(out: Path, name: str) -> Path:
    source = out / "tokenizers" / name
    if not (source / "tokenizer.json").is_file():
        raise SystemExit(f"{source}/tokenizer.json is missing: run fixtures_tokenizers.py --out {out} first")
    return source


def copy_tokenizer(source: Path, dest: Path, config_changes: dict) -> None:
    """Copies a trained tokenizer folder into a checkpoint, fitting its config to the model."""
    for file in sorted(source.iterdir()):
        if file.is_file():
            shutil.copyfile(file, dest / file.name)
    config_path = dest / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if any(config.get(key) != value for key, value in config_changes.items()):
        config.update(config_changes)
        config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def encoder_config(checkpoint: Checkpoint, tokenizer):
    family = FAMILIES[checkpoint.family]
    head = HEADS_BY_SUFFIX[checkpoint.suffix]
    vocab_size = len(tokenizer)
    common = dict(vocab_size=vocab_size, pad_token_id=tokenizer.pad_token_id, initializer_range=INIT_STD)
    if checkpoint.family == "distilbert":
        config = DistilBertConfig(
            dim=HIDDEN,
            n_layers=family.layers,
            n_heads=HEADS,
            hidden_dim=INTERMEDIATE,
            activation=checkpoint.activation,
            max_position_embeddings=MAX_POSITIONS,
            dropout=0.1,
            attention_dropout=0.1,
            **common,
        )
    else:
        config_class = {"bert": BertConfig, "roberta": RobertaConfig, "xlmr": XLMRobertaConfig}[checkpoint.family]
        roberta_like = checkpoint.family != "bert"
        config = config_class(
            hidden_size=HIDDEN,
            num_hidden_layers=family.layers,
            num_attention_heads=HEADS,
            intermediate_size=INTERMEDIATE,
            hidden_act=checkpoint.activation,
            # RoBERTa's positions start after padding_idx, so it needs two more rows.
            max_position_embeddings=MAX_POSITIONS + 2 if roberta_like else MAX_POSITIONS,
            type_vocab_size=1 if roberta_like else 2,
            layer_norm_eps=family.layer_norm_eps,
            bos_token_id=tokenizer.bos_token_id if roberta_like else None,
            eos_token_id=tokenizer.eos_token_id if roberta_like else None,
            **common,
        )
    if head.labels is not None:
        config.num_labels = len(head.labels)
        config.id2label = dict(enumerate(head.labels))
        config.label2id = {label: index for index, label in enumerate(head.labels)}
    if head.problem_type is not None:
        config.problem_type = head.problem_type
    return config


def spread_weights(model: torch.nn.Module) -> None:
    """Makes every parameter matter: HF initialises biases to 0 and norms to 1, which would let an
    implementation that forgets a bias or a norm's scale pass the tests."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.dim() != 1:
                continue
            if name.endswith("weight"):
                parameter.copy_(1.0 + torch.randn(parameter.shape) * 0.1)
            else:
                parameter.copy_(torch.randn(parameter.shape) * BIAS_STD)
        for name, parameter in model.named_parameters():
            if parameter.dim() == 2 and any(part in name for part in HEAD_PARAMETERS):
                parameter.copy_(torch.randn(parameter.shape) * HEAD_STD)


def save_checkpoint(model, dest: Path, checkpoint: Checkpoint) -> None:
    model = model.to(checkpoint.dtype)
    kwargs = {"safe_serialization": True}
    if checkpoint.max_shard_size is not None:
        kwargs["max_shard_size"] = checkpoint.max_shard_size
    model.save_pretrained(str(dest), **kwargs)


def build_encoder(out: Path, checkpoint: Checkpoint) -> Path:
    family = FAMILIES[checkpoint.family]
    head = HEADS_BY_SUFFIX[checkpoint.suffix]
    source = tokenizer_source(out, family.tokenizer)
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    config = encoder_config(checkpoint, tokenizer)
    model_class = family.classes[head.kind]
    torch.manual_seed(seed_for(checkpoint.same_weights_as or checkpoint.name))
    model = model_class(config).eval()
    spread_weights(model)
    dest = fresh_dir(out / "models" / checkpoint.name)
    save_checkpoint(model, dest, checkpoint)
    tokenizer_changes = {"model_max_length": MAX_POSITIONS}
    if checkpoint.family == "distilbert":
        # DistilBERT takes no token types; transformers' DistilBertTokenizer says the same.
        tokenizer_changes["model_input_names"] = ["input_ids", "attention_mask"]
    copy_tokenizer(source, dest, tokenizer_changes)
    write_encoder_reference(dest, checkpoint, model_class)
    return dest


def encoder_batch(tokenizer, texts, accepted: set[str]) -> dict[str, torch.Tensor]:
    """A right-padded batch of mixed lengths; pairs are encoded as pairs."""
    encodings = []
    for text in texts:
        if isinstance(text, str):
            encodings.append(tokenizer(text))
        else:
            encodings.append(tokenizer(text[0], text[1]))
    batch = tokenizer.pad(encodings, padding=True, return_tensors="pt")
    return {name: tensor.to(torch.int64) for name, tensor in batch.items() if name in accepted}


def write_encoder_reference(dest: Path, checkpoint: Checkpoint, model_class) -> None:
    """Reloads the folder as a consumer would (weights upcast to float32) and records its outputs."""
    model = model_class.from_pretrained(str(dest), dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(dest))
    accepted = set(inspect.signature(model.forward).parameters)
    inputs = encoder_batch(tokenizer, ENCODER_TEXTS, accepted)
    tensors = dict(inputs)
    with torch.no_grad():
        output = model(**inputs, output_hidden_states=True, return_dict=True)
        for index, hidden in enumerate(output.hidden_states):
            tensors[f"hidden_states.{index}"] = hidden
        tensors["last_hidden_state"] = output.hidden_states[-1]
        base = model if model is model.base_model else model.base_model
        base_output = base(**inputs, return_dict=True)
        pooler = getattr(base_output, "pooler_output", None)
        if pooler is not None:
            tensors["pooler_output"] = pooler
        for name in ("logits", "start_logits", "end_logits"):
            value = getattr(output, name, None)
            if value is not None:
                tensors[name] = value
    for name, tensor in tensors.items():
        if tensor.is_floating_point():
            tensors[name] = tensor.to(torch.float32)
    write_tensors(dest / "reference.safetensors", tensors)
    write_json(
        dest / "reference.json",
        {
            "model_class": model_class.__name__,
            "texts": ENCODER_TEXTS,
            "padding_side": tokenizer.padding_side,
            "stored_dtype": str(checkpoint.dtype).removeprefix("torch."),
            "compute_dtype": "float32",
            "tensors": {name: list(tensor.shape) for name, tensor in sorted(tensors.items())},
            "seed": seed_for(checkpoint.same_weights_as or checkpoint.name),
            "same_weights_as": checkpoint.same_weights_as,
            "versions": VERSIONS,
        },
    )


# ---------------------------------------------------------------------------------------------
# GPT-2 and generation


@dataclass
class Gpt2Checkpoint:
    name: str
    activation: str
    n_inner: int | None = INTERMEDIATE
    scale_attn_by_inverse_layer_idx: bool = False
    reorder_and_upcast_attn: bool = False


GPT2_CHECKPOINTS = [
    Gpt2Checkpoint("gpt2", "gelu_new"),
    Gpt2Checkpoint("gpt2-scaled-relu", "relu", scale_attn_by_inverse_layer_idx=True, reorder_and_upcast_attn=True),
    # n_inner None: the MLP is 4 × hidden wide, transformers' default.
    Gpt2Checkpoint("gpt2-gelu", "gelu", n_inner=None),
]


def gpt2_tokenizer(folder: Path):
    """The folder's tokenizer set up for batches the way generation needs: pad = eos, left padding."""
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def generation_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids as `generate()` makes them for left-padded rows (GenerationMixin.prepare_inputs_for_generation)."""
    position_ids = attention_mask.long().cumsum(-1) - 1
    position_ids.masked_fill_(attention_mask == 0, 1)
    return position_ids


def build_gpt2(out: Path, checkpoint: Gpt2Checkpoint) -> Path:
    source = tokenizer_source(out, "bpe-gpt2")
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=MAX_POSITIONS,
        n_embd=HIDDEN,
        n_layer=3,
        n_head=HEADS,
        n_inner=checkpoint.n_inner,
        activation_function=checkpoint.activation,
        scale_attn_by_inverse_layer_idx=checkpoint.scale_attn_by_inverse_layer_idx,
        reorder_and_upcast_attn=checkpoint.reorder_and_upcast_attn,
        layer_norm_epsilon=1e-5,
        initializer_range=GPT2_INIT_STD,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed_for(checkpoint.name))
    model = GPT2LMHeadModel(config).eval()
    spread_weights(model)
    dest = fresh_dir(out / "models" / checkpoint.name)
    model.save_pretrained(str(dest), safe_serialization=True)
    copy_tokenizer(source, dest, {"model_max_length": MAX_POSITIONS})

    model = GPT2LMHeadModel.from_pretrained(str(dest), dtype=torch.float32).eval()
    tokenizer = gpt2_tokenizer(dest)
    batch = tokenizer(GPT2_PROMPTS, padding=True, return_tensors="pt")
    inputs = {
        "input_ids": batch["input_ids"].to(torch.int64),
        "attention_mask": batch["attention_mask"].to(torch.int64),
        "position_ids": generation_positions(batch["attention_mask"]),
    }
    tensors = dict(inputs)
    with torch.no_grad():
        output = model(**inputs, output_hidden_states=True, return_dict=True)
    for index, hidden in enumerate(output.hidden_states):
        tensors[f"hidden_states.{index}"] = hidden
    tensors["logits"] = output.logits
    write_tensors(dest / "reference.safetensors", tensors)
    write_json(
        dest / "reference.json",
        {
            "model_class": "GPT2LMHeadModel",
            "texts": GPT2_PROMPTS,
            "padding_side": "left",
            "pad_token_id": tokenizer.pad_token_id,
            "note": "hidden_states.L is after ln_f; rows where attention_mask is 0 are padding and not meaningful",
            "stored_dtype": "float32",
            "compute_dtype": "float32",
            "tensors": {name: list(tensor.shape) for name, tensor in sorted(tensors.items())},
            "seed": seed_for(checkpoint.name),
            "versions": VERSIONS,
        },
    )
    return dest


def generation_cases(early_eos: int) -> list[tuple[str, list[str], dict, bool]]:
    """(case, prompts, generate kwargs, store per-step logits) for the main gpt2 checkpoint."""
    one = GPT2_PROMPTS[:1]
    every = GPT2_PROMPTS
    greedy = {"do_sample": False, "max_new_tokens": 10}
    return [
        ("greedy", one, greedy, True),
        ("greedy-batch", every, greedy, True),
        ("greedy-batch-no-cache", every, {**greedy, "use_cache": False}, True),
        ("beam3", one, {"do_sample": False, "num_beams": 3, "max_new_tokens": 8}, False),
        (
            "beam4-return2-lp0.5-early",
            one,
            {
                "do_sample": False,
                "num_beams": 4,
                "num_return_sequences": 2,
                "length_penalty": 0.5,
                "early_stopping": True,
                "max_new_tokens": 8,
            },
            False,
        ),
        (
            "beam3-lp2-never-batch",
            every,
            {"do_sample": False, "num_beams": 3, "length_penalty": 2.0, "early_stopping": "never", "max_new_tokens": 8},
            False,
        ),
        ("beam3-batch", every, {"do_sample": False, "num_beams": 3, "max_new_tokens": 8}, False),
        ("repetition-penalty-1.5", every, {**greedy, "repetition_penalty": 1.5}, True),
        ("no-repeat-ngram-2", every, {**greedy, "no_repeat_ngram_size": 2}, False),
        # An eos the model emits early, so that stopping, padding finished rows and min_new_tokens show.
        ("eos-batch", every, {**greedy, "eos_token_id": early_eos}, False),
        ("eos-min-new-tokens-6", every, {**greedy, "eos_token_id": early_eos, "min_new_tokens": 6}, True),
        (
            "eos-beam3-batch",
            every,
            {"do_sample": False, "num_beams": 3, "max_new_tokens": 8, "eos_token_id": early_eos},
            False,
        ),
        ("max-new-tokens-3", every, {"do_sample": False, "max_new_tokens": 3}, False),
        ("max-length-20", one, {"do_sample": False, "max_length": 20}, False),
    ]


def run_generate(model, tokenizer, prompts: list[str], kwargs: dict):
    batch = tokenizer(prompts, padding=True, return_tensors="pt")
    full_kwargs = {"pad_token_id": tokenizer.pad_token_id, **kwargs}
    with torch.no_grad():
        output = model.generate(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            return_dict_in_generate=True,
            output_logits=True,
            output_scores=True,
            **full_kwargs,
        )
    return batch, output, full_kwargs


def write_generation(out: Path, folder: Path, cases) -> None:
    model = GPT2LMHeadModel.from_pretrained(str(folder), dtype=torch.float32).eval()
    tokenizer = gpt2_tokenizer(folder)
    target = out / "generation" / folder.name
    for case, prompts, kwargs, with_logits in cases:
        batch, output, full_kwargs = run_generate(model, tokenizer, prompts, kwargs)
        prompt_length = batch["input_ids"].shape[1]
        sequences = output.sequences
        record = {
            "model": folder.name,
            "prompts": prompts,
            "padding_side": "left",
            "input_ids": batch["input_ids"],
            "attention_mask": batch["attention_mask"],
            "kwargs": full_kwargs,
            "sequences": sequences,
            "new_tokens": sequences[:, prompt_length:],
            "texts": tokenizer.batch_decode(sequences[:, prompt_length:], skip_special_tokens=True),
            "versions": VERSIONS,
        }
        if getattr(output, "sequences_scores", None) is not None:
            record["sequences_scores"] = output.sequences_scores.tolist()
        if with_logits:
            record["logits_file"] = f"{case}.safetensors"
            # (steps, rows, vocab): the raw logits of the last position at each step, and the scores
            # after the logits processors when these changed anything.
            logits = torch.stack(output.logits)
            scores = torch.stack(output.scores)
            tensors = {"sequences": sequences.to(torch.int64), "logits": logits}
            if not torch.equal(logits, scores):
                tensors["scores"] = scores
            write_tensors(target / f"{case}.safetensors", tensors)
        write_json(target / f"{case}.json", record)


def processor_cases() -> list[tuple[str, dict]]:
    """(case, GenerationConfig fields) for the logits processors and warpers."""
    sample = {"do_sample": True, "top_k": 0}
    return [
        ("temperature-0.7", {**sample, "temperature": 0.7}),
        ("temperature-1.5", {**sample, "temperature": 1.5}),
        ("top-k-5", {**sample, "top_k": 5}),
        ("top-k-50-default", {"do_sample": True}),
        ("top-p-0.9", {**sample, "top_p": 0.9}),
        ("top-p-0.3-keep-3", {**sample, "top_p": 0.3, "min_tokens_to_keep": 3}),
        ("min-p-0.1", {**sample, "min_p": 0.1}),
        ("typical-p-0.9", {**sample, "typical_p": 0.9}),
        ("temperature-0.8-top-k-10-top-p-0.8", {"do_sample": True, "temperature": 0.8, "top_k": 10, "top_p": 0.8}),
        ("temperature-1.3-min-p-0.05", {**sample, "temperature": 1.3, "min_p": 0.05}),
        ("top-k-20-typical-p-0.5", {"do_sample": True, "top_k": 20, "typical_p": 0.5}),
        ("repetition-penalty-1.3", {"do_sample": False, "repetition_penalty": 1.3}),
        ("no-repeat-ngram-2", {"do_sample": False, "no_repeat_ngram_size": 2}),
        (
            "repetition-penalty-1.2-temperature-0.7-top-p-0.9",
            {**sample, "repetition_penalty": 1.2, "temperature": 0.7, "top_p": 0.9},
        ),
    ]


def eos_processor_cases(eos_id: int) -> list[tuple[str, dict, int]]:
    """(case, GenerationConfig fields, history length) for the processors of issue 13, the chain
    built as generate() builds it (special tokens and lengths resolved first)."""
    return [
        ("forced-bos-3-first-step", {"forced_bos_token_id": 3}, 1),
        ("forced-bos-3-later-step", {"forced_bos_token_id": 3}, 7),
        ("forced-eos-2-last-step", {"forced_eos_token_id": 2, "max_length": 8}, 7),
        ("forced-eos-2-6-last-step", {"forced_eos_token_id": [2, 6], "max_length": 8}, 7),
        ("forced-eos-2-earlier-step", {"forced_eos_token_id": 2, "max_length": 12}, 7),
        ("min-length-10", {"min_length": 10, "eos_token_id": eos_id}, 7),
        ("min-length-5-reached", {"min_length": 5, "eos_token_id": eos_id}, 7),
        ("min-new-tokens-3-resolved", {"min_new_tokens": 3, "eos_token_id": eos_id}, 7),
        ("min-new-tokens-4-resolved", {"min_new_tokens": 4, "eos_token_id": eos_id}, 7),
        (
            "bad-words",
            {"bad_words_ids": [[7], [5, 11], [4, 8], [9, 9, 2], [eos_id]], "eos_token_id": eos_id},
            7,
        ),
        (
            "every-processor-order",
            {
                "repetition_penalty": 1.2,
                "no_repeat_ngram_size": 2,
                "bad_words_ids": [[5, 11]],
                "min_length": 10,
                "forced_bos_token_id": 3,
                "forced_eos_token_id": 2,
                "max_length": 8,
                "eos_token_id": eos_id,
            },
            7,
        ),
    ]


def write_processors(out: Path, folder: Path) -> None:
    """Logits processors on given logits: the inputs, then each chain's output scores and the
    distribution they give (softmax), as `generate()` builds the chain from a GenerationConfig."""
    model = GPT2LMHeadModel.from_pretrained(str(folder), dtype=torch.float32).eval()
    vocab = model.config.vocab_size
    eos_id = model.config.eos_token_id
    generator = torch.Generator().manual_seed(seed_for("processors"))
    # Two rows; the histories repeat tokens so repetition and n-gram rules have something to act on.
    input_ids = torch.tensor([[5, 9, 5, 11, 9, 7, 5], [3, 4, 3, 4, 8, 3, 4]], dtype=torch.int64) % vocab
    prompt_length = 4
    scores = torch.randn(2, vocab, generator=generator) * 3.0
    tensors = {"input_ids": input_ids, "scores": scores}
    cases = {}
    for case, fields in processor_cases():
        generation_config = GenerationConfig(**fields)
        chain = model._get_logits_processor(
            generation_config=generation_config,
            input_ids_seq_length=prompt_length,
            encoder_input_ids=input_ids,
            logits_processor=LogitsProcessorList(),
        )
        processed = chain(input_ids, scores.clone())
        tensors[f"{case}.scores"] = processed
        tensors[f"{case}.probs"] = torch.softmax(processed, dim=-1)
        cases[case] = {"generation_config": fields, "chain": [type(processor).__name__ for processor in chain]}
    # min_new_tokens needs the eos id, which generate() resolves before building the chain.
    chain = LogitsProcessorList([MinNewTokensLengthLogitsProcessor(prompt_length, 5, eos_id)])
    processed = chain(input_ids, scores.clone())
    tensors["min-new-tokens-5.scores"] = processed
    tensors["min-new-tokens-5.probs"] = torch.softmax(processed, dim=-1)
    cases["min-new-tokens-5"] = {
        "generation_config": {"min_new_tokens": 5, "eos_token_id": eos_id},
        "chain": [type(processor).__name__ for processor in chain],
    }
    for case, fields, history_length in eos_processor_cases(eos_id):
        generation_config = GenerationConfig(**fields)
        model._prepare_special_tokens(generation_config, kwargs_has_attention_mask=True)
        generation_config = model._prepare_generated_length(
            generation_config,
            has_default_max_length="max_length" not in fields,
            has_default_min_length="min_length" not in fields,
            model_input_name="input_ids",
            inputs_tensor=input_ids,
            input_ids_length=prompt_length,
        )
        chain = model._get_logits_processor(
            generation_config=generation_config,
            input_ids_seq_length=prompt_length,
            encoder_input_ids=input_ids,
            logits_processor=LogitsProcessorList(),
        )
        processed = chain(input_ids[:, :history_length], scores.clone())
        tensors[f"{case}.scores"] = processed
        tensors[f"{case}.probs"] = torch.softmax(processed, dim=-1)
        cases[case] = {
            "generation_config": fields,
            "history_length": history_length,
            "chain": [type(processor).__name__ for processor in chain],
        }
    write_tensors(out / "generation" / "processors.safetensors", tensors)
    write_json(
        out / "generation" / "processors.json",
        {
            "vocab_size": vocab,
            "prompt_length": prompt_length,
            "eos_token_id": eos_id,
            "note": "tensors: input_ids (2, 7), scores (2, vocab); per case `<case>.scores` after the chain "
            "(-inf where filtered) and `<case>.probs` = softmax of them; the chain sees the first "
            "`history_length` tokens of each row (all 7 when absent)",
            "cases": cases,
            "versions": VERSIONS,
        },
    )


def build_gpt2_all(out: Path) -> None:
    folders = [build_gpt2(out, checkpoint) for checkpoint in GPT2_CHECKPOINTS]
    for folder in folders:
        print(f"models/{folder.name}", flush=True)
    fresh_dir(out / "generation")
    main_folder = folders[0]
    model = GPT2LMHeadModel.from_pretrained(str(main_folder), dtype=torch.float32).eval()
    tokenizer = gpt2_tokenizer(main_folder)
    _, probe, _ = run_generate(model, tokenizer, GPT2_PROMPTS, {"do_sample": False, "max_new_tokens": 10})
    prompt_length = probe.sequences.shape[1] - 10
    # The third new token of the first prompt: an "eos" the model does emit, early.
    early_eos = int(probe.sequences[0, prompt_length + 2])
    write_generation(out, main_folder, generation_cases(early_eos))
    for folder in folders[1:]:
        write_generation(
            out,
            folder,
            [
                ("greedy-batch", GPT2_PROMPTS, {"do_sample": False, "max_new_tokens": 10}, True),
                ("greedy-batch-no-cache", GPT2_PROMPTS, {"do_sample": False, "max_new_tokens": 10, "use_cache": False}, False),
                ("beam3-batch", GPT2_PROMPTS, {"do_sample": False, "num_beams": 3, "max_new_tokens": 8}, False),
            ],
        )
    write_processors(out, main_folder)
    print("generation/", flush=True)


# ---------------------------------------------------------------------------------------------
# Pipelines

TEXTS_TO_CLASSIFY = [
    "I love this movie, it was wonderful!",
    "The service was slow and the food was cold.",
    "Okay.",
    "Transformers provides thousands of pretrained models to perform tasks on texts such as "
    "classification, information extraction and question answering.",
]

NER_TEXT = "My name is Wolfgang and I live in Berlin. Sarah works for Hugging Face in New York City."

QA_INPUT = {"question": "Where does Sarah live?", "context": "Sarah lives in London with her two cats and a dog."}
QA_LONG_INPUT = {"question": "Which country holds most of the rainforest?", "context": LONG_CONTEXT}

ZERO_SHOT_TEXTS = [
    "The team scored twice in the final minutes to win the championship.",
    "Parliament passed the new budget after a long debate.",
]


@dataclass
class PipelineCase:
    task: str
    model: str
    case: str
    inputs: object
    options: dict = field(default_factory=dict)


def mask_token(out: Path, model: str) -> str:
    return AutoTokenizer.from_pretrained(str(out / "models" / model)).mask_token


def pipeline_cases(out: Path) -> list[PipelineCase]:
    cases = []

    def add(task, model, case, inputs, **options):
        cases.append(PipelineCase(task, model, f"{model}-{case}", inputs, options))

    # text-classification
    task = "text-classification"
    add(task, "bert-seqcls-single", "single", TEXTS_TO_CLASSIFY[0])
    add(task, "bert-seqcls-single", "batch", TEXTS_TO_CLASSIFY)
    add(task, "bert-seqcls-single", "batch-size-2", TEXTS_TO_CLASSIFY, batch_size=2)
    add(task, "bert-seqcls-single", "top-k-none", TEXTS_TO_CLASSIFY, top_k=None)
    add(task, "bert-seqcls-single", "top-k-1", TEXTS_TO_CLASSIFY[:2], top_k=1)
    add(task, "bert-seqcls-single", "function-none", TEXTS_TO_CLASSIFY, top_k=None, function_to_apply="none")
    add(task, "bert-seqcls-single", "function-sigmoid", TEXTS_TO_CLASSIFY, top_k=None, function_to_apply="sigmoid")
    add(task, "bert-seqcls-single", "pair", {"text": "I love this movie.", "text_pair": "It was wonderful!"}, top_k=None)
    add(task, "bert-seqcls-multi", "default", TEXTS_TO_CLASSIFY)
    add(task, "bert-seqcls-multi", "top-k-none", TEXTS_TO_CLASSIFY, top_k=None)
    add(task, "bert-seqcls-multi", "top-k-2-softmax", TEXTS_TO_CLASSIFY, top_k=2, function_to_apply="softmax")
    add(task, "bert-regression", "default", TEXTS_TO_CLASSIFY)
    add(task, "bert-regression", "top-k-none", TEXTS_TO_CLASSIFY, top_k=None)
    add(task, "bert-nli", "top-k-none", TEXTS_TO_CLASSIFY[:2], top_k=None)
    for model in ["roberta-seqcls-single", "xlmr-seqcls-single", "distilbert-seqcls", "bert-seqcls-single-f16"]:
        add(task, model, "batch", TEXTS_TO_CLASSIFY)
        add(task, model, "top-k-none", TEXTS_TO_CLASSIFY, top_k=None)
    for model in ["roberta-seqcls-multi", "xlmr-seqcls-multi"]:
        add(task, model, "top-k-none", TEXTS_TO_CLASSIFY, top_k=None)
    for model in ["roberta-regression", "xlmr-regression"]:
        add(task, model, "default", TEXTS_TO_CLASSIFY)

    # token-classification
    task = "token-classification"
    for model in ["bert-tokcls", "roberta-tokcls", "xlmr-tokcls", "distilbert-tokcls"]:
        for strategy in ["none", "simple", "first", "average", "max"]:
            add(task, model, f"aggregation-{strategy}", NER_TEXT, aggregation_strategy=strategy)
        add(task, model, "stride-16-simple", LONG_TEXT, aggregation_strategy="simple", stride=16)
    add(task, "bert-tokcls", "ignore-labels-none", NER_TEXT, ignore_labels=[])
    add(task, "bert-tokcls", "ignore-labels-o-i-per-simple", NER_TEXT, ignore_labels=["O", "I-PER"], aggregation_strategy="simple")
    add(task, "bert-tokcls", "batch-simple", [NER_TEXT, "Hello Anna!", TEXTS_TO_CLASSIFY[1]], aggregation_strategy="simple")
    add(task, "bert-tokcls", "batch-size-2-first", [NER_TEXT, "Hello Anna!", TEXTS_TO_CLASSIFY[1]], aggregation_strategy="first", batch_size=2)
    add(task, "bert-tokcls", "stride-8-first", LONG_TEXT, aggregation_strategy="first", stride=8)
    add(task, "bert-tokcls", "stride-24-max", LONG_TEXT, aggregation_strategy="max", stride=24)
    add(task, "bert-tokcls", "stride-16-average", LONG_TEXT, aggregation_strategy="average", stride=16)
    add(task, "bert-tokcls", "long-truncated", LONG_TEXT)
    add(task, "roberta-tokcls-bf16", "aggregation-simple", NER_TEXT, aggregation_strategy="simple")
    add(task, "roberta-tokcls-bf16", "aggregation-none", NER_TEXT)

    # question-answering
    task = "question-answering"
    for model in ["bert-qa", "roberta-qa", "xlmr-qa", "distilbert-qa"]:
        add(task, model, "default", QA_INPUT)
        add(task, model, "top-k-3", QA_INPUT, top_k=3)
        add(task, model, "long-doc-stride-24-max-seq-len-64", QA_LONG_INPUT, doc_stride=24, max_seq_len=64, top_k=2)
    add(task, "bert-qa", "long-default", QA_LONG_INPUT)
    add(task, "bert-qa", "max-answer-len-3", QA_INPUT, max_answer_len=3, top_k=2)
    add(task, "bert-qa", "max-question-len-3", QA_LONG_INPUT, max_question_len=3)
    add(task, "bert-qa", "handle-impossible-answer", QA_INPUT, handle_impossible_answer=True, top_k=2)
    add(task, "bert-qa", "align-to-words-false", QA_INPUT, align_to_words=False, top_k=2)
    add(task, "bert-qa", "batch", [QA_INPUT, QA_LONG_INPUT, {"question": "Who?", "context": "Anna."}])
    add(task, "bert-qa", "batch-size-2", [QA_INPUT, QA_LONG_INPUT, {"question": "Who?", "context": "Anna."}], batch_size=2)
    add(task, "roberta-qa", "align-to-words-false", QA_INPUT, align_to_words=False, top_k=2)
    add(task, "xlmr-qa-sharded", "default", QA_INPUT)
    add(task, "xlmr-qa-sharded", "long-default", QA_LONG_INPUT, top_k=2)

    # fill-mask
    task = "fill-mask"
    for model in ["bert-mlm", "roberta-mlm", "xlmr-mlm", "distilbert-mlm"]:
        mask = mask_token(out, model)
        add(task, model, "default", f"The capital of France is {mask}.")
        add(task, model, "top-k-2-batch", [f"Hello {mask}!", f"The {mask} is sleeping on the sofa today."], top_k=2)
        add(task, model, "targets", f"The capital of France is {mask}.", targets=["Paris", "London", "the"])
    mask = mask_token(out, "bert-mlm")
    add(task, "bert-mlm", "two-masks", f"My {mask} lives in {mask}.", top_k=3)
    add(task, "bert-mlm", "top-k-10", f"The capital of France is {mask}.", top_k=10)
    add(task, "bert-mlm", "batch-size-2", [f"Hello {mask}!", f"The {mask} is sleeping.", f"I {mask} you."], batch_size=2)

    # feature-extraction
    task = "feature-extraction"
    for model in ["bert", "roberta", "xlmr", "distilbert"]:
        add(task, model, "single", "Hello world!")
    add(task, "bert", "batch", ["Hello world!", "A longer sentence for the batch."])
    add(task, "bert", "batch-size-2", ["Hello world!", "A longer sentence for the batch.", "Hi."], batch_size=2)

    # zero-shot-classification
    task = "zero-shot-classification"
    labels = ["politics", "sports", "technology"]
    add(task, "bert-nli", "single", ZERO_SHOT_TEXTS[0], candidate_labels=labels)
    add(task, "bert-nli", "batch", ZERO_SHOT_TEXTS, candidate_labels=labels)
    add(task, "bert-nli", "multi-label", ZERO_SHOT_TEXTS, candidate_labels=labels, multi_label=True)
    add(task, "bert-nli", "template", ZERO_SHOT_TEXTS[1], candidate_labels=labels, hypothesis_template="The topic of this text is {}.")
    add(task, "bert-nli", "one-label", ZERO_SHOT_TEXTS[1], candidate_labels=["politics"])
    add(task, "bert-nli", "one-label-multi", ZERO_SHOT_TEXTS[1], candidate_labels="politics, economy", multi_label=True)

    # text-generation
    task = "text-generation"
    greedy = {"do_sample": False, "max_new_tokens": 8}
    add(task, "gpt2", "default", GPT2_PROMPTS[0], **greedy)
    add(task, "gpt2", "new-text", GPT2_PROMPTS[0], return_full_text=False, **greedy)
    add(task, "gpt2", "prefix", GPT2_PROMPTS[1], prefix="Once upon a time. ", **greedy)
    add(task, "gpt2", "prefix-new-text", GPT2_PROMPTS[1], prefix="Once upon a time. ", return_full_text=False, **greedy)
    add(task, "gpt2", "list", GPT2_PROMPTS, **greedy)
    add(task, "gpt2", "beam3", GPT2_PROMPTS[0], num_beams=3, **greedy)
    add(task, "gpt2", "return-tensors", GPT2_PROMPTS[0], return_tensors=True, **greedy)
    add(task, "gpt2-scaled-relu", "default", GPT2_PROMPTS[2], **greedy)
    add(task, "gpt2-gelu", "new-text", GPT2_PROMPTS[2], return_full_text=False, **greedy)
    return cases


def write_pipelines(out: Path) -> None:
    fresh_dir(out / "pipelines")
    loaded = {}
    for case in pipeline_cases(out):
        key = (case.task, case.model)
        if key not in loaded:
            folder = str(out / "models" / case.model)
            # dtype float32: pipeline() defaults to dtype="auto", which would run the f16/bf16 checkpoints
            # in half precision; oxformer computes in f32, as from_pretrained(dtype=float32) does.
            loaded[key] = pipeline(case.task, model=folder, tokenizer=folder, device="cpu", dtype=torch.float32)
        runner = loaded[key]
        with torch.no_grad():
            output = runner(case.inputs, **case.options)
        write_json(
            out / "pipelines" / case.task / f"{case.case}.json",
            {
                "task": case.task,
                "model": case.model,
                "inputs": case.inputs,
                "options": case.options,
                "output": output,
                "versions": VERSIONS,
            },
        )
    print("pipelines/", flush=True)


# ---------------------------------------------------------------------------------------------
# Sentence embeddings: tiny sentence-transformers folders and the real all-MiniLM-L6-v2

ST_CHECKPOINTS = {
    # name: (pooling mode, normalize, hidden activation)
    "st-mean": ("mean", False, "gelu"),
    "st-cls": ("cls", False, "gelu_new"),
    "st-max-normalize": ("max", True, "relu"),
}


def sentence_embeddings(model, sentences: list[str]) -> dict[str, torch.Tensor]:
    """The tokenized batch, the transformer's token embeddings and sentence-transformers' embeddings."""
    features = model.tokenize(sentences)
    with torch.no_grad():
        output = model(dict(features))
        embeddings = model.encode(sentences, convert_to_tensor=True, batch_size=len(sentences))
    tensors = {name: tensor.to(torch.int64) for name, tensor in features.items()}
    tensors["token_embeddings"] = output["token_embeddings"]
    tensors["sentence_embedding"] = embeddings
    return tensors


def build_sentence_transformers(out: Path) -> None:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers import models as st_models

    for name, (pooling, normalize, activation) in ST_CHECKPOINTS.items():
        # The transformer inside is a tiny BERT like `models/bert`. Its pooler is unused by
        # sentence-transformers, but AutoModel would add a fresh one on loading: save our own.
        staging = fresh_dir(out / "models" / f"{name}.partial")
        bert = Checkpoint(f"{name}-bert", "bert", "", activation)
        source = tokenizer_source(out, FAMILIES["bert"].tokenizer)
        tokenizer = AutoTokenizer.from_pretrained(str(source))
        torch.manual_seed(seed_for(name))
        model = BertModel(encoder_config(bert, tokenizer)).eval()
        spread_weights(model)
        model.save_pretrained(str(staging), safe_serialization=True)
        copy_tokenizer(source, staging, {"model_max_length": MAX_POSITIONS})

        transformer = st_models.Transformer(str(staging), max_seq_length=MAX_POSITIONS)
        modules = [transformer, st_models.Pooling(HIDDEN, pooling_mode=pooling)]
        if normalize:
            modules.append(st_models.Normalize())
        dest = fresh_dir(out / "models" / name)
        SentenceTransformer(modules=modules, device="cpu").save(str(dest), create_model_card=False)
        shutil.rmtree(staging)

        model = SentenceTransformer(str(dest), device="cpu")
        tensors = sentence_embeddings(model, SENTENCES)
        write_tensors(dest / "reference.safetensors", tensors)
        write_json(
            dest / "reference.json",
            {
                "model_class": "SentenceTransformer",
                "modules": [type(module).__name__ for module in model],
                "pooling": pooling,
                "normalize": normalize,
                "texts": SENTENCES,
                "note": "token_embeddings: the transformer's last hidden state; sentence_embedding: "
                "model.encode() (after pooling and, if present, Normalize)",
                "tensors": {key: list(value.shape) for key, value in sorted(tensors.items())},
                "seed": seed_for(name),
                "versions": VERSIONS,
            },
        )
        print(f"models/{name}", flush=True)


def write_minilm(out: Path) -> None:
    """Embeddings of the real all-MiniLM-L6-v2 (fetched by `cargo xtask fetch`) and the model card's
    similarity example."""
    from sentence_transformers import SentenceTransformer

    cache = Path(os.environ.get("OXFORMER_CACHE", Path(__file__).resolve().parents[2] / ".cache"))
    folder = cache / "models" / "sentence-transformers" / "all-MiniLM-L6-v2"
    if not (folder / "model.safetensors").is_file():
        raise SystemExit(f"{folder} is missing: run `cargo xtask fetch` first")
    model = SentenceTransformer(str(folder), device="cpu")
    tensors = sentence_embeddings(model, SENTENCES)
    del tensors["token_embeddings"]  # 384 wide: the sentence embeddings are what the tests need
    dest = fresh_dir(out / "minilm")
    write_tensors(dest / "embeddings.safetensors", tensors)
    # The model card's example: "That is a happy person" against three others.
    query, *others = SENTENCES[2:]
    embeddings = tensors["sentence_embedding"]
    similarities = model.similarity(embeddings[2:3], embeddings[3:])[0]
    ranking = sorted(range(len(others)), key=lambda index: -float(similarities[index]))
    write_json(
        dest / "reference.json",
        {
            "model": "sentence-transformers/all-MiniLM-L6-v2",
            "folder": "<cache>/models/sentence-transformers/all-MiniLM-L6-v2 (cargo xtask fetch)",
            "texts": SENTENCES,
            "modules": [type(module).__name__ for module in model],
            "similarity_function": model.similarity_fn_name,
            "similarity_query": query,
            "similarity_candidates": others,
            "similarities": similarities,
            "ranking": [others[index] for index in ranking],
            "similarity_matrix": model.similarity(embeddings, embeddings),
            "tensors": {key: list(value.shape) for key, value in sorted(tensors.items())},
            "versions": VERSIONS,
        },
    )
    print("minilm/", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="the fixtures folder to write")
    parser.add_argument(
        "--only",
        choices=["encoders", "gpt2", "pipelines", "sentence-transformers", "minilm"],
        action="append",
        help="write only these parts (for development; the committed fixtures are written whole)",
    )
    args = parser.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    out: Path = args.out.resolve()
    parts = set(args.only or ["encoders", "gpt2", "pipelines", "sentence-transformers", "minilm"])
    if "encoders" in parts:
        for checkpoint in encoder_checkpoints():
            build_encoder(out, checkpoint)
            print(f"models/{checkpoint.name}", flush=True)
    if "gpt2" in parts:
        build_gpt2_all(out)
    if "pipelines" in parts:
        write_pipelines(out)
    if "sentence-transformers" in parts:
        build_sentence_transformers(out)
    if "minilm" in parts:
        write_minilm(out)


if __name__ == "__main__":
    main()
