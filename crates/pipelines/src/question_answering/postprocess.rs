//! Question answering span decoding as pure functions: `select_starts_ends` and
//! `decode_spans` of transformers/pipelines/question_answering.py, and the answer merging of
//! `QuestionAnsweringPipeline.postprocess`.

use super::Answer;

/// A candidate span of one window: token indices and the product of the probabilities.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Span {
    pub start: usize,
    pub end: usize,
    pub score: f32,
}

/// `select_starts_ends`: normalises the start and end logits of one window over the tokens
/// that may be in an answer (`allowed`: not question, not special, attended; the CLS token is
/// allowed) and returns the `top_k` best spans no longer than `max_answer_len` tokens.
///
/// `min_null_score` is updated with this window's null (CLS, index 0) score when
/// `handle_impossible_answer`.
///
/// # Shapes
/// `start_logits`, `end_logits`, `allowed`: (tokens,).
pub(crate) fn select_starts_ends(
    start_logits: &[f32],
    end_logits: &[f32],
    allowed: &[bool],
    min_null_score: &mut f32,
    top_k: usize,
    handle_impossible_answer: bool,
    max_answer_len: usize,
) -> Vec<Span> {
    let normalise = |logits: &[f32]| -> Vec<f32> {
        let masked: Vec<f32> = logits
            .iter()
            .zip(allowed)
            .map(|(&logit, &ok)| if ok { logit } else { -10000.0 })
            .collect();
        crate::text::softmax(&masked)
    };
    let mut start = normalise(start_logits);
    let mut end = normalise(end_logits);
    if start.is_empty() {
        return Vec::new();
    }
    if handle_impossible_answer {
        *min_null_score = min_null_score.min(start[0] * end[0]);
    }
    // Mask CLS.
    start[0] = 0.0;
    end[0] = 0.0;
    decode_spans(&start, &end, top_k, max_answer_len, allowed)
}

/// `decode_spans`: the `top_k` highest `start[i] · end[j]` with `i <= j < i + max_answer_len`,
/// best first, keeping only spans whose both ends are allowed tokens.
///
/// Like numpy's selection in transformers, the candidates are the whole (tokens × tokens)
/// matrix with the spans outside the band scored 0.
fn decode_spans(
    start: &[f32],
    end: &[f32],
    top_k: usize,
    max_answer_len: usize,
    allowed: &[bool],
) -> Vec<Span> {
    let tokens = start.len();
    let score = |i: usize, j: usize| -> f32 {
        if j >= i && j - i < max_answer_len {
            start[i] * end[j]
        } else {
            0.0
        }
    };
    // Only the band can score above zero; rank it, then pad with zero-scored cells in
    // row-major order if top_k asks for more than the band holds.
    let mut band: Vec<Span> = Vec::new();
    for i in 0..tokens {
        for j in i..tokens.min(i + max_answer_len) {
            band.push(Span {
                start: i,
                end: j,
                score: score(i, j),
            });
        }
    }
    // Flat index order breaks ties, as a stable sort of the flattened matrix would.
    band.sort_by(|a, b| {
        b.score
            .partial_cmp(&a.score)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then((a.start, a.end).cmp(&(b.start, b.end)))
    });
    let mut chosen: Vec<Span> = band.into_iter().take(top_k).collect();
    if chosen.len() < top_k {
        let missing = top_k - chosen.len();
        let zeros = (0..tokens)
            .flat_map(|i| (0..tokens).map(move |j| (i, j)))
            .filter(|&(i, j)| !(j >= i && j - i < max_answer_len))
            .take(missing)
            .map(|(i, j)| Span {
                start: i,
                end: j,
                score: 0.0,
            });
        chosen.extend(zeros);
    }
    chosen
        .into_iter()
        .filter(|span| allowed[span.start] && allowed[span.end])
        .collect()
}

/// Adds a span's answer to `answers`, or its score to an answer with the same text (compared
/// case-insensitively), as `postprocess` with `get_answer` does across windows.
pub(crate) fn merge_answer(
    answers: &mut Vec<Answer>,
    score: f32,
    start: usize,
    end: usize,
    text: &str,
) {
    let lowered = text.to_lowercase();
    if let Some(existing) = answers
        .iter_mut()
        .find(|answer| answer.answer.to_lowercase() == lowered)
    {
        existing.score += f64::from(score);
    } else {
        answers.push(Answer {
            score: f64::from(score),
            start,
            end,
            answer: text.to_string(),
        });
    }
}

/// The final ranking: the null answer when asked for, best first (stable), at most `top_k`.
pub(crate) fn finish_answers(
    mut answers: Vec<Answer>,
    top_k: usize,
    handle_impossible_answer: bool,
    min_null_score: f32,
) -> Vec<Answer> {
    if handle_impossible_answer {
        answers.push(Answer {
            score: f64::from(min_null_score),
            start: 0,
            end: 0,
            answer: String::new(),
        });
    }
    answers.sort_by(|a, b| {
        b.score
            .partial_cmp(&a.score)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    answers.truncate(top_k);
    answers
}
