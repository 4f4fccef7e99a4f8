#!/usr/bin/env python3
"""Tiny random encoder-decoder checkpoints (T5, BART, Marian) and HF transformers' reference outputs.

Run by `cargo xtask fixtures` (xtask/src/fixtures.rs) after `fixtures_tokenizers.py` (BART copies its
`bpe-roberta` tokenizer). Writes, under `--out`, one HF folder per checkpoint in `models/<name>/`:

- `t5`: T5 v1.0 (ReLU feed-forward, LM head tied to the shared embeddings with the d_model^-0.5 rescale),
  t5-small's `task_specific_params`; `spiece.model` trained here with `sentencepiece`, plus the
  `tokenizer.json` that `T5TokenizerFast` converts from it.
- `t5-v1_1`: T5 v1.1 / FLAN-T5 (`gated-gelu`, untied LM head). Encoder and decoder have the same number of
  layers: transformers 4.57.6 sizes the decoder's cache by the encoder's `num_layers`, so `generate()` fails
  on a T5 with more decoder layers.
- `mt5`: the same layout saved as `MT5ForConditionalGeneration` (`model_type` `mt5`).
- `bart`: BART with distilbart-cnn's generation settings (forced BOS/EOS, `min_length`, no-repeat 3, length
  penalty 2.0, 4 beams, early stopping) in `generation_config.json` and `task_specific_params`.
- `marian`: shaped like opus-mt: `source.spm`, `target.spm`, `vocab.json`, no `tokenizer.json`; the decoder
  starts at `<pad>` (the last id); `bad_words_ids` = [[pad]].

Each folder's `reference.safetensors` holds, for a right-padded batch of 2 inputs:
`input_ids`, `attention_mask`, `encoder.hidden_states.{i}` (transformers' `output_hidden_states`:
the embeddings' output, then each layer's; T5's last one is after `final_layer_norm`),
`encoder.last_hidden_state`, `decoder_input_ids` (batch, steps: the start token, then fixed ids),
`decoder.hidden_states.{i}` and `logits` of the whole decoder sequence in one pass without a cache, and
`logits.step.{t}` (batch, vocab): step t run with transformers' cache, fed one id at a time.
`reference.json` says what is in there, and holds greedy `generate()` outputs (batched and one input at a
time) with plain settings, and `generate()` with the folder's own generation config.

Deterministic: one seed per checkpoint, single-threaded torch, sentencepiece trained on one thread from an
in-memory corpus, sorted JSON keys.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import zlib
from pathlib import Path

import sentencepiece as spm
import torch
import transformers
from safetensors.torch import save_file
from transformers import (
    AutoTokenizer,
    BartConfig,
    BartForConditionalGeneration,
    DynamicCache,
    EncoderDecoderCache,
    GenerationConfig,
    MarianConfig,
    MarianMTModel,
    MarianTokenizer,
    MT5Config,
    MT5ForConditionalGeneration,
    T5Config,
    T5ForConditionalGeneration,
    T5Tokenizer,
    T5TokenizerFast,
)

VERSIONS = {
    "python": sys.version.split()[0],
    "torch": torch.__version__,
    "transformers": transformers.__version__,
    "sentencepiece": spm.__version__,
}

D_MODEL = 32
HEADS = 4
# not a multiple of 8: kernels meet a ragged edge
FFN = 37
INIT_STD = 0.1
BIAS_STD = 0.02
# The T5 relative position bias drawn wider, so that positions matter.
POSITION_BIAS_STD = 0.5
# The checkpoints that fixtures_seq2seq_pipelines.py runs the pipelines on are drawn as the others,
# then the norm their decoder ends in is multiplied by a scale: T5's decoder final_layer_norm (weight);
# BART's and Marian's post-LN decoders end in the last layer's final_layer_norm (weight and bias).
# Drawn plainly, their next-token distributions are near-uniform (logits of std ~0.1 over 408 tokens
# for the tiny T5 with its tied, rescaled head; ~0.6 to 0.8 for T5 v1.1, BART and Marian), running beams
# meet within float noise of each other, even exactly, and the last bit of a log_softmax, or the order
# of equal values in torch.topk, picks the tokens. Scaled to logits of std ~8, they are peaked like a
# trained model's.
# name: (scale, seed offset). The seed is seed_for(name) plus the offset: the first (searched with the
# scale) at which no decision of generate() in the pipeline references is within
# fixtures_seq2seq_pipelines.py's MIN_DECISION_GAP of a tie, every case there makes as many new tokens
# as the plainly drawn checkpoint did (the long beam searches reach their max_new_tokens or max_length),
# and reference.json's greedy runs still make their GREEDY_NEW_TOKENS, none of them the end or padding id.
PEAKED = {
    "t5": (80.0, 8),
    "t5-v1_1": (14.0, 2),
    "bart": (14.0, 1),
    "marian": (14.0, 3),
}
# Small bucket settings so that short fixture sequences reach the logarithmic buckets.
T5_BUCKETS = 8
T5_MAX_DISTANCE = 20
# Decoder steps of the per-step references.
DECODER_STEPS = 12
GREEDY_NEW_TOKENS = 12

ENGLISH = """The quick brown fox jumps over the lazy dog.
Studies have shown that owning a dog is good for you.
The weather in Berlin is cold and rainy in the winter.
She reads a book every evening before she goes to sleep.
Machine translation turns a sentence in one language into another.
The house at the end of the street has a red door.
We walked along the river and talked about the future.
Children like to play in the park after school.
The meeting was moved to Tuesday because of the holiday.
He bought fresh bread, cheese and apples at the market.
The train to Paris leaves at nine in the morning.
Scientists found water on a small moon of Saturn.
My grandmother tells the best stories about her village.
The museum opens a new exhibition about ancient Egypt.
Please close the window when it starts to rain.
A summary keeps the important facts and drops the rest.
The company hired twenty new engineers this year.
Music helps many people to relax after a long day.
The bridge was built more than two hundred years ago.
They planted trees along the road to give more shade.
Hello world, this is a small test of the tokenizer.
How are you today? I am fine, thank you.
The cat sat on the mat and watched the birds outside.
Numbers like 1, 2, 3 and 2024 appear in many texts."""

GERMAN = """Der schnelle braune Fuchs springt über den faulen Hund.
Studien haben gezeigt, dass ein Hund gut für dich ist.
Das Wetter in Berlin ist im Winter kalt und regnerisch.
Sie liest jeden Abend ein Buch, bevor sie schlafen geht.
Maschinelle Übersetzung macht aus einem Satz einen anderen.
Das Haus am Ende der Straße hat eine rote Tür.
Wir gingen am Fluss entlang und sprachen über die Zukunft.
Kinder spielen nach der Schule gern im Park.
Das Treffen wurde wegen des Feiertags auf Dienstag verschoben.
Er kaufte frisches Brot, Käse und Äpfel auf dem Markt.
Der Zug nach Paris fährt um neun Uhr morgens ab.
Forscher fanden Wasser auf einem kleinen Mond des Saturn.
Meine Großmutter erzählt die besten Geschichten über ihr Dorf.
Das Museum eröffnet eine neue Ausstellung über das alte Ägypten.
Bitte schließe das Fenster, wenn es anfängt zu regnen.
Eine Zusammenfassung behält die wichtigen Fakten.
Die Firma stellte dieses Jahr zwanzig neue Ingenieure ein.
Musik hilft vielen Menschen, sich nach einem langen Tag zu entspannen.
Die Brücke wurde vor mehr als zweihundert Jahren gebaut.
Hallo Welt, das ist ein kleiner Test des Tokenizers.
Wie geht es dir heute? Mir geht es gut, danke.
Zahlen wie 1, 2, 3 und 2024 stehen in vielen Texten."""

# The reference batch: two inputs of different lengths (right padding).
T5_TEXTS = [
    "summarize: Studies have shown that owning a dog is good for you, and the weather in Berlin is cold.",
    "translate English to German: Hello world.",
]
BART_TEXTS = [
    "The quick brown fox jumps over the lazy dog. The house at the end of the street has a red door.",
    "Hello world!",
]
MARIAN_TEXTS = [
    "The train to Paris leaves at nine in the morning, and the meeting was moved to Tuesday.",
    "Hello world.",
]

T5_SMALL_TASK_PARAMS = {
    "summarization": {
        "early_stopping": True,
        "length_penalty": 2.0,
        "max_length": 200,
        "min_length": 30,
        "no_repeat_ngram_size": 3,
        "num_beams": 4,
        "prefix": "summarize: ",
    },
    "translation_en_to_de": {
        "early_stopping": True,
        "max_length": 300,
        "num_beams": 4,
        "prefix": "translate English to German: ",
    },
    "translation_en_to_fr": {
        "early_stopping": True,
        "max_length": 300,
        "num_beams": 4,
        "prefix": "translate English to French: ",
    },
    "translation_en_to_ro": {
        "early_stopping": True,
        "max_length": 300,
        "num_beams": 4,
        "prefix": "translate English to Romanian: ",
    },
}

# distilbart-cnn-12-6's generation settings (its config.json and task_specific_params).
DISTILBART_GENERATION = {
    "early_stopping": True,
    "length_penalty": 2.0,
    "max_length": 142,
    "min_length": 56,
    "no_repeat_ngram_size": 3,
    "num_beams": 4,
}
# Learned positions: enough for the pipelines' default max_new_tokens (256) after the start token.
BART_POSITIONS = 320
MARIAN_POSITIONS = 512


# ---------------------------------------------------------------------------------------------
# Writing files deterministically


def jsonable(value):
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, torch.Tensor):
        return jsonable(value.tolist())
    return value


def write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(jsonable(value), sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")


def write_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    plain = {name: tensor.detach().contiguous().clone() for name, tensor in tensors.items()}
    save_file(plain, str(path), metadata={"format": "pt"})


def seed_for(name: str) -> int:
    return zlib.crc32(name.encode("utf-8")) & 0x7FFFFFFF


def peaked(name: str) -> tuple[float, int]:
    """A checkpoint's decoder output scale (1 when not in PEAKED) and its seed."""
    scale, seed_offset = PEAKED.get(name, (1.0, 0))
    return scale, seed_for(name) + seed_offset


