"""Tokenizer fixtures for oxformer: four small trained tokenizers and transformers' reference outputs.

Run by `cargo xtask fixtures` (never by the tests) as `fixtures_tokenizers.py --out DIR`. Writes only below
`DIR/tokenizers/`, deterministically (same bytes on every run):

- `DIR/tokenizers/<name>/` for `wordpiece-cased`, `unigram-xlmr`, `bpe-roberta`, `bpe-gpt2`: complete HF
  tokenizer folders (tokenizer.json, tokenizer_config.json, special_tokens_map.json, ...) trained with the
  `tokenizers` library on a corpus this script builds itself, then saved through the transformers class of
  the model they imitate.
- `DIR/tokenizers/README.md`: what is in there (the text of README below).
- `DIR/tokenizers/reference/<name>.json`: what the transformers fast tokenizer returns for the awkward corpus
  under a grid of encode options, and what decode / batch_decode return. Also for the real MiniLM
  (bert-base-uncased) folder and the real GPT-2 vocab.json + merges.txt found in `$OXFORMER_CACHE/models/`,
  and for the slow-file fallbacks (BertTokenizerFast from vocab.txt, GPT2TokenizerFast from vocab.json +
  merges.txt). Offsets are transformers' character offsets (Python str indices).
"""

import argparse
import json
import os
import random
import shutil
import sys
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Some reference cases make the tokenizers library panic (transformers passes that on as an error): keep its
# report to one line.
os.environ["RUST_BACKTRACE"] = "0"

import tokenizers  # noqa: E402
import transformers  # noqa: E402
from tokenizers import (  # noqa: E402
    Regex,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import (  # noqa: E402
    BertTokenizerFast,
    GPT2TokenizerFast,
    PreTrainedTokenizerFast,
    RobertaTokenizerFast,
    XLMRobertaTokenizerFast,
)

MODEL_MAX_LENGTH = 128

# ---------------------------------------------------------------------------------------------------------
# The training corpus: built here from word lists, no downloads. Several scripts so every tokenizer has
# accented Latin, Greek, Cyrillic, CJK, kana, Hangul, Arabic, digits, punctuation and emoji in its vocabulary.
# ---------------------------------------------------------------------------------------------------------

WORDS = {
    "en": """the a an of to in and is was for on with as by at from that this it be are were have has had not
    but or which one all their there been if more when will would who so no out up into them can only other new
    some could time these two may then first any like now my such make over did years way well down should
    because each just those people how too little state good very great world still own see men work long here
    between both life being under never day same another know while last might us great old year off come since
    against go came right used take three states himself few house use during without again place around however
    home small found thought went say part once general high upon school every don does got united left number
    course war until always away something fact though water less public put think almost hand enough far took
    head yet government system better set told nothing night end why called didn eyes find going look asked later
    knew point next city business give group toward young days let room president side social given present
    several order national possible rather second face per among form important often things looked early white
    john case become large big need four within felt along children saw best church ever least power development
    light thing seemed family interest want members mind country area others done turned although open god service
    certain kind problem began different door thus help sense means whole matter perhaps itself york times law
    human line above name example action company hands local show whether five history gave today either act feet
    across taken past quite anything seen having death week experience body word half really field car words
    already themselves information tell college shall together money period held keep sure probably free seems
    political real behind cannot miss question air office making brought whose special major heard problems ago
    became federal moment study available known result street economic boy position reason change south board
    individual job areas society west close turn love community true court force full seem am wife age policy
    voice control common necessary front sometimes six girl clear further land run students provide feel party
    able mother music education university child effect level stood military town short morning total outside
    rate figure class art century washington north usually plan leave therefore evidence too million sound tax
    tokenizer transformer attention embedding encoder decoder sentence token vocabulary unbelievable
    internationalization reconstruction misunderstanding counterproductive""",
    "fr": """le la les un une des du de et est en que qui dans pour pas sur au avec il elle ils nous vous
    être avoir fait dit très plus où là déjà été année élève français garçon façon naïve cœur œuvre noël forêt
    hôpital théâtre château fenêtre bientôt où ça première deuxième problème système père mère frère sœur
    école université répété créé préféré espèce à côté après très""",
    "de": """der die das und ist nicht ein eine zu mit sich auf für von dem den des im auch als an werden aus
    er hat dass sie nach wird bei einer um am sind noch wie einem über einen so zum war haben nur oder aber vor
    zur bis mehr durch man sein wurde sei größe straße müssen können über schön grün tür mädchen fräulein
    äpfel österreich übersetzung weiß fußball""",
    "es": """el la los las de que y en un una es por con para no se su al lo como más pero sus le ya o este
    sí porque esta entre cuando muy sin sobre también me hasta hay donde quien desde todo nos durante todos uno
    niño mañana español corazón canción está años pequeño árbol jamás acción""",
    "el": """και το να του η της με που την από για δεν στο τα ο θα είναι σε ένα των τον στην αλλά ή
    καλημέρα ευχαριστώ Αθήνα Ελλάδα θάλασσα ουρανός""",
    "ru": """и в не на я быть он с что а по это она этот к но они мы как из у который то за свой весь год
    от так о для ты же все тот мочь вы человек такой его сказать только или ещё бы себя один как уже до время
    Москва Россия привет спасибо хорошо""",
    "zh": """我们 你们 他们 中国 北京 上海 学习 工作 时间 问题 大家 今天 明天 昨天 朋友 老师 学生 电脑
    手机 语言 文字 世界 人民 经济 发展 社会 国家 城市 天气 喜欢 因为 所以 但是 已经 还是 可以 没有 自己
    东京 日本 汉字 翻译 模型""",
    "ja": """こんにちは ありがとう さようなら すみません 日本語 ひらがな カタカナ 東京 大阪 猫 犬 食べる 飲む
    です ます した して いる ある""",
    "ko": """안녕하세요 감사합니다 한국어 서울 사랑 학교 친구 사람 오늘 내일""",
    "ar": """مرحبا شكرا السلام عليكم العربية كتاب مدرسة""",
    "misc": """1 2 3 10 42 100 2024 3.14 1,000 $5 €20 50% #hashtag @user e-mail U.S.A. don't it's I'm
    we're can't won't 😀 😂 ❤️ 👍 🎉 🤖 👨‍👩‍👧 🇫🇷 ★ © ™ … – — « » “ ” ‘ ’ ( ) [ ] { } ! ? . , ; : - _ / \\ * + = < >
    https://example.com/path?q=1 C++ x86_64 foo_bar CamelCase""",
}

# Strings the tests and the training corpus both see: awkward on purpose.
AWKWARD = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "",
    " ",
    "   leading and trailing   ",
    "whitespace\truns\n\nand  newlines \r\n here",
    "Café naïve résumé façade Ångström",
    "e\u0301 combining acute, n\u0303 tilde, A\u030a ring",
    "Straße Größe ÜBER über",
    "我喜欢学习中文。北京是中国的首都。",
    "日本語のテキストとカタカナ、ひらがな。",
    "한국어 문장입니다.",
    "Καλημέρα κόσμε, Здравствуй мир",
    "مرحبا بالعالم",
    "Emoji: 😀😂 ❤️ 👍🏽 👨‍👩‍👧 🇫🇷 🤖!",
    "don't can't it's I'm we're",
    "URL https://example.com/path?q=1&r=2 and e-mail foo.bar@example.org",
    "Numbers 3.14159, 1,000,000 and 2024-01-31.",
    "MiXeD CaSe WoRdS and CamelCaseIdentifiers",
    "unbelievable internationalization misunderstanding",
    "Tab\tseparated\tvalues",
    "\u200bzero\u200bwidth\u00a0nbsp\u3000ideographic space",
    "x" * 300,
    " ".join(["This is a very long sentence that will need truncation and overflowing windows."] * 6),
]

