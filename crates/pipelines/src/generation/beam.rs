//! Beam search as transformers 4.57's vectorised `GenerationMixin._beam_search`: per prompt,
//! `num_beams` running hypotheses and up to `num_beams` finished ones, with the same scores
//! (f32 sums of log-probabilities, -1e9 for "impossible") and the same stopping heuristics.

use std::sync::{Mutex, PoisonError};

use oxformer_tensor::map_parts;

use super::{
    EarlyStopping, GenerateOutput, Generation, Generative, next_logits, processors, stop_string_hit,
};
use crate::Result;

/// transformers' stand-in for −∞ in beam scores.
const IMPOSSIBLE: f32 = -1.0e9;

/// One candidate continuation: `beam` followed by `token`, with its summed log-probability.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    score: f32,
    beam: usize,
    token: u32,
}

/// The indices of the `k` largest values, largest first; equal values by lower index.
///
/// `torch.topk` does not guarantee an order for equal values, and on CPU it does not always put
/// the lower index first (a 256-step beam search of a near-uniform tiny T5 met an exact tie it
/// broke the other way), so the reference may differ from this on an exact tie. The seq2seq
/// fixtures are made with every decision at least 1e-3 clear of a tie
/// (`xtask/python/fixtures_seq2seq_pipelines.py`), so their tokens never hang on it.
fn top_k_indices(values: &[f32], k: usize) -> Vec<usize> {
    top_k_by(values.len(), k, |index| values[index])
}

/// [`top_k_indices`] of the values `value(0..len)`, without them in memory.
fn top_k_by(len: usize, k: usize, value: impl Fn(usize) -> f32) -> Vec<usize> {
    let k = k.min(len);
    if k == 0 {
        return Vec::new();
    }
    // a ranks before b: larger (total order), then lower index
    let before = |(a, value_a): (usize, f32), (b, value_b): (usize, f32)| {
        value_b.total_cmp(&value_a).then(a.cmp(&b)).is_lt()
    };
    // one pass keeping the best k in order: over a row of a vocabulary's values, almost every
    // value is rejected by the k-th best, a block of values at a time once the best are k (a
    // later index must be strictly above it in the total order)
    let mut best: Vec<(usize, f32)> = Vec::with_capacity(k + 1);
    let offer = |index: usize, best: &mut Vec<(usize, f32)>| {
        let entry = (index, value(index));
        if best.len() == k && !before(entry, best[k - 1]) {
            return;
        }
        let at = best.partition_point(|&other| before(other, entry));
        best.insert(at, entry);
        best.truncate(k);
    };
    const BLOCK: usize = 32;
    let mut index = 0;
    while index < len {
        let end = (index + BLOCK).min(len);
        if best.len() == k {
            let threshold = total_order_key(best[k - 1].1);
            let block_max = (index..end)
                .map(|i| total_order_key(value(i)))
                .fold(i32::MIN, i32::max);
            if block_max <= threshold {
                index = end;
                continue;
            }
        }
        for i in index..end {
            offer(i, &mut best);
        }
        index = end;
    }
    best.into_iter().map(|(index, _)| index).collect()
}

/// An integer that orders as `f32::total_cmp` orders its value.
fn total_order_key(value: f32) -> i32 {
    let bits = value.to_bits() as i32;
    bits ^ (((bits >> 31) as u32) >> 1) as i32
}

/// The best `k` candidates of a prompt's beams, best first, ties by (beam, token), from each
/// beam's own best `k` in that order: what [`top_k_indices`] over every (beam, token) would
/// pick, as each of those is among its own beam's best `k`.
fn best_of_rows(row_best: &[Vec<Candidate>], k: usize) -> Vec<Candidate> {
    // beam-major, each beam's in order: equal scores stay in (beam, token) order
    let pool: Vec<Candidate> = row_best.iter().flatten().copied().collect();
    let scores: Vec<f32> = pool.iter().map(|candidate| candidate.score).collect();
    top_k_indices(&scores, k)
        .into_iter()
        .map(|index| pool[index])
        .collect()
}

