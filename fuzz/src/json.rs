//! Arbitrary JSON values, biased towards what parsers trip on: zero, negative and huge numbers,
//! wrong types, long and odd strings, deep nesting.

use arbitrary::{Result, Unstructured};
use serde_json::{Map, Number, Value};

/// Numbers a config or an option field should refuse or survive.
const NUMBERS: &[f64] = &[
    0.0,
    1.0,
    -1.0,
    2.0,
    0.5,
    -0.0,
    1e-300,
    1e300,
    f64::MAX,
    4294967295.0,
    4294967296.0,
    9007199254740993.0,
    1e19,
];

/// Integers near the edges of usize / u32 / i64 arithmetic.
const INTEGERS: &[i64] = &[
    0,
    1,
    2,
    3,
    7,
    8,
    64,
    -1,
    -2,
    i64::MIN,
    i64::MAX,
    u32::MAX as i64,
    1 << 32,
    1 << 40,
    1 << 60,
];

/// Strings that mean something to some parser.
const STRINGS: &[&str] = &[
    "",
    " ",
    "gelu",
    "relu",
    "tanh",
    "none",
    "left",
    "right",
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "<s>",
    "</s>",
    "<pad>",
    "<|endoftext|>",
    "LABEL_0",
    "0",
    "-1",
    "NaN",
    "\u{0}",
    "é",
    "日本語",
    "🙂",
    "a\u{301}",
    "\u{202e}",
    "../../etc/passwd",
    "model.safetensors",
];

/// A number: an integer, a float, or one of the edge values.
pub fn number(u: &mut Unstructured<'_>) -> Result<Value> {
    Ok(match u.int_in_range(0..=3)? {
        0 => Value::from(*u.choose(INTEGERS)?),
        1 => Number::from_f64(*u.choose(NUMBERS)?).map_or(Value::Null, Value::Number),
        2 => Value::from(u.int_in_range(0u64..=600)?),
        _ => Value::from(u.arbitrary::<i64>()?),
    })
}

/// A string: a meaningful one, arbitrary UTF-8, or a long repetition.
pub fn string(u: &mut Unstructured<'_>) -> Result<String> {
    Ok(match u.int_in_range(0..=4)? {
        0 | 1 => u.choose(STRINGS)?.to_string(),
        2 => u.arbitrary::<String>()?,
        3 => {
            let piece = u.choose(STRINGS)?;
            piece.repeat(u.int_in_range(1..=300)?)
        }
        _ => words(u)?,
    })
}

/// A few words of text, for inputs that should get through a tokenizer.
pub fn words(u: &mut Unstructured<'_>) -> Result<String> {
    const WORDS: &[&str] = &[
        "the", "cat", "sat", "on", "mat", "hello", "world", "Paris", "is", "[MASK]", "<mask>", ",",
        ".", "?", "don't", "über", "naïve", "東京", "🙂", "  ", "\t", "\n", "a",
    ];
    let count = u.int_in_range(0..=40)?;
    let mut text = String::new();
    for _ in 0..count {
        if !text.is_empty() && u.ratio(3, 4)? {
            text.push(' ');
        }
        text.push_str(u.choose(WORDS)?);
    }
    Ok(text)
}

/// Any JSON value, nested at most `depth` deep.
pub fn value(u: &mut Unstructured<'_>, depth: u32) -> Result<Value> {
    let kinds = if depth == 0 { 4 } else { 6 };
    Ok(match u.int_in_range(0..=kinds)? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => number(u)?,
        3 | 4 => Value::String(string(u)?),
        5 => {
            let count = u.int_in_range(0..=4)?;
            let mut items = Vec::with_capacity(count);
            for _ in 0..count {
                items.push(value(u, depth - 1)?);
            }
            Value::Array(items)
        }
        _ => {
            let count = u.int_in_range(0..=4)?;
            let mut map = Map::new();
            for _ in 0..count {
                map.insert(string(u)?, value(u, depth - 1)?);
            }
            Value::Object(map)
        }
    })
}

/// An object with some of `keys` (and maybe a stranger) set to arbitrary values.
pub fn object_with(u: &mut Unstructured<'_>, keys: &[&str]) -> Result<Map<String, Value>> {
    let mut map = Map::new();
    let count = u.int_in_range(0..=keys.len().min(12))?;
    for _ in 0..count {
        let key = if u.ratio(1, 10)? {
            string(u)?
        } else {
            u.choose(keys)?.to_string()
        };
        map.insert(key, value(u, 2)?);
    }
    Ok(map)
}

/// `value` with a few of its leaves or members replaced, removed or added: near-valid documents
/// that get past the first checks.
pub fn mutate(u: &mut Unstructured<'_>, value: &mut Value) -> Result<()> {
    let rounds = u.int_in_range(1..=4)?;
    for _ in 0..rounds {
        mutate_once(u, value)?;
    }
    Ok(())
}

fn mutate_once(u: &mut Unstructured<'_>, target: &mut Value) -> Result<()> {
    match target {
        Value::Object(map) if !map.is_empty() && u.ratio(4, 5)? => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let key = u.choose(&keys)?.clone();
            match u.int_in_range(0..=5)? {
                0 => {
                    map.remove(&key);
                }
                1 => {
                    map.insert(key, value(u, 2)?);
                }
                _ => {
                    if let Some(inner) = map.get_mut(&key) {
                        mutate_once(u, inner)?;
                    }
                }
            }
        }
        Value::Array(items) if !items.is_empty() && u.ratio(4, 5)? => {
            let index = u.choose_index(items.len())?;
            match u.int_in_range(0..=4)? {
                0 => {
                    items.remove(index);
                }
                1 => {
                    let copy = items[index].clone();
                    items.insert(index, copy);
                }
                _ => mutate_once(u, &mut items[index])?,
            }
        }
        _ => *target = value(u, 2)?,
    }
    Ok(())
}