def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def normalize_json_files(folder: Path) -> None:
    """Rewrites the JSON files transformers saved with sorted keys (their order is not stable)."""
    for file in sorted(folder.glob("*.json")):
        if file.name.startswith("reference"):
            continue
        data = json.loads(file.read_text(encoding="utf-8"))
        file.write_text(json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# Sentencepiece models


def train_spm(lines: list[str], vocab_size: int, **options) -> bytes:
    """A unigram sentencepiece model trained on `lines`, as the bytes of its ModelProto."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        model_type="unigram",
        vocab_size=vocab_size,
        character_coverage=1.0,
        num_threads=1,
        shuffle_input_sentence=False,
        input_sentence_size=0,
        hard_vocab_limit=False,
        minloglevel=2,
        **options,
    )
    return model.getvalue()


def corpus(text: str) -> list[str]:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # lower-cased and shortened copies give the trainer more counts to work with
    return lines + [line.lower() for line in lines] + [" ".join(line.split()[:4]) for line in lines]


# ---------------------------------------------------------------------------------------------
# Weights


def randomize(model: torch.nn.Module) -> None:
    """Every parameter drawn so that it matters: matrices N(0, INIT_STD²), norm scales 1 + N(0, 0.1²),
    biases N(0, BIAS_STD²), T5's relative position bias wider."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "relative_attention_bias" in name:
                parameter.copy_(torch.randn(parameter.shape) * POSITION_BIAS_STD)
            elif parameter.dim() >= 2:
                parameter.copy_(torch.randn(parameter.shape) * INIT_STD)
            elif name.endswith("weight"):
                parameter.copy_(1.0 + torch.randn(parameter.shape) * 0.1)
            else:
                parameter.copy_(torch.randn(parameter.shape) * BIAS_STD)
        for name, buffer in model.named_buffers():
            if name == "final_logits_bias":
                buffer.copy_(torch.randn(buffer.shape) * 0.5)


def scale_decoder_output(model, name: str) -> dict:
    """Multiplies the last decoder layer's final_layer_norm (weight and bias), which BART's and Marian's
    post-LN decoders end in, by `name`'s PEAKED scale. Returns what reference.json records."""
    scale, seed = peaked(name)
    if scale == 1.0:
        return {"seed": seed}
    norm = model.model.decoder.layers[-1].final_layer_norm
    with torch.no_grad():
        norm.weight.mul_(scale)
        norm.bias.mul_(scale)
    return {"seed": seed, "decoder_last_layer_final_layer_norm_scale": scale}


# ---------------------------------------------------------------------------------------------
# References


def decoder_ids(start: int, vocab: int, seed: int, avoid: set[int]) -> list[int]:
    generator = torch.Generator().manual_seed(seed)
    ids = [start]
    while len(ids) < DECODER_STEPS:
        token = int(torch.randint(0, vocab, (1,), generator=generator))
        if token not in avoid:
            ids.append(token)
    return ids


def plain_generation_config(model) -> GenerationConfig:
    """Greedy with no logits processors: only the ids generation needs."""
    config = model.config
    return GenerationConfig(
        decoder_start_token_id=config.decoder_start_token_id,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
    )


def generate(model, batch, config: GenerationConfig, use_model_defaults: bool, **kwargs) -> list[list[int]]:
    with torch.no_grad():
        output = model.generate(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            generation_config=config,
            use_model_defaults=use_model_defaults,
            **kwargs,
        )
    return output.tolist()


def write_reference(dest: Path, model_class, tokenizer, texts: list[str], name: str, extra: dict) -> None:
    model = model_class.from_pretrained(str(dest), dtype=torch.float32).eval()
    config = model.config
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    input_ids = batch["input_ids"].to(torch.int64)
    attention_mask = batch["attention_mask"].to(torch.int64)
    tensors = {"input_ids": input_ids, "attention_mask": attention_mask}
    avoid = {config.pad_token_id, config.decoder_start_token_id}
    avoid.update(config.eos_token_id if isinstance(config.eos_token_id, list) else [config.eos_token_id])
    rows = [
        decoder_ids(config.decoder_start_token_id, config.vocab_size, seed_for(f"{name}.{row}"), avoid)
        for row in range(len(texts))
    ]
    decoder_input_ids = torch.tensor(rows, dtype=torch.int64)
    tensors["decoder_input_ids"] = decoder_input_ids
    with torch.no_grad():
        encoder = model.get_encoder()(
            input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, return_dict=True
        )
        for index, hidden in enumerate(encoder.hidden_states):
            tensors[f"encoder.hidden_states.{index}"] = hidden
        tensors["encoder.last_hidden_state"] = encoder.last_hidden_state
        full = model(
            encoder_outputs=(encoder.last_hidden_state,),
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            use_cache=False,
            output_hidden_states=True,
            return_dict=True,
        )
        for index, hidden in enumerate(full.decoder_hidden_states):
            tensors[f"decoder.hidden_states.{index}"] = hidden
        tensors["logits"] = full.logits
        # a cache that grows as layers come (transformers sizes its default one by the config's
        # `num_layers`, the encoder's, which breaks T5 with more decoder layers)
        past = EncoderDecoderCache(DynamicCache(), DynamicCache())
        for step in range(DECODER_STEPS):
            output = model(
                encoder_outputs=(encoder.last_hidden_state,),
                attention_mask=attention_mask,
                decoder_input_ids=decoder_input_ids[:, step : step + 1],
                past_key_values=past,
                use_cache=True,
                return_dict=True,
            )
            past = output.past_key_values
            tensors[f"logits.step.{step}"] = output.logits[:, -1, :]
    write_tensors(dest / "reference.safetensors", tensors)

    plain = plain_generation_config(model)
    plain.max_new_tokens = GREEDY_NEW_TOKENS
    plain.do_sample = False
    plain.num_beams = 1
    greedy_batch = generate(model, batch, plain, False)
    greedy_each = []
    for text in texts:
        one = tokenizer([text], return_tensors="pt")
        greedy_each.append(generate(model, one, plain, False)[0])
    with_defaults = generate(model, batch, model.generation_config, True, max_new_tokens=GREEDY_NEW_TOKENS)
    write_json(
        dest / "reference.json",
        {
            "model_class": model_class.__name__,
            "texts": texts,
            "padding_side": "right",
            "note": (
                "decoder_input_ids start with decoder_start_token_id; logits.step.t is step t with the cache, "
                "logits is the whole decoder sequence without it; padded encoder positions are not meaningful"
            ),
            "tensors": {name: list(tensor.shape) for name, tensor in sorted(tensors.items())},
            "generate": {
                "greedy": {
                    "settings": plain.to_diff_dict(),
                    "batch": greedy_batch,
                    "one_by_one": greedy_each,
                },
                "model_generation_config": {
                    "settings": {"max_new_tokens": GREEDY_NEW_TOKENS},
                    "batch": with_defaults,
                },
            },
            "seed": seed_for(name),
            "versions": VERSIONS,
            **extra,
        },
    )


# ---------------------------------------------------------------------------------------------
# T5


def t5_tokenizer(work: Path, name: str, normalization: str) -> Path:
    """spiece.model as T5's: pad 0, eos 1, unk 2, no bos; 8 sentinel ids appended by the tokenizer."""
    model = train_spm(
        corpus(ENGLISH) + corpus(GERMAN),
        normalization_rule_name=normalization,
        vocab_size=400,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        pad_piece="<pad>",
        eos_piece="</s>",
        unk_piece="<unk>",
    )
    folder = fresh_dir(work / name)
    (folder / "spiece.model").write_bytes(model)
    slow = T5Tokenizer(vocab_file=str(folder / "spiece.model"), extra_ids=8, legacy=True)
    slow.save_pretrained(str(folder))
    fast = T5TokenizerFast.from_pretrained(str(folder), legacy=True)
    fast.model_max_length = 512
    fast.save_pretrained(str(folder))
    return folder


def build_t5(out: Path, tokenizer_folder: Path, name: str, gated: bool, mt5: bool = False) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_folder))
    config_class, model_class = (MT5Config, MT5ForConditionalGeneration) if mt5 else (T5Config, T5ForConditionalGeneration)
    config = config_class(
        vocab_size=len(tokenizer),
        d_model=D_MODEL,
        d_kv=D_MODEL // HEADS,
        d_ff=FFN,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=HEADS,
        relative_attention_num_buckets=T5_BUCKETS,
        relative_attention_max_distance=T5_MAX_DISTANCE,
        feed_forward_proj="gated-gelu" if gated else "relu",
        tie_word_embeddings=not gated,
        layer_norm_epsilon=1e-6,
        decoder_start_token_id=tokenizer.pad_token_id,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        task_specific_params=None if gated else T5_SMALL_TASK_PARAMS,
        architectures=[model_class.__name__],
    )
    scale, seed = peaked(name)
    torch.manual_seed(seed)
    model = model_class(config).eval()
    randomize(model)
    with torch.no_grad():
        model.decoder.final_layer_norm.weight.mul_(scale)
    dest = fresh_dir(out / "models" / name)
    model.save_pretrained(str(dest), safe_serialization=True)
    for file in sorted(tokenizer_folder.iterdir()):
        shutil.copyfile(file, dest / file.name)
    normalize_json_files(dest)
    extra = {"seed": seed} if scale == 1.0 else {"seed": seed, "decoder_final_layer_norm_scale": scale}
    write_reference(dest, model_class, AutoTokenizer.from_pretrained(str(dest)), T5_TEXTS, name, extra)
    print(f"models/{name}", flush=True)