/// `base / length^length_penalty` as the reference computes it (the power in f64, the
/// division in f32).
fn penalised(base: f32, length: usize, length_penalty: f32) -> f32 {
    base / (length as f64).powf(length_penalty as f64) as f32
}

pub(super) fn beam_search<M: Generative + ?Sized>(
    generation: &mut Generation<'_, M>,
) -> Result<GenerateOutput> {
    let model = generation.model;
    let config = &generation.config;
    let num_beams = config.num_beams;
    let batch = generation.prompts.len();
    let prompt_length = generation.start_length;
    let max_length = generation.max_length;
    let vocab = model.vocab_size();
    let eos = &config.eos_token_id;
    let fill = match (config.pad_token_id, eos.first()) {
        (Some(pad), _) if pad != 0 => pad,
        (_, Some(&first)) => first,
        (pad, None) => pad.unwrap_or(0),
    };
    let beams_to_keep = 2.max(1 + eos.len()) * num_beams;
    let length_penalty = config.length_penalty;
    let early_stopping = config.early_stopping;

    // (batch × beams) rows
    let (cache, mut running) = generation.start_rows(num_beams, max_length)?;
    let mut cache = config.use_cache.then_some(cache);
    let mut running_scores = vec![vec![0.0f32; num_beams]; batch];
    for scores in &mut running_scores {
        for score in scores.iter_mut().skip(1) {
            *score = IMPOSSIBLE;
        }
    }
    // Finished hypotheses per prompt: sequence, score, generated length, finished flag.
    let mut finished: Vec<Vec<Vec<u32>>> = (0..batch)
        .map(|b| running[b * num_beams..(b + 1) * num_beams].to_vec())
        .collect();
    let mut finished_scores = vec![vec![IMPOSSIBLE; num_beams]; batch];
    let mut finished_lengths = vec![vec![0usize; num_beams]; batch];
    let mut is_finished = vec![vec![false; num_beams]; batch];
    let mut heuristic_unsatisfied = vec![true; batch];

    let mut cached = 0;
    let mut cur_len = prompt_length;
    let mut recorded_logits = Vec::new();
    let mut recorded_scores = Vec::new();
    loop {
        let fresh = || {
            model.start(
                &generation.prompts,
                num_beams,
                running[0].len(),
                generation.decoder_start,
            )
        };
        let mut log_probs = next_logits(model, &running, cache.as_mut(), &mut cached, fresh)?;
        if generation.record {
            recorded_logits.push(log_probs.clone());
        }
        // Row by row, over the threads (each row alone, so the same for any thread count): the
        // logits become log-probabilities in place, then the processors' scores; without
        // sampling, each row's best `beams_to_keep` continuations, from which the best of its
        // prompt are picked below (the best k of the prompt's rows are among their rows' best k).
        let row_best: Vec<Vec<Candidate>> = {
            let rows: Vec<Mutex<_>> = log_probs.rows_mut().into_iter().map(Mutex::new).collect();
            let (processors, running, running_scores) =
                (&generation.processors, &running, &running_scores);
            map_parts(rows.len(), |index| {
                let mut row = rows[index].lock().unwrap_or_else(PoisonError::into_inner);
                let scores = row.as_slice_mut().expect("contiguous logits");
                processors::log_softmax_in_place(scores);
                processors.apply(&running[index], scores);
                if config.do_sample {
                    return Vec::new();
                }
                let beam = index % num_beams;
                let base = running_scores[index / num_beams][beam];
                top_k_by(scores.len(), beams_to_keep, |token| scores[token] + base)
                    .into_iter()
                    .map(|token| Candidate {
                        score: scores[token] + base,
                        beam,
                        token: token as u32,
                    })
                    .collect()
            })
        };

        let mut next_running = Vec::with_capacity(batch * num_beams);
        let mut parents = Vec::with_capacity(batch * num_beams);
        let mut all_hit_stop = true;
        for b in 0..batch {
            let candidates: Vec<Candidate> = if config.do_sample {
                // Accumulated log-probabilities of every (beam, token), flattened beam-major.
                let mut accumulated = Vec::with_capacity(num_beams * vocab);
                for (beam, &base) in running_scores[b].iter().enumerate() {
                    let row = log_probs.row(b * num_beams + beam);
                    accumulated.extend(row.iter().map(|&l| l + base));
                }
                let probs = processors::softmax(&accumulated);
                generation
                    .rng
                    .categorical_without_replacement(&probs, beams_to_keep)
                    .into_iter()
                    .map(|index| Candidate {
                        score: accumulated[index],
                        beam: index / vocab,
                        token: (index % vocab) as u32,
                    })
                    .collect()
            } else {
                best_of_rows(&row_best[b * num_beams..(b + 1) * num_beams], beams_to_keep)
            };
            let sequence_of = |candidate: &Candidate| {
                let mut sequence = running[b * num_beams + candidate.beam].clone();
                sequence.push(candidate.token);
                sequence
            };
            let hits: Vec<bool> = candidates
                .iter()
                .map(|candidate| {
                    cur_len + 1 >= max_length
                        || eos.contains(&candidate.token)
                        || stop_string_hit(
                            &config.stop_strings,
                            generation.decode.as_deref(),
                            &sequence_of(candidate),
                            generation.padding[b],
                        )
                })
                .collect();
            all_hit_stop &= hits.iter().all(|&hit| hit);

            // The running beams of the next step: the best candidates that do not stop.
            let running_values: Vec<f32> = candidates
                .iter()
                .zip(&hits)
                .map(|(candidate, &hit)| candidate.score + if hit { IMPOSSIBLE } else { 0.0 })
                .collect();
            let next = top_k_indices(&running_values, num_beams);
            for (slot, &index) in next.iter().enumerate() {
                running_scores[b][slot] = running_values[index];
                next_running.push(sequence_of(&candidates[index]));
                parents.push(b * num_beams + candidates[index].beam);
            }

            // The finished hypotheses: the best of the old ones and the candidates among the
            // top `num_beams` that just stopped.
            let batch_full =
                early_stopping == EarlyStopping::Done && is_finished[b].iter().all(|&f| f);
            let mut merged_scores = finished_scores[b].clone();
            let mut merged_finished = is_finished[b].clone();
            for (rank, (candidate, &hit)) in candidates.iter().zip(&hits).enumerate() {
                let just_finished = hit && rank < num_beams;
                let mut score =
                    penalised(candidate.score, cur_len + 1 - prompt_length, length_penalty);
                if batch_full {
                    score += IMPOSSIBLE;
                }
                if !heuristic_unsatisfied[b] {
                    score += IMPOSSIBLE;
                }
                if !just_finished {
                    score += IMPOSSIBLE;
                }
                merged_scores.push(score);
                merged_finished.push(just_finished);
            }
            let best = top_k_indices(&merged_scores, num_beams);
            let old_sequences = std::mem::take(&mut finished[b]);
            let old_lengths = finished_lengths[b].clone();
            let mut sequences = Vec::with_capacity(num_beams);
            for (slot, &index) in best.iter().enumerate() {
                finished_scores[b][slot] = merged_scores[index];
                is_finished[b][slot] = merged_finished[index];
                if index < num_beams {
                    sequences.push(old_sequences[index].clone());
                    finished_lengths[b][slot] = old_lengths[index];
                } else {
                    let candidate = &candidates[index - num_beams];
                    let mut sequence = sequence_of(candidate);
                    sequence.resize(max_length, fill);
                    sequences.push(sequence);
                    finished_lengths[b][slot] = cur_len + 1 - prompt_length;
                }
            }
            finished[b] = sequences;
        }

        if generation.record {
            recorded_scores.push(log_probs);
        }
        running = next_running;
        if let Some(cache) = cache.as_mut() {
            model.reorder_cache(cache, &parents)?;
        }
        cur_len += 1;

        // `_check_early_stop_heuristic`.
        for b in 0..batch {
            let hypothetical = if early_stopping == EarlyStopping::Never && length_penalty > 0.0 {
                max_length - prompt_length
            } else {
                cur_len - prompt_length
            };
            let best_possible = penalised(running_scores[b][0], hypothetical, length_penalty);
            let worst = finished_scores[b]
                .iter()
                .copied()
                .fold(f32::INFINITY, f32::min);
            let improvable = is_finished[b]
                .iter()
                .any(|&done| best_possible > if done { worst } else { IMPOSSIBLE });
            heuristic_unsatisfied[b] &= improvable;
        }
        // `_beam_search_has_unfinished_sequences`.
        let improvement_possible = heuristic_unsatisfied.contains(&true);
        let every_beam_done = is_finished.iter().flatten().all(|&done| done);
        let open_beam = !(every_beam_done && early_stopping == EarlyStopping::Done);
        if !(improvement_possible && open_beam && !all_hit_stop) {
            break;
        }
    }

    let returned = config.num_return_sequences;
    let generated = finished_lengths
        .iter()
        .flat_map(|lengths| lengths[..returned].iter().copied())
        .max()
        .unwrap_or(0);
    let mut sequences = Vec::with_capacity(batch * returned);
    let mut scores = Vec::with_capacity(batch * returned);
    for b in 0..batch {
        for slot in 0..returned {
            let mut sequence = finished[b][slot].clone();
            sequence.resize(prompt_length + generated, fill);
            sequences.push(sequence);
            scores.push(finished_scores[b][slot]);
        }
    }
    Ok(GenerateOutput {
        sequences,
        prompt_length,
        sequences_scores: Some(scores),
        logits: recorded_logits,
        scores: recorded_scores,
    })
}

