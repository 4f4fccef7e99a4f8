#!/usr/bin/env python3
"""The peers of `cargo xtask compare` (xtask/src/compare.rs): PyTorch and ONNX Runtime on the models and
inputs that oxformer is timed on, in the same run.

Run from the pinned venv (`<cache>/pyenv`, requirements.txt + requirements-compare.txt). Subcommands:

- Encoder-decoder models (issue 13): `build` also writes random-weight `t5-small` (T5ForConditionalGeneration,
  `T5Config()`: d_model 512, 6+6 layers) and `opus-mt-en-de` (MarianMTModel with opus-mt-en-de's shapes:
  d_model 512, 6+6 layers, 8 heads, FFN 2048, vocabulary 58101, swish, scaled embeddings), and converts
  both with CTranslate2's `TransformersConverter` into `ct2/<name>` (float32). `serve --framework torch|ct2`
  answers `{"op": "seq2seq", "model": DIR, "ct2_model": DIR, "batch": B, "num_beams": K,
  "input_tokens": S, "new_tokens": N, ...}`: exactly N new tokens per input (EOS suppressed: `min_new_tokens`
  / `min_decoding_length`) from S random source ids; `tokens` is B x N.
- `build --out DIR`: random-weight checkpoints from transformers' default configs, written once (a stamp
  in each folder says which recipe wrote it) as HF folders oxformer's CLI can load:
  `bert-base` (BertModel, `BertConfig()`), `bert-base-seqcls` (BertForSequenceClassification, labels
  NEGATIVE/POSITIVE, for the cold start), `distilbert-base` (DistilBertModel, `DistilBertConfig()`),
  `gpt2-small` (GPT2LMHeadModel, `GPT2Config()`); safetensors weights; the bert-base-uncased tokenizer of
  the fetched all-MiniLM-L6-v2 for the encoders, the real GPT-2 tokenizer for GPT-2. The encoders are
  exported to `onnx/<name>.onnx` (opset 17, dynamic batch and sequence axes), fused by ONNX Runtime's
  transformer optimizer into `onnx/<name>.fused.onnx` (what the comparison runs), both checked against
  PyTorch on the attended positions of a padded batch.
  Prints one JSON line: the folders, ONNX files and the export check.
- `serve --framework torch|ort`: reads one JSON request per line on stdin, answers one JSON line on
  stdout. Models stay loaded between requests so that the rounds of the comparison can alternate with
  oxformer without paying Python's import again. Requests:
  `{"op": "encoder", "model": DIR, "onnx": FILE, "batch": B, "seq": S, "lengths": [..] | null,
    "iterations": N, "warmup": W, "seed": K}` and
  `{"op": "generate", "model": DIR, "new_tokens": N, "prompt_tokens": P, "iterations": N, "warmup": W,
    "seed": K}`; replies `{"ok": true, "times_ms": [...], "median_ms": x, "tokens": n, "tokens_per_s": y}`
  or `{"ok": false, "error": "..."}`.
- `load --model DIR --kind encoder|gpt2`: a fresh process that imports torch + transformers, loads the
  folder and runs one forward (1 x 128) or one short generation; prints import/load/forward times and the
  peak resident set size (VmHWM of /proc/self/status) after loading and at the end.
- `pipeline --model DIR TEXT`: what a user writes: `pipeline("text-classification", model=DIR)(TEXT)`,
  printed as JSON. The xtask times the whole process (cold start to the first classification).

PyTorch runs with `torch.set_num_threads(2)` under `inference_mode`; ONNX Runtime with
`intra_op_num_threads=2` and every graph optimisation (ORT_ENABLE_ALL), as in PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from pathlib import Path

THREADS = 2
OPSET = 17
# Bump when the folders' recipe changes: the stamp makes `build` write them again.
RECIPE = "compare-models-1"
ENCODERS = ("bert-base", "bert-base-seqcls", "distilbert-base")
# Encoder-decoder folders (issue 13), each also converted for CTranslate2 into ct2/<name>.
SEQ2SEQ = ("t5-small", "opus-mt-en-de")
SEQ2SEQ_RECIPE = "compare-seq2seq-1"
EXPORTED = ("bert-base", "distilbert-base")


def peak_rss_mb() -> float:
    """The process's peak resident set size so far (VmHWM), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("/proc/self/status has no VmHWM line")


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2.0


def emit(value) -> None:
    print(json.dumps(value, sort_keys=True), flush=True)