PAIRS = [
    ("What is the capital of France?", "Paris is the capital and most populous city of France."),
    ("Who wrote it?", " ".join(["The book was written by an author whose name is long forgotten."] * 5)),
    ("Café?", "我喜欢学习中文。"),
    ("", "empty first"),
    ("empty second", ""),
    (" ".join(["A long question that keeps going and going."] * 4), "Short answer."),
]


def build_corpus():
    """Deterministic training lines: random sentences from the word lists, plus the awkward strings."""
    rng = random.Random(20240131)
    lines = []
    for language, text in sorted(WORDS.items()):
        words = text.split()
        joiner = "" if language in ("zh", "ja") else " "
        for _ in range(400):
            length = rng.randint(3, 14)
            sentence = joiner.join(rng.choice(words) for _ in range(length))
            if language not in ("zh", "ja", "misc"):
                sentence = sentence[0].upper() + sentence[1:]
            lines.append(sentence + rng.choice([".", "!", "?", ",", "", "。" if joiner == "" else ";"]))
        # every word at least a few times, so rare scripts still get whole-word tokens
        lines.extend([" ".join(words)] * 3)
    for text in AWKWARD:
        lines.append(text)
    for question, context in PAIRS:
        lines.append(question)
        lines.append(context)
    return lines


# ---------------------------------------------------------------------------------------------------------
# The four trained tokenizers
# ---------------------------------------------------------------------------------------------------------


def train_wordpiece_cased(corpus):
    """Multilingual-BERT style: cased WordPiece, CJK characters split, accents kept."""
    normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=False
    )
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    # The trainer numbers the `##x` pieces in hash-map order, which breaks ties between merges differently on
    # every run. Handing it every `##x` up front, sorted, makes the result the same on every run; they are
    # plain vocabulary entries again in the final model below.
    continuing = sorted(
        {
            "##" + char
            for line in corpus
            for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(line))
            for char in word[1:]
        }
    )
    trainee = tokenizers.Tokenizer(models.WordPiece(unk_token="[UNK]"))
    trainee.normalizer = normalizer
    trainee.pre_tokenizer = pre_tokenizer
    trainer = trainers.WordPieceTrainer(
        vocab_size=1500,
        min_frequency=1,
        special_tokens=specials + continuing,
        continuing_subword_prefix="##",
        show_progress=False,
    )
    trainee.train_from_iterator(corpus, trainer=trainer)
    vocab = trainee.get_vocab(with_added_tokens=False)
    tokenizer = tokenizers.Tokenizer(
        models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100)
    )
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    tokenizer.add_special_tokens(specials)
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    return BertTokenizerFast(
        tokenizer_object=tokenizer,
        do_lower_case=False,
        strip_accents=None,
        tokenize_chinese_chars=True,
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
        model_max_length=MODEL_MAX_LENGTH,
    )


def train_unigram_xlmr(corpus):
    """XLM-R style: Unigram over Metaspace, `<s> A </s></s> B </s>`, `<mask>` the last id."""
    tokenizer = tokenizers.Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.Nmt(), normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=1200,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
        unk_token="<unk>",
        max_piece_length=16,
        shrinking_factor=0.75,
        n_sub_iterations=2,
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    tokenizer = canonical_unigram(tokenizer, num_special=4)
    tokenizer.add_special_tokens([tokenizers.AddedToken("<mask>", lstrip=True, special=True)])
    bos, eos = tokenizer.token_to_id("<s>"), tokenizer.token_to_id("</s>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", bos), ("</s>", eos)],
    )
    return XLMRobertaTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token=tokenizers.AddedToken("<mask>", lstrip=True, rstrip=False),
        model_max_length=MODEL_MAX_LENGTH,
    )