#[cfg(test)]
mod tests {
    use super::{Candidate, best_of_rows, top_k_by, top_k_indices};

    /// The definition: every index sorted by value, largest first, ties by lower index.
    fn by_sorting(values: &[f32], k: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..values.len()).collect();
        order.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
        order.truncate(k);
        order
    }

    /// Pseudo-random values with many ties, −∞, transformers' −1e9 and NaN among them.
    fn awkward_values(count: usize, seed: u32) -> Vec<f32> {
        let palette = [
            -1.0e9,
            -2.5,
            0.0,
            1.0,
            1.0,
            f32::NAN,
            f32::NEG_INFINITY,
            3.25,
        ];
        let mut state = seed;
        (0..count)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                palette[state as usize % palette.len()] + (state % 3) as f32
            })
            .collect()
    }

    #[test]
    fn the_best_of_each_beams_best_are_the_best_of_all() {
        for (seed, (beams, vocab)) in [(1u32, (1, 5)), (2, (4, 3)), (3, (4, 100)), (4, (5, 17))] {
            let values = awkward_values(beams * vocab, 0x9e37_79b9 ^ seed);
            for k in [0, 1, 2, 8, 9, beams * vocab + 1] {
                let row_best: Vec<Vec<Candidate>> = values
                    .chunks(vocab)
                    .enumerate()
                    .map(|(beam, row)| {
                        top_k_by(row.len(), k, |token| row[token])
                            .into_iter()
                            .map(|token| Candidate {
                                score: row[token],
                                beam,
                                token: token as u32,
                            })
                            .collect()
                    })
                    .collect();
                let picked: Vec<(usize, u32)> = best_of_rows(&row_best, k)
                    .iter()
                    .map(|candidate| (candidate.beam, candidate.token))
                    .collect();
                let expected: Vec<(usize, u32)> = by_sorting(&values, k)
                    .into_iter()
                    .map(|index| (index / vocab, (index % vocab) as u32))
                    .collect();
                assert_eq!(picked, expected, "{beams} beams × {vocab}, k {k}");
            }
        }
    }

    #[test]
    fn top_k_is_the_head_of_the_sorted_order() {
        let values = awkward_values(1000, 0x2545_f491);
        for length in [0, 1, 7, 1000] {
            let values = &values[..length];
            for k in [0, 1, 2, 4, 8, 9, length, length + 3] {
                assert_eq!(
                    top_k_indices(values, k),
                    by_sorting(values, k),
                    "k {k} of {length}"
                );
            }
        }
    }
}