# ---------------------------------------------------------------------------------------------------
# build


def seed_for(name: str) -> int:
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def stamp_matches(folder: Path, stamp: dict) -> bool:
    path = folder / "compare-stamp.json"
    try:
        return json.loads(path.read_text()) == stamp
    except (OSError, ValueError):
        return False


def write_stamp(folder: Path, stamp: dict) -> None:
    (folder / "compare-stamp.json").write_text(json.dumps(stamp, sort_keys=True, indent=1) + "\n")


def copy_bert_tokenizer(cache: Path, dest: Path) -> None:
    import shutil

    source = cache / "models" / "sentence-transformers" / "all-MiniLM-L6-v2"
    names = ["tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"]
    for name in names:
        if not (source / name).is_file():
            raise SystemExit(f"{source / name} is missing: run `cargo xtask fetch` first")
        shutil.copyfile(source / name, dest / name)


def write_gpt2_tokenizer(cache: Path, dest: Path) -> None:
    from transformers import GPT2TokenizerFast

    source = cache / "models" / "gpt2-tokenizer"
    for name in ["vocab.json", "merges.txt"]:
        if not (source / name).is_file():
            raise SystemExit(f"{source / name} is missing: run `cargo xtask fetch` first")
    tokenizer = GPT2TokenizerFast(
        vocab_file=str(source / "vocab.json"),
        merges_file=str(source / "merges.txt"),
        model_max_length=1024,
    )
    tokenizer.save_pretrained(str(dest))


def build_folder(name: str, cache: Path, dest: Path) -> None:
    import shutil

    import torch
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        BertModel,
        DistilBertConfig,
        DistilBertModel,
        GPT2Config,
        GPT2LMHeadModel,
    )

    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    torch.manual_seed(seed_for(name))
    if name == "bert-base":
        model = BertModel(BertConfig())
    elif name == "bert-base-seqcls":
        labels = {0: "NEGATIVE", 1: "POSITIVE"}
        config = BertConfig(id2label=labels, label2id={v: k for k, v in labels.items()})
        model = BertForSequenceClassification(config)
    elif name == "distilbert-base":
        model = DistilBertModel(DistilBertConfig())
    elif name == "gpt2-small":
        model = GPT2LMHeadModel(GPT2Config())
    else:
        raise ValueError(name)
    model.eval()
    model.save_pretrained(str(dest), safe_serialization=True)
    if name == "gpt2-small":
        write_gpt2_tokenizer(cache, dest)
    else:
        copy_bert_tokenizer(cache, dest)


def positional_encoder(model, input_names: list[str]):
    """The HF encoder as a module with plain positional inputs and tuple outputs, for the ONNX graph."""
    import torch

    class Positional(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *inputs):
            outputs = self.model(**dict(zip(input_names, inputs)), return_dict=True)
            if getattr(outputs, "pooler_output", None) is not None:
                return outputs.last_hidden_state, outputs.pooler_output
            return (outputs.last_hidden_state,)

    return Positional().eval()


def encoder_input_names(model) -> list[str]:
    import inspect

    accepted = inspect.signature(model.forward).parameters
    return [name for name in ("input_ids", "attention_mask", "token_type_ids") if name in accepted]


