#!/usr/bin/env python3
"""HF transformers' summarization, translation and text2text-generation pipelines on the tiny
encoder-decoder checkpoints that `fixtures_seq2seq.py` writes (run after it by `cargo xtask fixtures`).

Writes `pipelines/seq2seq/<model>.json` under `--out`: per case the task, the inputs (one text or a list),
the call options, what the pipeline returns, and, from each `generate()` call the pipeline makes (one per
input, as transformers runs a list one input at a time), the token ids and the beam scores
(`sequences_scores`), with the generation settings the pipeline resolved (its defaults
`max_new_tokens=256, num_beams=4`, the model's generation config, `task_specific_params[task]`, the call's
options).

A reference tests our tokens only where float rounding cannot decide them. So every choice `generate()` makes
(greedy: the best token against the next; beam search: which candidates run on, which may finish, which
finished hypotheses are kept and in what order they are returned, and the early-stop test) is recorded with
its margin, the difference of the two scores compared; each generate call's smallest is written as
`min_decision_gap`, and the script fails if any is below `MIN_DECISION_GAP`: a tie there would be broken by
the last bit of a log_softmax (torch's and ours differ in it) or by the order of equal values in `torch.topk`.

Deterministic: single-threaded torch, sorted JSON keys.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch
import transformers
from transformers import pipeline
from transformers.generation.logits_process import LogitsProcessorList
from transformers.generation.utils import GenerationMixin

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

# The smallest margin a recorded decision may have, for every checkpoint: far above the float noise of
# sums of a few hundred log-probabilities (an ulp of 700 is 6e-5), so that the reference's tokens are
# ours. The checkpoints are made to keep it (PEAKED in fixtures_seq2seq.py: a scaled decoder output and
# a chosen seed).
MIN_DECISION_GAP = 1e-3
# Scores at or below this carry transformers' -1e9 mark for "impossible": comparisons between two
# of them decide nothing that is returned.
IMPOSSIBLE = -1.0e8

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


class DecisionGaps:
    """The margins of the comparisons `generate()` decides on, hooked into transformers 4.57's vectorised
    beam search (`GenerationMixin._get_top_k_continuations` and the three steps after it) and into the
    logits processors for greedy search. `start()` before a generate call, `finish()` after it.

    A margin is in the units of what rounding perturbs: summed log-probabilities (or a greedy step's
    processed logits). A comparison of length-penalised scores `s / length**length_penalty` is flipped by
    changing either sum by the gap times its divisor, so its margin is the gap times the smaller one."""

    def __init__(self) -> None:
        self.active = False
        self.greedy = False
        self.step = 0
        self.smallest = (math.inf, "")
        self.cuts = None
        self.finished = None
        self.kept_lengths = None

    def start(self, greedy: bool) -> None:
        self.active, self.greedy, self.step = True, greedy, 0
        self.smallest = (math.inf, "")
        self.cuts = self.finished = self.kept_lengths = None

    def offer(self, better: float, worse: float, what: str, divisors: tuple[float, float] = (1.0, 1.0)) -> None:
        """`better` won over `worse` (or an early stop was decided on their order)."""
        if max(better, worse) <= IMPOSSIBLE:
            return
        margin = abs(better - worse) * min(divisors)
        if margin < self.smallest[0]:
            self.smallest = (margin, f"{what} at step {self.step}: {better!r} vs {worse!r}")

    def offer_ranked(self, values: list[float], rank: int, what: str, divisors: list[float] | None = None) -> None:
        """The value at `rank` (0-based) of a list sorted best first won over the one after it."""
        if rank + 1 < len(values):
            pair = (1.0, 1.0) if divisors is None else (divisors[rank], divisors[rank + 1])
            self.offer(values[rank], values[rank + 1], what, pair)

    def finish(self, num_return_sequences: int) -> tuple[float, str]:
        """The returned hypotheses, in their order, won over the next finished one."""
        if self.finished is not None:
            for scores, divisors in self.finished:
                for rank in range(num_return_sequences):
                    self.offer_ranked(scores, rank, "returned hypothesis", divisors)
        self.active = False
        return self.smallest


def penalty_divisors(lengths: torch.Tensor, length_penalty: float) -> torch.Tensor:
    """What each hypothesis's summed log-probability is divided by (`length**length_penalty`)."""
    return lengths.clamp(min=1).to(torch.float64) ** length_penalty