def canonical_unigram(tokenizer, num_special):
    """The trained Unigram with its run-to-run noise removed.

    The trainer gives each character it must keep but did not score the score `min + k * 1e-4`, k counting
    up in hash-map order, and sums the other scores in an order that varies in the last bits. Here those
    characters get the same scores back in sorted order, every score is rounded to 1e-6, and the pieces after
    the special tokens are sorted by (score descending, piece)."""
    state = json.loads(tokenizer.to_str())
    vocab = state["model"]["vocab"]
    specials, pieces = vocab[:num_special], vocab[num_special:]
    lowest = min(score for _, score in pieces)

    def on_penalty_grid(score):
        steps = (score - lowest) / 1e-4
        return abs(steps - round(steps)) < 1e-6

    kept = [index for index, (piece, score) in enumerate(pieces) if len(piece) == 1 and on_penalty_grid(score)]
    chars = sorted(pieces[index][0] for index in kept)
    scores = sorted((pieces[index][1] for index in kept), reverse=True)
    for index, char, score in zip(kept, chars, scores):
        pieces[index] = [char, score]
    pieces = sorted(([piece, round(score, 6)] for piece, score in pieces), key=lambda item: (-item[1], item[0]))
    state["model"]["vocab"] = specials + pieces
    state["model"]["unk_id"] = [piece for piece, _ in specials].index("<unk>")
    return tokenizers.Tokenizer.from_str(json.dumps(state))


def train_byte_level_bpe(corpus, special_tokens, vocab_size):
    tokenizer = tokenizers.Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    return tokenizer


def train_bpe_roberta(corpus):
    """RoBERTa style: byte-level BPE, `<s> A </s></s> B </s>` by RobertaProcessing, `<mask>` the last id."""
    tokenizer = train_byte_level_bpe(corpus, ["<s>", "<pad>", "</s>", "<unk>"], 1500)
    tokenizer.add_special_tokens([tokenizers.AddedToken("<mask>", lstrip=True, special=True)])
    tokenizer.post_processor = processors.RobertaProcessing(
        sep=("</s>", tokenizer.token_to_id("</s>")),
        cls=("<s>", tokenizer.token_to_id("<s>")),
        trim_offsets=True,
        add_prefix_space=False,
    )
    return RobertaTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token=tokenizers.AddedToken("<mask>", lstrip=True, rstrip=False),
        add_prefix_space=False,
        trim_offsets=True,
        model_max_length=MODEL_MAX_LENGTH,
    )


def train_bpe_gpt2(corpus):
    """GPT-2 style: byte-level BPE, `<|endoftext|>` (the last id) as bos, eos and unk, no template."""
    tokenizer = train_byte_level_bpe(corpus, [], 1500)
    tokenizer.add_special_tokens([tokenizers.AddedToken("<|endoftext|>", special=True)])
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    return GPT2TokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        add_prefix_space=False,
        model_max_length=MODEL_MAX_LENGTH,
    )


TRAINED = {
    "wordpiece-cased": train_wordpiece_cased,
    "unigram-xlmr": train_unigram_xlmr,
    "bpe-roberta": train_bpe_roberta,
    "bpe-gpt2": train_bpe_gpt2,
}


def write_trained(out_dir, corpus):
    for name, train in TRAINED.items():
        folder = out_dir / name
        if folder.exists():
            shutil.rmtree(folder)
        tokenizer = train(corpus)
        tokenizer.save_pretrained(str(folder))
        normalize_json_files(folder)


def normalize_json_files(folder):
    """Rewrites transformers' JSON files with sorted keys and a final newline (tokenizer.json, written by
    the `tokenizers` library in its own stable order, is left as it is)."""
    for path in sorted(folder.glob("*.json")):
        if path.name == "tokenizer.json":
            continue
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
        write_json(path, data)


def write_json(path, data):
    with open(path, "w", encoding="utf-8") as file:
        json.dump(data, file, ensure_ascii=False, indent=1, sort_keys=True)
        file.write("\n")


# ---------------------------------------------------------------------------------------------------------
# Reference outputs of transformers' fast tokenizers
# ---------------------------------------------------------------------------------------------------------

REFERENCE_TEXTS = AWKWARD + [
    "[CLS] literal special tokens [SEP] <s> </s> <mask> <|endoftext|> [MASK]",
    "Ünïcödé ÀÉÎÕÜ ﬁ ligature ① ２０２４ ｆｕｌｌｗｉｄｔｈ",
    "A sentence , with spaces before punctuation . And don ' t forget it ' s here !",
]

# A batch of mixed lengths (indices into REFERENCE_TEXTS) for the padding cases.
PADDING_BATCH = [0, 2, 6, 9, 14, 15]
# Texts whose windows the single-text truncation cases look at.
TRUNCATION_TEXTS = [1, 6, 9, 14, 23]
# Fields stored for every case; `tokens` only for the cases named here (they follow from the ids).
WITH_TOKENS = {"pairs"}
# The cases of the slow-file references: enough to show the fallback builds the same tokenizer.
SLOW_CASES = {"default", "pairs", "pairs-each"}
# A selection for the cases that need not see every text.
SOME_TEXTS = [0, 4, 5, 6, 7, 14, 15, 21, 24, 25]