def export_onnx(folder: Path, path: Path) -> dict:
    """Exports the encoder in `folder` to `path`; returns the largest difference to PyTorch."""
    import numpy as np
    import onnxruntime
    import torch
    from transformers import AutoModel

    # The eager attention exports as the MatMul/Softmax pattern ONNX Runtime's attention fusion knows.
    model = AutoModel.from_pretrained(str(folder), dtype=torch.float32, attn_implementation="eager").eval()
    names = encoder_input_names(model)
    inputs = make_encoder_inputs(model.config.vocab_size, batch=2, seq=16, lengths=[16, 9], seed=1)
    tensors = tuple(torch.from_numpy(inputs[name]) for name in names)
    wrapped = positional_encoder(model, names)
    with torch.no_grad():
        expected = wrapped(*tensors)
    outputs = ["last_hidden_state", "pooler_output"][: len(expected)]
    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    axes["last_hidden_state"] = {0: "batch", 1: "sequence"}
    if len(outputs) == 2:
        axes["pooler_output"] = {0: "batch"}
    tmp = path.with_suffix(".onnx.partial")
    torch.onnx.export(
        wrapped,
        tensors,
        str(tmp),
        input_names=names,
        output_names=outputs,
        dynamic_axes=axes,
        opset_version=OPSET,
        do_constant_folding=True,
        dynamo=False,
    )
    tmp.replace(path)
    # ONNX Runtime at its best: its transformer optimizer fuses embeddings + LayerNorm, attention
    # (one Attention op), bias + GELU and skip + LayerNorm, beyond what the session's own graph
    # optimisations find in the exported graph.
    from onnxruntime.transformers import optimizer

    fused = optimizer.optimize_model(str(path), model_type="bert", opt_level=0)
    fused_path = fused_onnx_path(path)
    fused.save_model_to_file(str(fused_path.with_suffix(".partial")))
    fused_path.with_suffix(".partial").replace(fused_path)

    # Padded positions differ between implementations of the mask; compare what is attended.
    attended = inputs["attention_mask"].astype(bool)

    def difference(session) -> float:
        got = session.run(None, {name: inputs[name] for name in names})
        hidden = np.abs(np.asarray(got[0]) - expected[0].numpy())[attended]
        rest = [np.abs(np.asarray(a) - b.numpy()).max() for a, b in zip(got[1:], expected[1:])]
        return float(max([hidden.max(), *rest]))

    return {
        "max_abs_diff_vs_torch": difference(ort_session(path)),
        "fused_max_abs_diff_vs_torch": difference(ort_session(fused_path)),
        "fused_operators": {k: v for k, v in fused.get_fused_operator_statistics().items() if v},
        "inputs": names,
        "outputs": outputs,
    }


def fused_onnx_path(path: Path) -> Path:
    return path.with_name(path.stem + ".fused.onnx")


def build(args) -> None:
    import onnx
    import onnxruntime
    import torch
    import transformers

    out = Path(args.out)
    cache = Path(args.cache)
    stamp = {
        "recipe": RECIPE,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "opset": OPSET,
    }
    manifest = {"folders": {}, "onnx": {}, "onnx_fused": {}, "export_check": {}, "built": []}
    # --seq2seq-only: the encoder-decoder folders alone
    for name in () if args.seq2seq_only else ENCODERS + ("gpt2-small",):
        folder = out / name
        if not stamp_matches(folder, stamp):
            print(f"compare.py: writing {folder}", file=sys.stderr, flush=True)
            build_folder(name, cache, folder)
            write_stamp(folder, stamp)
            manifest["built"].append(name)
        manifest["folders"][name] = str(folder)
    build_seq2seq(out, stamp, manifest)
    onnx_dir = out / "onnx"
    onnx_dir.mkdir(parents=True, exist_ok=True)
    for name in () if args.seq2seq_only else EXPORTED:
        path = onnx_dir / f"{name}.onnx"
        check_path = onnx_dir / f"{name}.check.json"
        folder_stamp = (out / name / "compare-stamp.json").read_text()
        current = None
        try:
            current = json.loads(check_path.read_text())
        except (OSError, ValueError):
            pass
        stale = (
            current is None
            or current.get("stamp") != folder_stamp
            or "fused_max_abs_diff_vs_torch" not in current
        )
        if stale or not path.is_file() or not fused_onnx_path(path).is_file():
            print(f"compare.py: exporting {path}", file=sys.stderr, flush=True)
            check = export_onnx(out / name, path)
            check["stamp"] = folder_stamp
            check_path.write_text(json.dumps(check, sort_keys=True, indent=1) + "\n")
            manifest["built"].append(f"onnx/{name}")
            current = check
        manifest["onnx"][name] = str(path)
        manifest["onnx_fused"][name] = str(fused_onnx_path(path))
        manifest["export_check"][name] = current["max_abs_diff_vs_torch"]
        manifest["export_check"][f"{name} fused"] = current["fused_max_abs_diff_vs_torch"]
    manifest["versions"] = {k: v for k, v in stamp.items() if k != "recipe"}
    # the instruction set PyTorch's kernels dispatch to (capped by ATEN_CPU_CAPABILITY, which
    # `cargo xtask compare` sets with OXFORMER_ISA); ONNX Runtime has no such switch
    manifest["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    emit(manifest)


# ---------------------------------------------------------------------------------------------------
# timing


def make_encoder_inputs(vocab_size: int, batch: int, seq: int, lengths, seed: int) -> dict:
    """Random ids (seeded), right padding: row i attends to its first lengths[i] tokens."""
    import numpy as np

    if lengths:
        batch, seq = len(lengths), max(lengths)
    else:
        lengths = [seq] * batch
    rng = np.random.default_rng(seed)
    input_ids = rng.integers(1000, vocab_size, size=(batch, seq), dtype=np.int64)
    attention_mask = np.zeros((batch, seq), dtype=np.int64)
    for row, length in enumerate(lengths):
        attention_mask[row, :length] = 1
    input_ids[attention_mask == 0] = 0
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "token_type_ids": np.zeros((batch, seq), dtype=np.int64),
    }