def sorted_with(scores: torch.Tensor, divisors: torch.Tensor) -> list[tuple[list[float], list[float]]]:
    """Per row, the scores best first and their divisors in the same order."""
    order = torch.argsort(scores, dim=1, descending=True, stable=True)
    return list(zip(torch.gather(scores, 1, order).tolist(), torch.gather(divisors, 1, order).tolist()))


GAPS = DecisionGaps()


def install_gap_hooks() -> None:
    top_k_continuations = GenerationMixin._get_top_k_continuations
    running_beams = GenerationMixin._get_running_beams_for_next_iteration
    update_finished = GenerationMixin._update_finished_beams
    early_stop = GenerationMixin._check_early_stop_heuristic
    processors = LogitsProcessorList.__call__

    def top_k(self, accumulated_log_probs, **kwargs):
        if GAPS.active:
            # one more than are kept: the first candidate left out
            k = min(kwargs["beams_to_keep"] + 1, accumulated_log_probs.shape[-1])
            GAPS.cuts = torch.topk(accumulated_log_probs, k=k).values.tolist()
        return top_k_continuations(self, accumulated_log_probs=accumulated_log_probs, **kwargs)

    def running(self, **kwargs):
        if GAPS.active:
            num_beams = kwargs["num_beams"]
            values = kwargs["topk_log_probs"].tolist()
            hits = kwargs["next_token_hits_stopping_criteria"].tolist()
            for row, (scores, stops) in enumerate(zip(values, hits)):
                # only the top num_beams of the top-k may finish
                if any(stops[num_beams - 1 : num_beams + 1]):
                    GAPS.offer_ranked(scores, num_beams - 1, "may finish")
                live = [score for score, stop in zip(scores, stops) if not stop]
                if len(live) > num_beams:
                    GAPS.offer_ranked(live, num_beams - 1, "running beam")
                else:
                    # the running beams reach the end of the top-k: its cut decides
                    GAPS.offer_ranked(GAPS.cuts[row], len(scores) - 1, "top-k cut")
        return running_beams(self, **kwargs)

    def finished(self, **kwargs):
        result = update_finished(self, **kwargs)
        if GAPS.active:
            # the merged scores, as _update_finished_beams computes them
            just_finished = kwargs["next_token_hits_stopping_criteria"] & kwargs["top_num_beam_mask"][None, :]
            length_penalty = kwargs["length_penalty"]
            length = kwargs["cur_len"] + 1 - kwargs["decoder_prompt_len"]
            candidates = kwargs["topk_log_probs"] / (length**length_penalty)
            full = torch.all(kwargs["is_sent_finished"], axis=-1, keepdims=True) & (kwargs["early_stopping"] is True)
            candidates += full.to(torch.float32) * -1.0e9
            candidates += (~kwargs["is_early_stop_heuristic_unsatisfied"]).to(torch.float32) * -1.0e9
            candidates += (~just_finished) * -1.0e9
            merged = torch.cat((kwargs["beam_scores"], candidates), dim=1)
            # a finished hypothesis's length: the steps its beam indices record
            lengths = torch.cat(
                (
                    (kwargs["beam_indices"] >= 0).sum(dim=-1),
                    torch.full(candidates.shape, length, dtype=torch.int64),
                ),
                dim=1,
            )
            for scores, divisors in sorted_with(merged, penalty_divisors(lengths, length_penalty)):
                GAPS.offer_ranked(scores, kwargs["num_beams"] - 1, "finished hypothesis kept", divisors)
            # what the early-stop test and the returned order compare
            GAPS.kept_lengths = (result[2] >= 0).sum(dim=-1)
            GAPS.finished = sorted_with(result[1], penalty_divisors(GAPS.kept_lengths, length_penalty))
            GAPS.step += 1
        return result

    def heuristic(**kwargs):
        if GAPS.active:
            length_penalty = kwargs["length_penalty"]
            if kwargs["early_stopping"] == "never" and length_penalty > 0.0:
                length = kwargs["max_length"] - kwargs["decoder_prompt_len"]
            else:
                length = kwargs["cur_len"] - kwargs["decoder_prompt_len"]
            best = (kwargs["running_beam_scores"][:, 0] / (length**length_penalty)).tolist()
            worst, at = torch.min(kwargs["beam_scores"], dim=1)
            worst_divisors = penalty_divisors(GAPS.kept_lengths, length_penalty)
            open_rows = kwargs["is_early_stop_heuristic_unsatisfied"][:, 0].tolist()
            any_finished = torch.any(kwargs["is_sent_finished"], dim=1).tolist()
            for row, (still_open, finished_some) in enumerate(zip(open_rows, any_finished)):
                if still_open and finished_some:
                    divisors = (max(length, 1) ** length_penalty, float(worst_divisors[row, at[row]]))
                    GAPS.offer(best[row], float(worst[row]), "early stop", divisors)
        return early_stop(**kwargs)

    def processed(self, input_ids, scores, **kwargs):
        scores = processors(self, input_ids, scores, **kwargs)
        if GAPS.active and GAPS.greedy:
            for row in torch.topk(scores, k=2).values.tolist():
                GAPS.offer_ranked(row, 0, "greedy token")
            GAPS.step += 1
        return scores

    GenerationMixin._get_top_k_continuations = top_k
    GenerationMixin._get_running_beams_for_next_iteration = running
    GenerationMixin._update_finished_beams = finished
    GenerationMixin._check_early_stop_heuristic = staticmethod(heuristic)
    LogitsProcessorList.__call__ = processed


