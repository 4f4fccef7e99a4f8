"""Tokenizer fixtures for oxformer: four small trained tokenizers and transformers' reference outputs.

Run by `cargo xtask fixtures` (never by the tests) as `fixtures_tokenizers.py --out DIR`. Writes only below
`DIR/tokenizers/`, deterministically (same bytes on every run):

- `DIR/tokenizers/<name>/` for `wordpiece-cased`, `unigram-xlmr`, `bpe-roberta`, `bpe-gpt2`: complete HF
  tokenizer folders (tokenizer.json, tokenizer_config.json, special_tokens_map.json, ...) trained with the
  `tokenizers` library on a corpus this script builds itself, then saved through the transformers class of
  the model they imitate.
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


if __name__ == "__main__":
    sys.exit(main())
