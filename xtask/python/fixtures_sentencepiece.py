"""Sentencepiece fixtures for oxformer: tiny trained `ModelProto` files in HF folder shapes, and transformers'
answers for them.

Run by `cargo xtask fixtures` (never by the tests) as `fixtures_sentencepiece.py --out DIR`. Writes only below
`DIR/tokenizers/`, deterministically (same bytes on every run):

- `DIR/tokenizers/spm-t5/`: spiece.model (unigram, T5's ids: <pad>=0, </s>=1, <unk>=2) saved through
  `T5Tokenizer` (20 extra ids): no tokenizer.json.
- `DIR/tokenizers/spm-xlmr/`: sentencepiece.bpe.model (unigram, fairseq's spm ids <unk>=0, <s>=1, </s>=2)
  saved through `XLMRobertaTokenizer`: no tokenizer.json.
- `DIR/tokenizers/spm-bpe/`: spiece.model trained with `model_type=bpe`, saved through `T5Tokenizer` (the
  converter's BPE branch: merges recovered from the scores).
- `DIR/tokenizers/spm-marian/`: source.spm and target.spm (two different unigram models), vocab.json (the
  joint vocabulary as Marian builds it: </s>, <unk>, the pieces of both, two language codes, <pad> last)
  saved through `MarianTokenizer`.
- `DIR/tokenizers/reference/spm-*.json`: what `AutoTokenizer.from_pretrained(folder)` (the pipelines'
  tokenizer: the fast one converted from the spm file where transformers has a converter, else the slow one)
  returns for awkward texts; and what the slow tokenizer returns, for comparison.

The training corpus is the one of fixtures_tokenizers.py (its word lists and awkward strings), written to a
temporary file; the sentencepiece trainer runs on one thread with fixed options.
"""

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sentencepiece as spm  # noqa: E402
import tokenizers  # noqa: E402
import transformers  # noqa: E402
from fixtures_tokenizers import WORDS, build_corpus  # noqa: E402
from transformers import AutoTokenizer, MarianTokenizer, T5Tokenizer, XLMRobertaTokenizer  # noqa: E402

transformers.logging.set_verbosity_error()

# Texts every folder is asked about: accents, NFKC cases, whitespace runs, unknown characters, digits, emoji,
# literal special tokens.
TEXTS = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "",
    " ",
    "   leading and trailing   ",
    "multiple   spaces\tand\ttabs\nnewlines\r\n here",
    "Café naïve résumé façade Ångström",
    "e\u0301 combining acute, n\u0303 tilde, A\u030a ring",
    "Straße Größe ÜBER über",
    "Ünïcödé ÀÉÎÕÜ ﬁ ligature ① ２０２４ ｆｕｌｌｗｉｄｔｈ ㎏ ½",
    "我喜欢学习中文。北京是中国的首都。",
    "Καλημέρα κόσμε, Здравствуй мир",
    "Emoji: 😀😂 ❤️ 👍🏽 👨‍👩‍👧 🇫🇷 🤖!",
    "unknown ☃ ☄ ♞ ⚗ characters ꙮ",
    "Numbers 3.14159, 1,000,000 and 2024-01-31 or 0042.",
    "don't can't it's I'm we're",
    "\u200bzero\u200bwidth\u00a0nbsp\u3000ideographic space",
    "literal specials: </s> <pad> <unk> <s> <mask> <extra_id_0> <extra_id_3>and",
    "A sentence , with spaces before punctuation . And don ' t forget it ' s here !",
    "x" * 80,
    "Der schnelle braune Fuchs springt über den faulen Hund.",
]

PAIRS = [
    ("What is the capital of France?", "Paris is the capital of France."),
    ("Café?", "我喜欢学习中文。"),
    ("", "empty first"),
    ("  spaced  ", "  out  "),
]

# Marian folders are asked about language codes too (only a leading code is split off).
MARIAN_TEXTS = TEXTS + [
    ">>fr<< Hello, world!",
    ">>de<<Guten Morgen",
    "Not a code >>fr<< in the middle",
    ">>xx<< unknown code",
]