# ---------------------------------------------------------------------------------------------
# BART


def build_bart(out: Path) -> None:
    name = "bart"
    source = out / "tokenizers" / "bpe-roberta"
    if not (source / "tokenizer.json").is_file():
        raise SystemExit(f"{source}/tokenizer.json is missing: run fixtures_tokenizers.py --out {out} first")
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    config = BartConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=BART_POSITIONS,
        d_model=D_MODEL,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=HEADS,
        decoder_attention_heads=HEADS,
        encoder_ffn_dim=FFN,
        decoder_ffn_dim=FFN,
        activation_function="gelu",
        scale_embedding=False,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.eos_token_id,
        forced_bos_token_id=tokenizer.bos_token_id,
        forced_eos_token_id=tokenizer.eos_token_id,
        task_specific_params={"summarization": dict(DISTILBART_GENERATION)},
        architectures=["BartForConditionalGeneration"],
    )
    torch.manual_seed(peaked(name)[1])
    model = BartForConditionalGeneration(config).eval()
    randomize(model)
    extra = scale_decoder_output(model, name)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        decoder_start_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        forced_bos_token_id=tokenizer.bos_token_id,
        forced_eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **DISTILBART_GENERATION,
    )
    dest = fresh_dir(out / "models" / name)
    model.save_pretrained(str(dest), safe_serialization=True)
    for file in sorted(source.iterdir()):
        if file.is_file():
            shutil.copyfile(file, dest / file.name)
    tokenizer_config = json.loads((dest / "tokenizer_config.json").read_text(encoding="utf-8"))
    tokenizer_config.update({"tokenizer_class": "BartTokenizer", "model_max_length": BART_POSITIONS})
    (dest / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=1) + "\n", encoding="utf-8")
    normalize_json_files(dest)
    write_reference(dest, BartForConditionalGeneration, AutoTokenizer.from_pretrained(str(dest)), BART_TEXTS, name, extra)
    print(f"models/{name}", flush=True)