def ort_session(path: Path):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def timed(run, iterations: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000.0)
    return times


class Server:
    def __init__(self, framework: str):
        import torch

        torch.set_num_threads(THREADS)
        self.framework = framework
        self.models = {}

    def torch_model(self, folder: str, causal: bool):
        import torch
        from transformers import AutoModel, AutoModelForCausalLM

        key = ("torch", folder)
        if key not in self.models:
            cls = AutoModelForCausalLM if causal else AutoModel
            self.models[key] = cls.from_pretrained(folder, dtype=torch.float32).eval()
        return self.models[key]

    def ort_model(self, path: str):
        key = ("ort", path)
        if key not in self.models:
            session = ort_session(Path(path))
            names = [item.name for item in session.get_inputs()]
            self.models[key] = (session, names)
        return self.models[key]

    def vocab_size(self, folder: str) -> int:
        return json.loads((Path(folder) / "config.json").read_text())["vocab_size"]

    def encoder(self, request: dict) -> dict:
        import torch

        inputs = make_encoder_inputs(
            self.vocab_size(request["model"]),
            request["batch"],
            request["seq"],
            request.get("lengths"),
            request.get("seed", 0),
        )
        tokens = int(inputs["attention_mask"].sum())
        if self.framework == "torch":
            model = self.torch_model(request["model"], causal=False)
            names = encoder_input_names(model)
            feed = {name: torch.from_numpy(inputs[name]) for name in names}

            def run():
                with torch.inference_mode():
                    model(**feed)

        else:
            session, names = self.ort_model(request["onnx"])
            feed = {name: inputs[name] for name in names}

            def run():
                session.run(None, feed)

        times = timed(run, request["iterations"], request["warmup"])
        return {"times_ms": times, "tokens": tokens}

    def generate(self, request: dict) -> dict:
        import numpy as np
        import torch

        if self.framework != "torch":
            raise ValueError("generation is compared with PyTorch only")
        model = self.torch_model(request["model"], causal=True)
        new_tokens = request["new_tokens"]
        rng = np.random.default_rng(request.get("seed", 0))
        prompt = torch.from_numpy(
            rng.integers(0, model.config.vocab_size, size=(1, request["prompt_tokens"]), dtype=np.int64)
        )
        mask = torch.ones_like(prompt)
        eos = model.config.eos_token_id

        def run():
            with torch.inference_mode():
                output = model.generate(
                    prompt,
                    attention_mask=mask,
                    max_new_tokens=new_tokens,
                    min_new_tokens=new_tokens,
                    do_sample=False,
                    num_beams=1,
                    pad_token_id=eos,
                    use_cache=True,
                )
            if output.shape[1] != prompt.shape[1] + new_tokens:
                raise RuntimeError(f"generate() returned {output.shape[1] - prompt.shape[1]} new tokens")

        times = timed(run, request["iterations"], request["warmup"])
        return {"times_ms": times, "tokens": new_tokens}

    def handle(self, request: dict) -> dict:
        op = request.get("op")
        if op == "encoder":
            reply = self.encoder(request)
        elif op == "generate":
            reply = self.generate(request)
        elif op == "seq2seq" and self.framework == "torch":
            reply = time_seq2seq_torch(self, request)
        elif op == "seq2seq" and self.framework == "ct2":
            reply = time_seq2seq_ct2(self, request)
        elif op == "ping":
            return {"ok": True}
        else:
            raise ValueError(f"unknown op {op!r}")
        reply["median_ms"] = median(reply["times_ms"])
        reply["tokens_per_s"] = reply["tokens"] / (reply["median_ms"] / 1000.0)
        reply["ok"] = True
        return reply


def serve(args) -> None:
    server = Server(args.framework)
    emit({"ok": True, "ready": args.framework})
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            reply = server.handle(json.loads(line))
        except Exception as error:  # the xtask prints it as "n/a (reason)" and goes on
            reply = {"ok": False, "error": f"{type(error).__name__}: {error}"}
        emit(reply)


