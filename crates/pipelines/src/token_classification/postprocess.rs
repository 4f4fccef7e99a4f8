//! Token classification post-processing as pure functions over scores and token views:
//! `TokenClassificationPipeline.gather_pre_entities`, `aggregate`, `aggregate_words`,
//! `group_entities` and `aggregate_overlapping_entities` of
//! transformers/pipelines/token_classification.py.

use ndarray::ArrayView2;

use super::{AggregationStrategy, Entity, EntityGroup, TokenEntity};
use crate::text::{argmax, python_slice};

/// One token of one window, with what the post-processing reads of it.
#[derive(Debug, Clone)]
pub(crate) struct TokenView<'a> {
    /// Vocabulary id.
    pub id: u32,
    /// The token as the vocabulary spells it (`##y`, `ĠBerlin`, `▁Berlin`).
    pub token: &'a str,
    /// Character offsets (Python `str` indices) into the sentence.
    pub offsets: (usize, usize),
    /// Whether the tokenizer added it (`[CLS]`, `</s>`, padding).
    pub special: bool,
}

/// How the tokenizer tells subwords apart, as `gather_pre_entities` decides it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SubwordRule {
    /// The tokenizer's model has a `continuing_subword_prefix` (WordPiece's `##`): a token is
    /// a subword when its spelling is longer or shorter than the text it covers.
    pub word_aware: bool,
    /// The unknown token's id; an unknown token is never a subword and shows the text it covers.
    pub unk_id: Option<u32>,
}

/// A token before aggregation (`pre_entity` in transformers).
#[derive(Debug, Clone)]
pub(crate) struct PreEntity {
    word: String,
    scores: Vec<f32>,
    start: usize,
    end: usize,
    index: usize,
    is_subword: bool,
}

/// An entity during aggregation: a token or a word, with its label.
#[derive(Debug, Clone)]
struct Labelled {
    entity: String,
    score: f32,
    index: usize,
    word: String,
    start: usize,
    end: usize,
}

/// Row-wise softmax of logits, in f32 as numpy computes it in `postprocess`.
///
/// # Shapes
/// `logits`: (tokens, labels) → (tokens, labels).
pub(crate) fn softmax_scores(logits: ArrayView2<'_, f32>) -> Vec<Vec<f32>> {
    logits
        .rows()
        .into_iter()
        .map(|row| crate::text::softmax(&row.to_vec()))
        .collect()
}

