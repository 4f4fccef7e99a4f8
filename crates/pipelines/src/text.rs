//! Small helpers shared by the pipelines: Python-style string slicing and numpy-style
//! reductions.

/// `text[start:end]` with Python's semantics: indices count characters (code points) and are
/// clamped to the text, an empty slice when `start >= end`.
pub(crate) fn python_slice(text: &str, start: usize, end: usize) -> &str {
    if start >= end {
        return "";
    }
    let byte_at = |char_index: usize| {
        text.char_indices()
            .nth(char_index)
            .map_or(text.len(), |(byte, _)| byte)
    };
    let start_byte = byte_at(start);
    let end_byte = byte_at(end);
    &text[start_byte..end_byte.max(start_byte)]
}

/// Index of the first maximum, as `numpy.argmax` (0 for an empty slice).
pub(crate) fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (index, &value) in values.iter().enumerate() {
        if value > values[best] {
            best = index;
        }
    }
    best
}

/// Softmax of one row in f32, shifted by its maximum.
pub(crate) fn softmax(values: &[f32]) -> Vec<f32> {
    let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = values.iter().map(|&x| (x - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|x| x / sum).collect()
}

/// Logistic sigmoid in f32, `1 / (1 + e^-x)` as transformers' `sigmoid` writes it.
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}