# ---------------------------------------------------------------------------------------------------
# encoder-decoder models (issue 13): folders, CTranslate2 conversions, timing


def build_seq2seq_folder(name: str, dest: Path) -> None:
    import shutil

    import torch
    from transformers import MarianConfig, MarianMTModel, T5Config, T5ForConditionalGeneration

    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    torch.manual_seed(seed_for(name))
    if name == "t5-small":
        model = T5ForConditionalGeneration(T5Config(decoder_start_token_id=0))
    elif name == "opus-mt-en-de":
        config = MarianConfig(
            vocab_size=58101,
            d_model=512,
            encoder_layers=6,
            decoder_layers=6,
            encoder_attention_heads=8,
            decoder_attention_heads=8,
            encoder_ffn_dim=2048,
            decoder_ffn_dim=2048,
            activation_function="swish",
            scale_embedding=True,
            max_position_embeddings=512,
            pad_token_id=58100,
            decoder_start_token_id=58100,
            eos_token_id=0,
            forced_eos_token_id=0,
        )
        model = MarianMTModel(config)
    else:
        raise ValueError(name)
    model.eval()
    model.save_pretrained(str(dest), safe_serialization=True)


class VocabularyOnly:
    """What CTranslate2's converter reads from a tokenizer (the vocabulary and the special tokens), for
    the random-weight folders, which have none: `tok<id>` for every id but the specials."""

    def __init__(self, config: dict):
        size = config["vocab_size"]
        if config["model_type"] == "t5":
            special = {0: "<pad>", 1: "</s>", 2: "<unk>"}
        else:  # marian: </s> 0, <unk> 1, <pad> the last id
            special = {0: "</s>", 1: "<unk>", size - 1: "<pad>"}
        self.pad_token, self.eos_token, self.unk_token, self.bos_token = "<pad>", "</s>", "<unk>", None
        self.vocab = {special.get(index, f"tok{index}"): index for index in range(size)}
        self.by_id = {index: token for token, index in self.vocab.items()}

    def get_vocab(self) -> dict:
        return dict(self.vocab)

    def convert_ids_to_tokens(self, ids):
        return [self.by_id[index] for index in ids] if isinstance(ids, list) else self.by_id[ids]


def convert_for_ct2(folder: Path, dest: Path) -> None:
    from ctranslate2.converters import TransformersConverter

    class Converter(TransformersConverter):
        def load_tokenizer(self, tokenizer_class, model_name_or_path, **kwargs):
            return VocabularyOnly(json.loads((Path(model_name_or_path) / "config.json").read_text()))

    Converter(str(folder)).convert(str(dest), force=True)


def build_seq2seq(out: Path, stamp: dict, manifest: dict) -> None:
    import ctranslate2

    seq2seq_stamp = dict(stamp, recipe=SEQ2SEQ_RECIPE, ctranslate2=ctranslate2.__version__)
    manifest.setdefault("ct2", {})
    for name in SEQ2SEQ:
        folder = out / name
        if not stamp_matches(folder, seq2seq_stamp):
            print(f"compare.py: writing {folder}", file=sys.stderr, flush=True)
            build_seq2seq_folder(name, folder)
            convert_for_ct2(folder, out / "ct2" / name)
            write_stamp(folder, seq2seq_stamp)
            manifest["built"].append(name)
        manifest["folders"][name] = str(folder)
        manifest["ct2"][name] = str(out / "ct2" / name)
    manifest["ctranslate2"] = ctranslate2.__version__


def seq2seq_source(request: dict, vocab_size: int):
    """`batch` rows of `input_tokens` random ids (the specials below 3 left out), seeded."""
    import numpy as np

    rng = np.random.default_rng(request.get("seed", 0))
    return rng.integers(3, min(vocab_size - 1, 32000), size=(request["batch"], request["input_tokens"]))