# ---------------------------------------------------------------------------------------------
# Marian


def build_marian(out: Path, work: Path, name: str = "marian", shared: bool = True) -> None:
    """`shared` false: `share_encoder_decoder_embeddings: false`, so the decoder has its own
    `model.decoder.embed_tokens` (drawn apart from the encoder's), and `lm_head` is tied to it."""
    # no normaliser (identity): the files stay a few KB
    options = dict(
        normalization_rule_name="identity", unk_id=1, eos_id=0, bos_id=-1, pad_id=-1, unk_piece="<unk>", eos_piece="</s>"
    )
    source_spm = train_spm(corpus(ENGLISH), vocab_size=220, **options)
    target_spm = train_spm(corpus(GERMAN), vocab_size=220, **options)
    # opus-mt's vocab.json: </s> 0, <unk> 1, the pieces of both models, <pad> the last id
    pieces = ["</s>", "<unk>"]
    for model in (source_spm, target_spm):
        processor = spm.SentencePieceProcessor(model_proto=model)
        for index in range(processor.get_piece_size()):
            piece = processor.id_to_piece(index)
            if piece not in pieces:
                pieces.append(piece)
    pieces.append("<pad>")
    vocab = {piece: index for index, piece in enumerate(pieces)}
    pad = vocab["<pad>"]

    dest = fresh_dir(out / "models" / name)
    (dest / "source.spm").write_bytes(source_spm)
    (dest / "target.spm").write_bytes(target_spm)
    (dest / "vocab.json").write_text(json.dumps(vocab, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tokenizer = MarianTokenizer(
        source_spm=str(dest / "source.spm"),
        target_spm=str(dest / "target.spm"),
        vocab=str(dest / "vocab.json"),
        source_lang="en",
        target_lang="de",
        model_max_length=MARIAN_POSITIONS,
    )
    tokenizer.save_pretrained(str(dest))

    config = MarianConfig(
        vocab_size=len(vocab),
        decoder_vocab_size=len(vocab),
        max_position_embeddings=MARIAN_POSITIONS,
        d_model=D_MODEL,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=HEADS,
        decoder_attention_heads=HEADS,
        encoder_ffn_dim=FFN,
        decoder_ffn_dim=FFN,
        activation_function="swish",
        scale_embedding=True,
        pad_token_id=pad,
        eos_token_id=vocab["</s>"],
        bos_token_id=vocab["</s>"],
        decoder_start_token_id=pad,
        forced_eos_token_id=vocab["</s>"],
        share_encoder_decoder_embeddings=shared,
        architectures=["MarianMTModel"],
    )
    torch.manual_seed(peaked(name)[1])
    model = MarianMTModel(config).eval()
    randomize(model)
    # the sinusoidal tables are not parameters to draw: put them back
    model.model.encoder.embed_positions._init_weight()
    model.model.decoder.embed_positions._init_weight()
    extra = scale_decoder_output(model, name)
    model.generation_config = GenerationConfig(
        bad_words_ids=[[pad]],
        bos_token_id=vocab["</s>"],
        decoder_start_token_id=pad,
        eos_token_id=vocab["</s>"],
        forced_eos_token_id=vocab["</s>"],
        max_length=MARIAN_POSITIONS,
        num_beams=4,
        pad_token_id=pad,
    )
    model.save_pretrained(str(dest), safe_serialization=True)
    normalize_json_files(dest)
    write_reference(dest, MarianMTModel, MarianTokenizer.from_pretrained(str(dest)), MARIAN_TEXTS, name, extra)
    print(f"models/{name}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="the fixtures folder to write")
    parser.add_argument("--only", help="write this one model folder (t5, t5-v1_1, mt5, bart, marian, marian-unshared)")
    args = parser.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    out: Path = args.out.resolve()
    work = out / "models" / ".seq2seq-work"
    wanted = lambda name: args.only in (None, name)  # noqa: E731
    try:
        # T5's own normaliser (nmt_nfkc: a precompiled charsmap of ~240 KB) in one folder only
        if wanted("t5"):
            tokenizer = t5_tokenizer(work, "t5-tokenizer", "nmt_nfkc")
            build_t5(out, tokenizer, "t5", gated=False)
        if wanted("t5-v1_1") or wanted("mt5"):
            v1_1_tokenizer = t5_tokenizer(work, "t5-v1_1-tokenizer", "identity")
        if wanted("t5-v1_1"):
            build_t5(out, v1_1_tokenizer, "t5-v1_1", gated=True)
        # model_type mt5: T5 v1.1's code with MT5Config's defaults
        if wanted("mt5"):
            build_t5(out, v1_1_tokenizer, "mt5", gated=True, mt5=True)
        if wanted("bart"):
            build_bart(out)
        if wanted("marian"):
            build_marian(out, work)
        # the decoder's own embeddings (opus-mt-tc models, among others)
        if wanted("marian-unshared"):
            build_marian(out, work, "marian-unshared", shared=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