# Target-side texts for Marian (encoded with the target spm as labels, then decoded).
TARGET_TEXTS = [
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Straße Größe ÜBER über",
    "",
    "  Leerzeichen   überall  ",
    "unbekannt ☃ Zeichen",
    "Hello, world!",
]

BATCH = [0, 2, 4, 6, 12]


def corpus_lines():
    return build_corpus()


def small_normalization_rules():
    """A few NFKC-like rules (sentencepiece's normalization_rule_tsv format: source and target code points in
    hex): full-width ASCII, a ligature, circled digits, odd spaces, a composition. Compiled by the trainer
    into a small precompiled_charsmap (the full nmt_nfkc one is 240 KB; only spm-t5 carries it)."""
    rules = [(f"{code:X}", f"{code - 0xFEE0:X}") for code in range(0xFF01, 0xFF5F)]
    rules += [("FB01", "66 69"), ("FB02", "66 6C"), ("A0", "20"), ("3000", "20"), ("338F", "6B 67")]
    rules += [(f"{0x2460 + i:X}", f"{0x31 + i:X}") for i in range(9)]
    rules += [("65 301", "E9"), ("6E 303", "F1"), ("41 30A", "C5"), ("BD", "31 2044 32")]
    return "".join(f"{source}\t{target}\n" for source, target in rules)


def german_english_corpora():
    """Two monolingual corpora for Marian's source (English-ish) and target (German-ish) models."""
    rng = random.Random(20240201)
    corpora = {}
    for side, languages in (("source", ("en", "misc", "fr")), ("target", ("de", "es", "misc"))):
        lines = []
        for language in languages:
            words = WORDS[language].split()
            for _ in range(500):
                length = rng.randint(3, 12)
                sentence = " ".join(rng.choice(words) for _ in range(length))
                lines.append(sentence[0].upper() + sentence[1:] + rng.choice([".", "!", "?", ","]))
            lines.append(" ".join(words))
        corpora[side] = lines
    return corpora