def time_seq2seq_torch(server, request: dict) -> dict:
    import torch
    from transformers import AutoModelForSeq2SeqLM

    key = ("torch-seq2seq", request["model"])
    if key not in server.models:
        server.models[key] = AutoModelForSeq2SeqLM.from_pretrained(request["model"], dtype=torch.float32).eval()
    model = server.models[key]
    ids = torch.from_numpy(seq2seq_source(request, model.config.vocab_size))
    mask = torch.ones_like(ids)
    new_tokens, beams = request["new_tokens"], request["num_beams"]
    options = {"early_stopping": False} if beams > 1 else {}

    def run():
        with torch.inference_mode():
            output = model.generate(
                ids,
                attention_mask=mask,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                num_beams=beams,
                do_sample=False,
                **options,
            )
        # the decoder start token, then exactly new_tokens
        if output.shape[1] != new_tokens + 1:
            raise RuntimeError(f"generate() returned {output.shape[1] - 1} new tokens")

    times = timed(run, request["iterations"], request["warmup"])
    return {"times_ms": times, "tokens": request["batch"] * new_tokens}


def time_seq2seq_ct2(server, request: dict) -> dict:
    import ctranslate2

    key = ("ct2", request["ct2_model"])
    if key not in server.models:
        server.models[key] = ctranslate2.Translator(
            request["ct2_model"], device="cpu", compute_type="float32", inter_threads=1, intra_threads=THREADS
        )
    translator = server.models[key]
    vocab_size = json.loads((Path(request["model"]) / "config.json").read_text())["vocab_size"]
    source = [[f"tok{index}" for index in row] + ["</s>"] for row in seq2seq_source(request, vocab_size)]
    new_tokens = request["new_tokens"]

    def run():
        results = translator.translate_batch(
            source,
            beam_size=request["num_beams"],
            max_decoding_length=new_tokens,
            min_decoding_length=new_tokens,
            max_batch_size=0,
        )
        made = {len(result.hypotheses[0]) for result in results}
        if made != {new_tokens}:
            raise RuntimeError(f"translate_batch returned {sorted(made)} new tokens")

    times = timed(run, request["iterations"], request["warmup"])
    return {"times_ms": times, "tokens": request["batch"] * new_tokens}


# ---------------------------------------------------------------------------------------------------
# load and cold start (fresh processes)


def load(args) -> None:
    start = time.perf_counter()
    import torch
    import transformers  # noqa: F401  (part of what a user pays before the first result)
    from transformers import AutoModel, AutoModelForCausalLM

    torch.set_num_threads(THREADS)
    imported = time.perf_counter()
    if args.kind == "gpt2":
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    else:
        model = AutoModel.from_pretrained(args.model, dtype=torch.float32).eval()
    loaded = time.perf_counter()
    load_rss = peak_rss_mb()
    with torch.inference_mode():
        if args.kind == "gpt2":
            prompt = torch.ones((1, 8), dtype=torch.long)
            model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=8,
                           min_new_tokens=8, do_sample=False, pad_token_id=model.config.eos_token_id)
        else:
            inputs = make_encoder_inputs(model.config.vocab_size, 1, 128, None, 0)
            names = encoder_input_names(model)
            model(**{name: torch.from_numpy(inputs[name]) for name in names})
    done = time.perf_counter()
    emit(
        {
            "import_ms": (imported - start) * 1000.0,
            "load_ms": (loaded - imported) * 1000.0,
            "first_forward_ms": (done - loaded) * 1000.0,
            "load_peak_rss_mb": load_rss,
            "peak_rss_mb": peak_rss_mb(),
        }
    )


def cold_pipeline(args) -> None:
    import torch
    from transformers import pipeline

    torch.set_num_threads(THREADS)
    classifier = pipeline("text-classification", model=args.model, device=-1)
    print(json.dumps(classifier(args.text)), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    build_parser = commands.add_parser("build")
    build_parser.add_argument("--out", required=True)
    build_parser.add_argument("--cache", required=True, help="the cache holding models/ (cargo xtask fetch)")
    build_parser.add_argument("--seq2seq-only", action="store_true", help="only the encoder-decoder folders")
    serve_parser = commands.add_parser("serve")
    serve_parser.add_argument("--framework", choices=["torch", "ort", "ct2"], required=True)
    load_parser = commands.add_parser("load")
    load_parser.add_argument("--model", required=True)
    load_parser.add_argument("--kind", choices=["encoder", "gpt2"], default="encoder")
    pipeline_parser = commands.add_parser("pipeline")
    pipeline_parser.add_argument("--model", required=True)
    pipeline_parser.add_argument("text")
    args = parser.parse_args()
    {"build": build, "serve": serve, "load": load, "pipeline": cold_pipeline}[args.command](args)


if __name__ == "__main__":
    main()