def run_case(folder: Path, task: str, inputs, options: dict) -> dict:
    runner = pipeline(task, model=str(folder), tokenizer=str(folder), framework="pt", device="cpu")
    model = runner.model
    original = model.generate
    calls = []

    def recording_generate(*args, **kwargs):
        # the settings generate() resolves: the pipeline's config with the call's options over it
        config, _ = model._prepare_generation_config(kwargs.get("generation_config"), None, **{
            key: value for key, value in kwargs.items() if key != "generation_config" and key != "attention_mask"
            and key != "input_ids"
        })
        if not config.do_sample:
            GAPS.start(greedy=config.num_beams == 1)
        output = original(*args, **kwargs, output_scores=True, return_dict_in_generate=True)
        call = {
            "input_ids": kwargs["input_ids"],
            "sequences": output.sequences,
            "settings": {key: getattr(config, key) for key in RECORDED},
        }
        if GAPS.active:
            call["min_decision_gap"], call["closest_decision"] = GAPS.finish(config.num_return_sequences)
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
    install_gap_hooks()
    for model_name, cases in CASES.items():
        folder = args.out / "models" / model_name
        if not folder.is_dir():
            sys.exit(f"{folder} is missing: fixtures_seq2seq.py writes it first")
        record = {"model": model_name, "versions": VERSIONS, "cases": {}}
        for case, task, inputs, options in cases:
            record["cases"][case] = run_case(folder, task, inputs, options)
        close_calls = [
            f"{model_name}/{case}: input {index}: {call['closest_decision']}"
            for case, result in record["cases"].items()
            for index, call in enumerate(result["generate_calls"])
            if call["min_decision_gap"] < MIN_DECISION_GAP
        ]
        if close_calls:
            sys.exit(
                f"decisions closer than {MIN_DECISION_GAP} (float noise would pick the tokens):\n  "
                + "\n  ".join(close_calls)
            )
        smallest = min(call["min_decision_gap"] for result in record["cases"].values()
                       for call in result["generate_calls"])
        print(f"{model_name}: smallest decision gap {smallest:.3g}", flush=True)
        write_json(args.out / "pipelines" / "seq2seq" / f"{model_name}.json", record)
        print(f"pipelines/seq2seq/{model_name}.json", flush=True)


if __name__ == "__main__":
    main()