def train_spm(lines, work, name, small_rules=False, **options):
    """Trains a sentencepiece model on `lines` and returns its bytes (one thread: deterministic)."""
    # The trainer records its input and output paths in the model: relative ones keep it the same on every run.
    (work / f"{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if small_rules:
        (work / "rules.tsv").write_text(small_normalization_rules(), encoding="utf-8")
        options["normalization_rule_tsv"] = "rules.tsv"
    previous = os.getcwd()
    os.chdir(work)
    try:
        spm.SentencePieceTrainer.train(
            input=f"{name}.txt", model_prefix=name, num_threads=1, minloglevel=2, **options
        )
    finally:
        os.chdir(previous)
    return (work / f"{name}.model").read_bytes()


def normalize_json_files(folder):
    for path in sorted(folder.glob("*.json")):
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
        write_json(path, data)


def write_json(path, data):
    with open(path, "w", encoding="utf-8") as file:
        json.dump(data, file, ensure_ascii=False, indent=1, sort_keys=True)
        file.write("\n")


def write_compact_json(path, data):
    with open(path, "w", encoding="utf-8") as file:
        json.dump(data, file, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        file.write("\n")


def fresh_folder(path):
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def write_t5(out_dir, work, corpus, name, model_type, vocab_size, **options):
    model = train_spm(
        corpus,
        work,
        name,
        **options,
        model_type=model_type,
        vocab_size=vocab_size,
        character_coverage=0.9995,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
    )
    model_path = work / f"{name}.model"
    folder = fresh_folder(out_dir / name)
    T5Tokenizer(str(model_path), extra_ids=20, model_max_length=512).save_pretrained(str(folder))
    assert (folder / "spiece.model").read_bytes() == model
    normalize_json_files(folder)
    return folder


def write_xlmr(out_dir, work, corpus):
    train_spm(
        corpus, work, "xlmr", small_rules=True, model_type="unigram", vocab_size=600, character_coverage=0.9995
    )
    folder = fresh_folder(out_dir / "spm-xlmr")
    XLMRobertaTokenizer(str(work / "xlmr.model"), model_max_length=512).save_pretrained(str(folder))
    normalize_json_files(folder)
    return folder


def write_marian(out_dir, work):
    corpora = german_english_corpora()
    options = dict(model_type="unigram", character_coverage=0.9995)
    train_spm(corpora["source"], work, "source", small_rules=True, vocab_size=400, **options)
    train_spm(corpora["target"], work, "target", normalization_rule_name="identity", vocab_size=380, **options)
    # Marian's joint vocabulary: </s> and <unk> first, the pieces of both models, <pad> last. Two language codes
    # as in the multilingual opus-mt models. Three rare source pieces are left out so that the mapping of a
    # piece without an id to <unk> is exercised.
    vocab = {"</s>": 0, "<unk>": 1, ">>de<<": 2, ">>fr<<": 3}
    left_out = []
    for side in ("source", "target"):
        processor = spm.SentencePieceProcessor(model_file=str(work / f"{side}.model"))
        pieces = [processor.id_to_piece(i) for i in range(processor.get_piece_size())]
        for index, piece in enumerate(pieces):
            if piece in ("<unk>", "<s>", "</s>") or piece in vocab:
                continue
            if side == "source" and index >= len(pieces) - 3:
                left_out.append(piece)
                continue
            vocab[piece] = len(vocab)
    vocab["<pad>"] = len(vocab)
    vocab_path = work / "vocab.json"
    vocab_path.write_text(json.dumps(vocab, ensure_ascii=False, indent=2), encoding="utf-8")
    folder = fresh_folder(out_dir / "spm-marian")
    MarianTokenizer(
        source_spm=str(work / "source.model"),
        target_spm=str(work / "target.model"),
        vocab=str(vocab_path),
        source_lang="en",
        target_lang="de",
        model_max_length=512,
    ).save_pretrained(str(folder))
    normalize_json_files(folder)
    return folder, left_out


# ---------------------------------------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------------------------------------


def encode_rows(tokenizer, texts, with_offsets):
    rows = []
    for text in texts:
        options = {"return_offsets_mapping": True} if with_offsets else {}
        encoded = tokenizer(text, **options)
        row = {
            "ids": encoded["input_ids"],
            "tokens": tokenizer.convert_ids_to_tokens(encoded["input_ids"]),
            "decode_keep": tokenizer.decode(encoded["input_ids"]),
            "decode_skip": tokenizer.decode(encoded["input_ids"], skip_special_tokens=True),
        }
        if with_offsets:
            row["offsets"] = [value for pair in encoded["offset_mapping"] for value in pair]
        rows.append(row)
    return rows


def pair_rows(tokenizer, pairs):
    return [
        {"ids": tokenizer(first, second)["input_ids"], "decode_keep": tokenizer.decode(tokenizer(first, second)["input_ids"])}
        for first, second in pairs
    ]


def batch_case(tokenizer, texts):
    encoded = tokenizer([texts[i] for i in BATCH], padding=True)
    return {
        "inputs": BATCH,
        "input_ids": encoded["input_ids"],
        "attention_mask": encoded["attention_mask"],
        "batch_decode_skip": tokenizer.batch_decode(encoded["input_ids"], skip_special_tokens=True),
        "batch_decode_keep": tokenizer.batch_decode(encoded["input_ids"]),
    }


def random_id_sequences(tokenizer, count, length, seed):
    """Id sequences as a model might generate them: any id of the vocabulary, specials included."""
    rng = random.Random(seed)
    size = len(tokenizer)
    specials = tokenizer.all_special_ids
    sequences = []
    for _ in range(count):
        sequence = [rng.randrange(size) for _ in range(length)]
        sequence[rng.randrange(length)] = rng.choice(specials)
        sequences.append(sequence)
    return sequences


def decode_rows(tokenizer, sequences):
    return [
        {
            "ids": ids,
            "keep": tokenizer.decode(ids),
            "skip": tokenizer.decode(ids, skip_special_tokens=True),
            "skip_clean": tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=True),
        }
        for ids in sequences
    ]


def info(tokenizer):
    return {
        "class": type(tokenizer).__name__,
        "vocab_size": tokenizer.vocab_size,
        "len": len(tokenizer),
        "all_special_ids": tokenizer.all_special_ids,
        "special_tokens": {
            key: [str(value), tokenizer.convert_tokens_to_ids(str(value))]
            for key, value in tokenizer.special_tokens_map.items()
            if key != "additional_special_tokens"
        },
        "additional_special_tokens": [str(token) for token in tokenizer.additional_special_tokens],
        "clean_up_tokenization_spaces": tokenizer.clean_up_tokenization_spaces,
        "model_max_length": tokenizer.model_max_length,
    }


def reference_for_fast_folder(folder):
    """A folder with a fast conversion (T5, XLM-R): the pipelines' (fast) tokenizer, and the slow one."""
    fast = AutoTokenizer.from_pretrained(str(folder))
    slow = AutoTokenizer.from_pretrained(str(folder), use_fast=False)
    assert fast.is_fast and not slow.is_fast
    fast_rows = encode_rows(fast, TEXTS, with_offsets=True)
    slow_rows = encode_rows(slow, TEXTS, with_offsets=False)
    sequences = random_id_sequences(fast, 6, 24, seed=7)
    return {
        "info": info(fast),
        "texts": TEXTS,
        "pairs": PAIRS,
        "encode": fast_rows,
        "pair_encode": pair_rows(fast, PAIRS),
        "batch": batch_case(fast, TEXTS),
        "decode": decode_rows(fast, sequences),
        "slow": {
            "info": info(slow),
            "encode": slow_rows,
            "decode": decode_rows(slow, sequences),
            "ids_differ_from_fast": [i for i, (f, s) in enumerate(zip(fast_rows, slow_rows)) if f["ids"] != s["ids"]],
        },
        "versions": versions(),
    }


def reference_for_marian(folder, left_out):
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    assert not tokenizer.is_fast and type(tokenizer).__name__ == "MarianTokenizer"
    labels = [tokenizer(text_target=text)["input_ids"] for text in TARGET_TEXTS]
    return {
        "info": info(tokenizer),
        "left_out_of_vocab": left_out,
        "texts": MARIAN_TEXTS,
        "pairs": PAIRS,
        "encode": encode_rows(tokenizer, MARIAN_TEXTS, with_offsets=False),
        "pair_encode": pair_rows(tokenizer, PAIRS),
        "batch": batch_case(tokenizer, MARIAN_TEXTS),
        "target_texts": TARGET_TEXTS,
        "target_encode": [
            {
                "ids": ids,
                "decode_keep": tokenizer.decode(ids),
                "decode_skip": tokenizer.decode(ids, skip_special_tokens=True),
            }
            for ids in labels
        ],
        "decode": decode_rows(tokenizer, random_id_sequences(tokenizer, 8, 24, seed=11)),
        "versions": versions(),
    }


def versions():
    return {
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "sentencepiece": spm.__version__,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="fixtures folder; writes below OUT/tokenizers/")
    args = parser.parse_args()
    out_dir = args.out / "tokenizers"
    (out_dir / "reference").mkdir(parents=True, exist_ok=True)
    corpus = corpus_lines()
    with tempfile.TemporaryDirectory() as work_dir:
        work = Path(work_dir)
        t5 = write_t5(out_dir, work, corpus, "spm-t5", "unigram", 700)
        bpe = write_t5(out_dir, work, corpus, "spm-bpe", "bpe", 500, normalization_rule_name="identity")
        xlmr = write_xlmr(out_dir, work, corpus)
        marian, left_out = write_marian(out_dir, work)
    for folder in (t5, bpe, xlmr):
        write_compact_json(out_dir / "reference" / f"{folder.name}.json", reference_for_fast_folder(folder))
    write_compact_json(out_dir / "reference" / "spm-marian.json", reference_for_marian(marian, left_out))


if __name__ == "__main__":
    sys.exit(main())