def case_grid():
    """(name, call, inputs, options) for every case: `call` is "batch" (tokenizer(list)) or "each"
    (tokenizer(text) / tokenizer(text, text_pair) per input, the single-input path). Inputs are ["t", i]
    (REFERENCE_TEXTS[i]) or ["p", i] (PAIRS[i])."""
    every_text = [["t", index] for index in range(len(REFERENCE_TEXTS))]
    every_pair = [["p", index] for index in range(len(PAIRS))]
    padding_batch = [["t", index] for index in PADDING_BATCH]
    truncation_texts = [["t", index] for index in TRUNCATION_TEXTS]
    cases = [
        ("default", "each", every_text, {}),
        ("no-special-tokens", "batch", [["t", index] for index in SOME_TEXTS], {"add_special_tokens": False}),
        ("pairs", "batch", every_pair, {}),
        ("pairs-each", "each", [["p", 2], ["p", 3], ["p", 4]], {}),
        ("pairs-no-special-tokens", "batch", [["p", 0], ["p", 2], ["p", 3], ["p", 4]], {"add_special_tokens": False}),
        # truncation
        ("longest-first-16", "batch", truncation_texts, {"truncation": "longest_first", "max_length": 16}),
        (
            "longest-first-16-stride-4-overflow",
            "batch",
            truncation_texts,
            {"truncation": "longest_first", "max_length": 16, "stride": 4, "return_overflowing_tokens": True},
        ),
        ("only-first-12-overflow", "each", [["t", 9], ["t", 23]], {"truncation": "only_first", "max_length": 12,
                                                              "return_overflowing_tokens": True}),
        ("max-length-alone-10", "each", truncation_texts, {"max_length": 10}),
        ("truncation-model-max-length", "batch", truncation_texts, {"truncation": True}),
        ("truncation-none-padding-max-length-20", "batch", [["t", 0], ["t", 1], ["t", 9]],
         {"truncation": False, "padding": "max_length", "max_length": 20}),
        ("pairs-longest-first-24", "batch", every_pair, {"truncation": "longest_first", "max_length": 24}),
        (
            "pairs-longest-first-30-stride-2-overflow",
            "batch",
            [["p", 1], ["p", 5]],
            {"truncation": "longest_first", "max_length": 30, "stride": 2, "return_overflowing_tokens": True},
        ),
        (
            "pairs-only-first-24-stride-3-overflow",
            "batch",
            [["p", 5]],
            {"truncation": "only_first", "max_length": 24, "stride": 3, "return_overflowing_tokens": True},
        ),
        (
            "pairs-only-second-32-stride-6-overflow",
            "batch",
            [["p", 0], ["p", 1]],
            {"truncation": "only_second", "max_length": 32, "stride": 6, "return_overflowing_tokens": True},
        ),
        # tokenizer.truncation_side = "left" (an attribute, not a call argument, in transformers)
        (
            "longest-first-16-stride-4-overflow-truncation-left",
            "batch",
            [["t", 6], ["t", 23]],
            {"truncation_side": "left", "truncation": True, "max_length": 16, "stride": 4,
             "return_overflowing_tokens": True},
        ),
        (
            "pairs-only-second-32-stride-6-overflow-truncation-left",
            "batch",
            [["p", 1]],
            {"truncation_side": "left", "truncation": "only_second", "max_length": 32, "stride": 6,
             "return_overflowing_tokens": True},
        ),
        # question answering: only_second windows padded to max_length, with the sample mapping
        (
            "qa-windows-only-second-32-stride-8-padded",
            "batch",
            [["p", 1]],
            {"truncation": "only_second", "max_length": 32, "stride": 8, "return_overflowing_tokens": True,
             "padding": "max_length"},
        ),
        (
            "qa-windows-left-padded-longest",
            "batch",
            [["p", 1], ["p", 0]],
            {"truncation": "only_second", "max_length": 48, "stride": 16, "return_overflowing_tokens": True,
             "padding": "longest", "padding_side": "left"},
        ),
        # padding
        ("pad-longest-right", "batch", padding_batch, {"padding": "longest"}),
        ("pad-longest-left", "batch", padding_batch, {"padding": True, "padding_side": "left"}),
        ("pad-max-length-48", "batch", padding_batch, {"padding": "max_length", "max_length": 48}),
        ("pad-longest-multiple-of-8-left", "batch", padding_batch,
         {"padding": "longest", "pad_to_multiple_of": 8, "padding_side": "left"}),
        ("pad-truncate-32-multiple-of-8", "batch", padding_batch,
         {"padding": "max_length", "truncation": True, "max_length": 32, "pad_to_multiple_of": 8}),
        ("pad-max-length-model-max", "each", [["t", 0]], {"padding": "max_length"}),
        ("pairs-pad-longest", "batch", [["p", 0], ["p", 2], ["p", 3], ["p", 4]], {"padding": True}),
        # GPT-2 style: no pad token of its own; batched generation pads with eos, on the left
        ("pad-eos-longest-left", "batch", padding_batch, {"pad_token": "eos", "padding": True, "padding_side": "left"}),
        ("pad-eos-max-length-24-truncate", "batch", padding_batch,
         {"pad_token": "eos", "padding": "max_length", "truncation": True, "max_length": 24}),
        # errors transformers raises
        ("error-only-second-on-single", "batch", [["t", 23]], {"truncation": "only_second", "max_length": 10}),
        ("error-multiple-of-not-dividing", "batch", padding_batch,
         {"padding": "max_length", "truncation": True, "max_length": 30, "pad_to_multiple_of": 8}),
        # the first sequence cannot give up enough tokens
        ("error-only-first-too-short", "batch", [["p", 0]],
         {"truncation": "only_first", "max_length": 20, "stride": 3, "return_overflowing_tokens": True}),
        # a pair window shorter than the stride (the tokenizers library panics)
        ("error-pair-window-below-stride", "batch", [["p", 2]],
         {"truncation": "only_second", "max_length": 8, "stride": 6, "return_overflowing_tokens": True}),
        ("error-stride-too-large", "batch", [["t", 23]],
         {"truncation": True, "max_length": 10, "stride": 10, "return_overflowing_tokens": True}),
    ]
    return cases