/// `gather_pre_entities`: every non-special token with its scores, offsets and whether it
/// continues the previous word.
pub(crate) fn gather_pre_entities(
    sentence: &str,
    tokens: &[TokenView<'_>],
    scores: &[Vec<f32>],
    rule: SubwordRule,
) -> Vec<PreEntity> {
    let mut pre_entities = Vec::new();
    for (index, (token, token_scores)) in tokens.iter().zip(scores).enumerate() {
        if token.special {
            continue;
        }
        let (start, end) = token.offsets;
        let word_ref = python_slice(sentence, start, end);
        let mut word = token.token.to_string();
        let mut is_subword = if rule.word_aware {
            token.token.chars().count() != word_ref.chars().count()
        } else {
            // transformers' fallback heuristic: no space just before the token.
            start > 0 && !python_slice(sentence, start - 1, start + 1).contains(' ')
        };
        if Some(token.id) == rule.unk_id {
            word = word_ref.to_string();
            is_subword = false;
        }
        pre_entities.push(PreEntity {
            word,
            scores: token_scores.clone(),
            start,
            end,
            index,
            is_subword,
        });
    }
    pre_entities
}

/// `aggregate`: labels each token (or word, for first/average/max) and groups entities unless
/// the strategy is `none`.
///
/// `id2label` gives the label of each score column; `tokens_to_string` is the tokenizer's
/// `convert_tokens_to_string` (its decoder on token spellings).
pub(crate) fn aggregate(
    pre_entities: &[PreEntity],
    strategy: AggregationStrategy,
    id2label: &dyn Fn(usize) -> String,
    tokens_to_string: &dyn Fn(&[&str]) -> String,
) -> Vec<Entity> {
    let entities: Vec<Labelled> = match strategy {
        AggregationStrategy::None | AggregationStrategy::Simple => pre_entities
            .iter()
            .map(|pre| {
                let label = argmax(&pre.scores);
                Labelled {
                    entity: id2label(label),
                    score: pre.scores[label],
                    index: pre.index,
                    word: pre.word.clone(),
                    start: pre.start,
                    end: pre.end,
                }
            })
            .collect(),
        _ => aggregate_words(pre_entities, strategy, id2label, tokens_to_string),
    };
    if strategy == AggregationStrategy::None {
        return entities
            .into_iter()
            .map(|entity| {
                Entity::Token(TokenEntity {
                    entity: entity.entity,
                    score: f64::from(entity.score),
                    index: entity.index,
                    word: entity.word,
                    start: entity.start,
                    end: entity.end,
                })
            })
            .collect();
    }
    group_entities(&entities, tokens_to_string)
        .into_iter()
        .map(Entity::Group)
        .collect()
}

/// `aggregate_words`: fuses each word's tokens into one entity (first / average / max).
fn aggregate_words(
    pre_entities: &[PreEntity],
    strategy: AggregationStrategy,
    id2label: &dyn Fn(usize) -> String,
    tokens_to_string: &dyn Fn(&[&str]) -> String,
) -> Vec<Labelled> {
    let mut words = Vec::new();
    let mut group: Vec<&PreEntity> = Vec::new();
    for pre in pre_entities {
        if !group.is_empty() && !pre.is_subword {
            words.push(aggregate_word(&group, strategy, id2label, tokens_to_string));
            group.clear();
        }
        group.push(pre);
    }
    if !group.is_empty() {
        words.push(aggregate_word(&group, strategy, id2label, tokens_to_string));
    }
    words
}

/// `aggregate_word`: one word from its tokens.
fn aggregate_word(
    group: &[&PreEntity],
    strategy: AggregationStrategy,
    id2label: &dyn Fn(usize) -> String,
    tokens_to_string: &dyn Fn(&[&str]) -> String,
) -> Labelled {
    let spellings: Vec<&str> = group.iter().map(|pre| pre.word.as_str()).collect();
    let word = tokens_to_string(&spellings);
    let (label, score) = match strategy {
        AggregationStrategy::Max => {
            // `max(entities, key=...)` keeps the first of equal maxima.
            let mut best = group[0];
            let mut best_max = best
                .scores
                .iter()
                .copied()
                .fold(f32::NEG_INFINITY, f32::max);
            for pre in &group[1..] {
                let max = pre.scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                if max > best_max {
                    best = pre;
                    best_max = max;
                }
            }
            let label = argmax(&best.scores);
            (label, best.scores[label])
        }
        AggregationStrategy::Average => {
            let num_labels = group[0].scores.len();
            let average: Vec<f32> = (0..num_labels)
                .map(|label| {
                    let values: Vec<f32> = group
                        .iter()
                        .map(|pre| pre.scores[label])
                        .filter(|value| !value.is_nan())
                        .collect();
                    values.iter().sum::<f32>() / values.len() as f32
                })
                .collect();
            let label = argmax(&average);
            (label, average[label])
        }
        // First (None and Simple never reach word aggregation).
        _ => {
            let label = argmax(&group[0].scores);
            (label, group[0].scores[label])
        }
    };
    Labelled {
        entity: id2label(label),
        score,
        index: group[0].index,
        word,
        start: group[0].start,
        end: group[group.len() - 1].end,
    }
}

/// `get_tag`: (`B` or `I`, tag) of a label; labels without a `B-`/`I-` prefix continue.
fn get_tag(label: &str) -> (&str, &str) {
    if let Some(tag) = label.strip_prefix("B-") {
        ("B", tag)
    } else if let Some(tag) = label.strip_prefix("I-") {
        ("I", tag)
    } else {
        ("I", label)
    }
}

/// `group_entities`: adjacent entities with the same tag, unless the next begins with `B-`.
fn group_entities(
    entities: &[Labelled],
    tokens_to_string: &dyn Fn(&[&str]) -> String,
) -> Vec<EntityGroup> {
    let mut groups = Vec::new();
    let mut pending: Vec<&Labelled> = Vec::new();
    for entity in entities {
        if let Some(last) = pending.last() {
            let (bi, tag) = get_tag(&entity.entity);
            let (_, last_tag) = get_tag(&last.entity);
            if !(tag == last_tag && bi != "B") {
                groups.push(group_sub_entities(&pending, tokens_to_string));
                pending.clear();
            }
        }
        pending.push(entity);
    }
    if !pending.is_empty() {
        groups.push(group_sub_entities(&pending, tokens_to_string));
    }
    groups
}

/// `group_sub_entities`: one group, labelled by its first entity's tag, scored by the mean.
fn group_sub_entities(
    entities: &[&Labelled],
    tokens_to_string: &dyn Fn(&[&str]) -> String,
) -> EntityGroup {
    let tag = match entities[0].entity.split_once('-') {
        Some((_, tag)) => tag.to_string(),
        None => entities[0].entity.clone(),
    };
    let scores: Vec<f32> = entities
        .iter()
        .map(|entity| entity.score)
        .filter(|score| !score.is_nan())
        .collect();
    let score = scores.iter().sum::<f32>() / scores.len() as f32;
    let spellings: Vec<&str> = entities.iter().map(|entity| entity.word.as_str()).collect();
    EntityGroup {
        entity_group: tag,
        score: f64::from(score),
        word: tokens_to_string(&spellings),
        start: entities[0].start,
        end: entities[entities.len() - 1].end,
    }
}

/// `aggregate_overlapping_entities`: of entities from overlapping windows that overlap, keeps
/// the longest (then the higher scored).
pub(crate) fn aggregate_overlapping_entities(mut entities: Vec<Entity>) -> Vec<Entity> {
    if entities.is_empty() {
        return entities;
    }
    entities.sort_by_key(Entity::start);
    let mut aggregated = Vec::new();
    let mut previous = entities[0].clone();
    for entity in entities {
        if previous.start() <= entity.start() && entity.start() < previous.end() {
            let current_length = entity.end() - entity.start();
            let previous_length = previous.end() - previous.start();
            if current_length > previous_length
                || (current_length == previous_length && entity.score() > previous.score())
            {
                previous = entity;
            }
        } else {
            aggregated.push(std::mem::replace(&mut previous, entity));
        }
    }
    aggregated.push(previous);
    aggregated
}