def digits(values):
    return "".join(str(value) for value in values)


def sequence_digits(values):
    return "".join("-" if value is None else str(value) for value in values)


def run_case(tokenizer, call, inputs, options, with_tokens):
    """The rows transformers returns, or the error it raises."""
    kwargs = dict(options)
    pad_token = kwargs.pop("pad_token", None)
    if pad_token is not None:
        if tokenizer.pad_token is not None:
            return None  # the case is for tokenizers without a pad token
        tokenizer.pad_token = tokenizer.eos_token
        try:
            return run_case(tokenizer, call, inputs, {**kwargs, "pad_token": None}, with_tokens)
        finally:
            tokenizer.pad_token = None
    truncation_side = kwargs.pop("truncation_side", None)
    if truncation_side is not None:
        saved = tokenizer.truncation_side
        tokenizer.truncation_side = truncation_side
        try:
            return run_case(tokenizer, call, inputs, kwargs, with_tokens)
        finally:
            tokenizer.truncation_side = saved
    kwargs.update(
        return_token_type_ids=True,
        return_attention_mask=True,
        return_special_tokens_mask=True,
        return_offsets_mapping=True,
    )
    texts = [REFERENCE_TEXTS[index] if kind == "t" else PAIRS[index] for kind, index in inputs]
    try:
        if call == "batch":
            if all(isinstance(text, tuple) for text in texts):
                outputs = [tokenizer([a for a, _ in texts], [b for _, b in texts], **kwargs)]
            else:
                outputs = [tokenizer(texts, **kwargs)]
        else:
            outputs = []
            for text in texts:
                if isinstance(text, tuple):
                    output = tokenizer(text[0], text[1], **kwargs)
                else:
                    output = tokenizer(text, **kwargs)
                if not kwargs.get("return_overflowing_tokens"):
                    # the single-input path drops the batch axis: put it back
                    output = BatchEncodingRows(output)
                outputs.append(output)
    except BaseException as error:  # ValueError, tokenizers' Exception, and pyo3's PanicException (a BaseException)
        if isinstance(error, (KeyboardInterrupt, SystemExit)):
            raise
        return {"error": type(error).__name__}
    rows = {key: [] for key in ("input_ids", "token_type_ids", "attention_mask", "special_tokens_mask",
                                "offsets", "word_ids", "sequence_ids", "tokens")}
    mapping = []
    for sample_offset, output in enumerate(outputs):
        count = len(output["input_ids"])
        for row in range(count):
            rows["input_ids"].append(list(output["input_ids"][row]))
            rows["token_type_ids"].append(digits(output["token_type_ids"][row]))
            rows["attention_mask"].append(digits(output["attention_mask"][row]))
            rows["special_tokens_mask"].append(digits(output["special_tokens_mask"][row]))
            rows["offsets"].append([value for pair in output["offset_mapping"][row] for value in pair])
            rows["word_ids"].append(output.word_ids(row))
            rows["sequence_ids"].append(sequence_digits(output.sequence_ids(row)))
            if with_tokens:
                rows["tokens"].append(output.tokens(row))
        if "overflow_to_sample_mapping" in output:
            base = sample_offset if call == "each" else 0
            mapping.extend(base + sample for sample in output["overflow_to_sample_mapping"])
    if not with_tokens:
        del rows["tokens"]
    result = {"rows": rows}
    if kwargs.get("return_overflowing_tokens"):
        result["overflow_to_sample_mapping"] = mapping
    return result


class BatchEncodingRows:
    """A single-input BatchEncoding (no batch axis) seen as a batch of one row."""

    def __init__(self, output):
        self.output = output

    def __getitem__(self, key):
        return [self.output[key]]

    def __contains__(self, key):
        return key in self.output

    def word_ids(self, row):
        return self.output.word_ids(row)

    def sequence_ids(self, row):
        return self.output.sequence_ids(row)

    def tokens(self, row):
        return self.output.tokens(row)


def decode_cases(tokenizer, default_rows):
    """decode of the default encodings (entry i decodes row i of the "default" case), with and without special
    tokens, with the tokenizer's clean-up setting and with clean-up forced on and off."""
    decoded = []
    for ids in default_rows["input_ids"]:
        decoded.append(
            {
                "keep": tokenizer.decode(ids),
                "skip": tokenizer.decode(ids, skip_special_tokens=True),
                "skip_clean": tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=True),
                "keep_no_clean": tokenizer.decode(ids, clean_up_tokenization_spaces=False),
            }
        )
    return decoded


def tokenizer_info(tokenizer):
    special = {}
    for key in ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"):
        token = tokenizer.special_tokens_map.get(key)
        special[key] = None if token is None else str(token)
        special[key + "_id"] = None if token is None else tokenizer.convert_tokens_to_ids(str(token))
    model_max_length = tokenizer.model_max_length
    return {
        "class": type(tokenizer).__name__,
        "vocab_size": tokenizer.vocab_size,
        "len": len(tokenizer),
        "model_max_length": model_max_length if model_max_length <= int(1e20) else None,
        "padding_side": tokenizer.padding_side,
        "truncation_side": tokenizer.truncation_side,
        "clean_up_tokenization_spaces": bool(tokenizer.clean_up_tokenization_spaces),
        "model_input_names": list(tokenizer.model_input_names),
        "num_special_tokens_to_add": [tokenizer.num_special_tokens_to_add(False),
                                      tokenizer.num_special_tokens_to_add(True)],
        "all_special_ids": list(tokenizer.all_special_ids),
        "special_tokens": special,
        "added_tokens": {str(index): str(token) for index, token in sorted(tokenizer.added_tokens_decoder.items())},
    }


def reference_for(tokenizer, source, only_cases=None, default_inputs=None):
    cases = []
    default_rows = None
    for name, call, inputs, options in case_grid():
        if only_cases is not None and name not in only_cases:
            continue
        if name == "default" and default_inputs is not None:
            inputs = default_inputs
        result = run_case(tokenizer, call, inputs, options, name in WITH_TOKENS)
        if result is None:
            continue
        if name == "default":
            default_rows = result["rows"]
        cases.append({"name": name, "call": call, "inputs": inputs, "options": options, **result})
    batch_rows = [index for index in PADDING_BATCH if index < len(default_rows["input_ids"])]
    batch = [default_rows["input_ids"][index] for index in batch_rows]
    return {
        "source": source,
        "info": tokenizer_info(tokenizer),
        "texts": REFERENCE_TEXTS,
        "pairs": [list(pair) for pair in PAIRS],
        "cases": cases,
        "decode": decode_cases(tokenizer, default_rows),
        "batch_decode": {
            "rows": batch_rows,
            "skip": tokenizer.batch_decode(batch, skip_special_tokens=True),
            "keep": tokenizer.batch_decode(batch),
        },
        "versions": {
            "python": sys.version.split()[0],
            "tokenizers": tokenizers.__version__,
            "transformers": transformers.__version__,
        },
    }


def slow_copy(source_folder, files, work_dir, name, config_overrides=None):
    """A folder holding only the given files (the slow files without tokenizer.json, for the fallback
    references), with `config_overrides` set in its tokenizer_config.json."""
    folder = work_dir / name
    folder.mkdir(parents=True)
    for file in files:
        shutil.copy(source_folder / file, folder / file)
    if config_overrides:
        with open(folder / "tokenizer_config.json", encoding="utf-8") as file:
            config = json.load(file)
        config.update(config_overrides)
        write_json(folder / "tokenizer_config.json", config)
    return folder


# Folders with a changed tokenizer_config.json, for the code that brings the backend in line with the
# configuration (BertTokenizerFast's normalizer, the ByteLevel pre-tokenizer's and RobertaProcessing's
# add_prefix_space, GPT-2's add_bos_token in the slow conversion): (name, trained folder, slow files or
# None for every file, overrides, class).
VARIANTS = [
    ("wordpiece-cased-lowercase-strip-accents", "wordpiece-cased", None,
     {"do_lower_case": True, "strip_accents": True}, None),
    ("wordpiece-cased-lowercase-slow", "wordpiece-cased",
     ["vocab.txt", "tokenizer_config.json", "special_tokens_map.json"], {"do_lower_case": True}, BertTokenizerFast),
    ("bpe-roberta-add-prefix-space", "bpe-roberta", None, {"add_prefix_space": True}, None),
    ("bpe-roberta-add-prefix-space-slow", "bpe-roberta",
     ["vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"],
     {"add_prefix_space": True}, RobertaTokenizerFast),
    ("bpe-gpt2-add-prefix-space", "bpe-gpt2", None, {"add_prefix_space": True}, None),
    ("bpe-gpt2-bos-prefix-space-slow", "bpe-gpt2",
     ["vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"],
     {"add_bos_token": True, "add_prefix_space": True}, GPT2TokenizerFast),
]


def write_references(out_dir):
    """Writes `reference/<name>.json` for the trained folders, the real MiniLM and GPT-2 tokenizers, and the
    slow-file fallbacks. `source` in each file says which folder (relative to the fixtures folder, or to
    `$OXFORMER_CACHE/models/`) and which files the Rust test loads."""
    import tempfile

    reference_dir = out_dir / "reference"
    if reference_dir.exists():
        shutil.rmtree(reference_dir)
    reference_dir.mkdir()
    cache = Path(os.environ.get("OXFORMER_CACHE", Path(__file__).resolve().parents[2] / ".cache"))
    minilm = cache / "models" / "sentence-transformers" / "all-MiniLM-L6-v2"
    gpt2 = cache / "models" / "gpt2-tokenizer"
    slow_classes = {
        "wordpiece-cased": (BertTokenizerFast, ["vocab.txt", "tokenizer_config.json", "special_tokens_map.json"]),
        "bpe-roberta": (RobertaTokenizerFast, ["vocab.json", "merges.txt", "tokenizer_config.json",
                                               "special_tokens_map.json", "added_tokens.json"]),
        "bpe-gpt2": (GPT2TokenizerFast, ["vocab.json", "merges.txt", "tokenizer_config.json",
                                         "special_tokens_map.json", "added_tokens.json"]),
    }
    minilm_slow_files = ["vocab.txt", "tokenizer_config.json", "special_tokens_map.json"]
    with tempfile.TemporaryDirectory() as work:
        work_dir = Path(work)
        jobs = []
        for name in TRAINED:
            folder = out_dir / name
            jobs.append((name, lambda folder=folder: transformers.AutoTokenizer.from_pretrained(str(folder)),
                         {"root": "fixtures", "folder": f"tokenizers/{name}", "files": None}, None))
        for name, (cls, files) in slow_classes.items():
            slow = slow_copy(out_dir / name, files, work_dir, name)
            jobs.append((f"{name}-slow", lambda cls=cls, slow=slow: cls.from_pretrained(str(slow)),
                         {"root": "fixtures", "folder": f"tokenizers/{name}", "files": files}, SLOW_CASES))
        for name, trained, files, overrides, cls in VARIANTS:
            files = files or sorted(path.name for path in (out_dir / trained).iterdir())
            folder = slow_copy(out_dir / trained, files, work_dir, name, overrides)
            load_class = cls or transformers.AutoTokenizer
            jobs.append((name, lambda load_class=load_class, folder=folder: load_class.from_pretrained(str(folder)),
                         {"root": "fixtures", "folder": f"tokenizers/{trained}", "files": files,
                          "config_overrides": overrides}, SLOW_CASES))
        if minilm.is_dir():
            jobs.append(("minilm", lambda: transformers.AutoTokenizer.from_pretrained(str(minilm)),
                         {"root": "cache", "folder": "models/sentence-transformers/all-MiniLM-L6-v2",
                          "files": None}, None))
            slow = slow_copy(minilm, minilm_slow_files, work_dir, "minilm")
            jobs.append(("minilm-slow", lambda slow=slow: BertTokenizerFast.from_pretrained(str(slow)),
                         {"root": "cache", "folder": "models/sentence-transformers/all-MiniLM-L6-v2",
                          "files": minilm_slow_files}, SLOW_CASES))
        else:
            print(f"warning: {minilm} missing (run `cargo xtask fetch`): no MiniLM references", file=sys.stderr)
        if gpt2.is_dir():
            jobs.append(("gpt2", lambda: GPT2TokenizerFast.from_pretrained(str(gpt2)),
                         {"root": "cache", "folder": "models/gpt2-tokenizer", "files": ["vocab.json", "merges.txt"]}, None))
        else:
            print(f"warning: {gpt2} missing (run `cargo xtask fetch`): no GPT-2 references", file=sys.stderr)
        for name, load, source, only_cases in jobs:
            default_inputs = [["t", index] for index in SOME_TEXTS] if "config_overrides" in source else None
            reference = reference_for(load(), source, only_cases, default_inputs)
            write_compact_json(reference_dir / f"{name}.json", reference)


def write_compact_json(path, data):
    """One line per case row list: small and still readable in a diff."""
    with open(path, "w", encoding="utf-8") as file:
        json.dump(data, file, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        file.write("\n")


README = r'''# fixtures/tokenizers: trained tokenizers and transformers' answers

Written by `xtask/python/fixtures_tokenizers.py --out fixtures` (run by `cargo xtask fixtures`) in the
pinned environment (transformers 4.57.6, tokenizers 0.22.1). Deterministic: the same bytes on every run.
Read by `crates/tokenizer/tests/parity.rs`; tests never need Python.

## Trained folders

Complete HF tokenizer folders, trained by the script on a corpus it builds itself (word lists in
several scripts plus the awkward strings below), saved through the transformers class they imitate.
They are copied unchanged into `fixtures/models/*`, so they must not change unless the models are
regenerated too.

| folder | model | class | template |
|---|---|---|---|
| `wordpiece-cased` | WordPiece, 1500, cased, CJK split, accents kept | BertTokenizerFast | `[CLS] A [SEP] B [SEP]` |
| `unigram-xlmr` | Unigram, 1200 + `<mask>`, Metaspace | XLMRobertaTokenizerFast | `<s> A </s></s> B </s>` |
| `bpe-roberta` | byte-level BPE, 1500 + `<mask>` | RobertaTokenizerFast | RobertaProcessing |
| `bpe-gpt2` | byte-level BPE, 1500 + `<\|endoftext\|>` | GPT2TokenizerFast | none |

## `reference/<name>.json`

What the fast tokenizer returns, one file per tokenizer:

| file | loaded by transformers from | `source` (what the Rust test loads) |
|---|---|---|
| `wordpiece-cased`, `unigram-xlmr`, `bpe-roberta`, `bpe-gpt2` | the trained folder (`AutoTokenizer`) | `fixtures/tokenizers/<name>` |
| `wordpiece-cased-slow` | vocab.txt + tokenizer_config.json + special_tokens_map.json (`BertTokenizerFast`, converted from the slow files) | the same files, copied to a temporary folder |
| `bpe-roberta-slow`, `bpe-gpt2-slow` | vocab.json + merges.txt + the config files (`RobertaTokenizerFast`, `GPT2TokenizerFast`) | likewise |
| `minilm` | the real all-MiniLM-L6-v2 folder (bert-base-uncased vocabulary, tokenizer.json) | `$OXFORMER_CACHE/models/sentence-transformers/all-MiniLM-L6-v2` |
| `minilm-slow` | its vocab.txt + tokenizer_config.json + special_tokens_map.json | likewise, copied |
| `gpt2` | the real GPT-2 vocab.json + merges.txt, nothing else (`GPT2TokenizerFast`) | `$OXFORMER_CACHE/models/gpt2-tokenizer` |

(`$OXFORMER_CACHE` defaults to `<workspace>/.cache`; `cargo xtask fetch` fills it. The real-model tests are
`#[ignore = "needs cargo xtask fetch"]`; the README's test command runs them.)

Each file holds:

- `source`: `root` (`fixtures` or `cache`), `folder`, and `files` (null: the folder as it is; a list: only
  those files, copied to a temporary folder: the slow-file fallbacks), and `config_overrides`: keys set in
  the copy's tokenizer_config.json (the variants below).
- `info`: class, `vocab_size`, `len` (with added tokens), `model_max_length` (null = no limit),
  `padding_side`, `truncation_side`, `clean_up_tokenization_spaces`, `model_input_names`,
  `num_special_tokens_to_add` ([single, pair]), `all_special_ids`, `special_tokens` (each named token and
  its id), `added_tokens` (id → content).
- `texts` (the awkward corpus: accents, combining marks, CJK, Hangul, Arabic, emoji with modifiers and
  ZWJ, whitespace runs, tabs, CRLF, zero-width and ideographic spaces, the empty string, a 300-character
  word, a ~100-word text, literal special tokens, full-width and ligature characters) and `pairs`.
- `cases`: `{name, call, inputs, options, rows, overflow_to_sample_mapping?}` or `{..., error}`.
  - `call`: `batch` = `tokenizer(list, **options)` (pairs as `tokenizer(firsts, seconds)`); `each` =
    `tokenizer(text, **options)` / `tokenizer(first, second, **options)` per input, the single-input path
    (where, in transformers, a pair with an empty second text is encoded as a single text).
  - `inputs`: `["t", i]` = `texts[i]`, `["p", i]` = `pairs[i]`.
  - `options`: exactly the keyword arguments given (`truncation`, `max_length`, `stride`,
    `return_overflowing_tokens`, `padding`, `pad_to_multiple_of`, `padding_side`, `add_special_tokens`),
    plus `"pad_token": "eos"`: the case ran with `tokenizer.pad_token = tokenizer.eos_token` (GPT-2 style;
    only in the files of tokenizers without a pad token), and `"truncation_side": "left"`: the case ran
    with `tokenizer.truncation_side = "left"`. Every case also asks for token types, attention
    mask, special-tokens mask and offsets.
  - `rows`: one entry per output row (with overflowing windows, every window of every input in order):
    `input_ids` (lists), `token_type_ids` / `attention_mask` / `special_tokens_mask` (strings of digits,
    one per token), `offsets` (flat `[start, end, start, end, ...]`, character offsets = Python `str`
    indices), `word_ids` (lists, null for special tokens and padding), `sequence_ids` (string: `0`, `1`,
    `-` for none), `tokens` (only in the `pairs` case).
  - `error`: the exception class transformers raised (`ValueError`, `Exception` from tokenizers,
    `PanicException` where the Rust library panicked); the Rust wrapper must return an error.
- `decode`: for row i of the `default` case: `keep` = `decode(ids)`, `skip` =
  `decode(ids, skip_special_tokens=True)`, `skip_clean` = the same with
  `clean_up_tokenization_spaces=True`, `keep_no_clean` = `decode(ids, clean_up_tokenization_spaces=False)`.
- `batch_decode`: `rows` (indices into the `default` rows), `skip` and `keep` = `batch_decode` of them.
- `versions`.

The slow-file files (`*-slow`) hold a subset of the cases (`default`, `pairs`, `pairs-each`) and the
decodes: enough to show the fallback builds the same tokenizer.

Variants (`config_overrides`, same subset, `default` on 10 of the texts): `wordpiece-cased-lowercase-strip-accents`
(tokenizer.json with `do_lower_case` and `strip_accents` true: BertTokenizerFast rebuilds the normalizer),
`wordpiece-cased-lowercase-slow` (vocab.txt, `do_lower_case`), `bpe-roberta-add-prefix-space` and its
`-slow`, `bpe-gpt2-add-prefix-space`, `bpe-gpt2-bos-prefix-space-slow` (vocab.json + merges.txt with
`add_bos_token` and `add_prefix_space`: the slow conversion's `<|endoftext|> A` template).

## Sentencepiece folders (`spm-*`, written by `xtask/python/fixtures_sentencepiece.py`)

Tiny sentencepiece models trained with the `sentencepiece` package (one thread, fixed options, relative
paths: the same bytes on every run), saved through the slow transformers class: no tokenizer.json. Read by
`crates/tokenizer/tests/sentencepiece.rs`.

| folder | model file(s) | spm | class |
|---|---|---|---|
| `spm-t5` | spiece.model (`<pad>` 0, `</s>` 1, `<unk>` 2; full nmt_nfkc charsmap) | unigram, 700 | T5Tokenizer, 20 extra ids |
| `spm-bpe` | spiece.model (identity normalization) | BPE, 500 | T5Tokenizer, 20 extra ids |
| `spm-xlmr` | sentencepiece.bpe.model (fairseq ids; a small NFKC-like rule set) | unigram, 600 | XLMRobertaTokenizer |
| `spm-marian` | source.spm (small rule set), target.spm (identity), vocab.json (both models' pieces, `>>de<<`, `>>fr<<`, `<pad>` last; three rare source pieces left out) | unigram, 400 / 380 | MarianTokenizer en → de |

`reference/spm-<name>.json`: `info` (class, sizes, special tokens and ids, `model_max_length`,
`clean_up_tokenization_spaces`), `texts` and `encode` (per text: `ids`, `tokens`, `offsets` for the fast
tokenizers, `decode_keep`, `decode_skip`), `pairs` and `pair_encode`, `batch` (padded to the longest:
`input_ids`, `attention_mask`, `batch_decode_skip` / `_keep`), `decode` (random id sequences with special
ids inside, decoded with `keep` / `skip` / `skip_clean`), and for Marian `target_encode` (`text_target`
labels, i.e. the target model, and their decodes). The reference is `AutoTokenizer.from_pretrained(folder)`,
what the pipelines use: for T5 and XLM-R the fast tokenizer transformers converts from the spm file; `slow`
holds the slow tokenizer's answers beside it (`ids_differ_from_fast`). `source` says what the test loads:
the folder itself, or (`spm-*-minimal`) a copy of some of its `files` with the `written` configuration
files, shaped as real repositories often are (config.json's `model_type`, no tokenizer class), or T5 with
`legacy: false` (`spm-t5-not-legacy`: Metaspace prepends to the first split only) and with
`add_prefix_space: false` (`spm-t5-no-prefix-space`).
'''


def write_readme(out_dir):
    with open(out_dir / "README.md", "w", encoding="utf-8") as file:
        file.write(README)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="fixtures folder; writes below OUT/tokenizers/")
    parser.add_argument("--only-trained", action="store_true", help="write the trained folders, no references")
    args = parser.parse_args()
    out_dir = args.out / "tokenizers"
    out_dir.mkdir(parents=True, exist_ok=True)
    corpus = build_corpus()
    write_trained(out_dir, corpus)
    if args.only_trained:
        return
    write_references(out_dir)
    write_readme(out_dir)


if __name__ == "__main__":
    sys.exit(main())
