//! Scaled-dot-product attention, `softmax(scale · Q·Kᵀ + bias + mask)·V`, one task per (batch
//! entry, head), in three parts:
//!
//! - [`reference`](mod@reference): the definition in plain loops, what the tests compare
//!   against and the [`Isa::Scalar`] path;
//! - [`tiled`]: tiled with an online softmax (after FlashAttention), Q·Kᵀ and P·V by the GEMM
//!   microkernel's register tile;
//! - [`decode`]: a few queries (decoding with a KV cache), K and V read in place.
//!
//! This module holds the public entry points, the shape checks and the dispatch between them.

mod decode;
mod reference;
mod tiled;

use std::marker::PhantomData;

use ndarray::{Array2, Array4, ArrayView2, ArrayView3, ArrayView4, ArrayViewMut4};

pub use reference::attention_reference;

use crate::error::{Error, Result};
use crate::isa::{Isa, Token, isa};
use crate::threads::for_each_part;

/// Which keys each query may see: a struct literal, or, for padded batches, from a
/// [`KeyPadding`] made of transformers' `attention_mask` or of each row's length.
#[derive(Clone, Copy, Debug, Default)]
pub struct AttentionMask<'a> {
    /// (batch, keys): 1 where a key is a real token, 0 where it is padding.
    pub key_padding: Option<ArrayView2<'a, f32>>,
    /// Query `i` of `q` queries sees only keys `0 ..= i + (keys − q)` (queries are the last ones,
    /// as when decoding with a KV cache).
    pub causal: bool,
    /// (heads, queries, keys): added to the scaled scores before the softmax, the same for every
    /// batch entry (T5's relative position bias); −∞ hides a key.
    pub bias: Option<ArrayView3<'a, f32>>,
}

/// Which keys of each batch entry are real tokens: the (batch, keys) table of 1s and 0s that
/// [`AttentionMask::key_padding`] borrows, made from transformers' `attention_mask` or from each
/// row's length. A model of one's own keeps one per padded batch and hands its layers
/// [`KeyPadding::mask`] (an encoder's self-attention; a decoder's cross-attention, with the
/// encoder's padding) or [`KeyPadding::causal_mask`] (a decoder's self-attention).
///
/// ```
/// use oxformer_tensor::ndarray::{Array4, array};
/// use oxformer_tensor::{KeyPadding, attention};
///
/// // two inputs of 3 and 2 tokens, right-padded to 3: transformers' `attention_mask`
/// let padding = KeyPadding::from_attention_mask(array![[1, 1, 1], [1, 1, 0]].view())?;
/// assert_eq!(padding, KeyPadding::from_lengths(&[3, 2], 3)?);
///
/// let q = Array4::<f32>::ones((2, 4, 3, 8)); // (batch, heads, tokens, head_dim)
/// let encoded = attention(q.view(), q.view(), q.view(), &padding.mask(), 0.125);
/// let decoded = attention(q.view(), q.view(), q.view(), &padding.causal_mask(), 0.125);
/// assert_eq!(encoded.dim(), decoded.dim());
///
/// assert!(KeyPadding::from_attention_mask(array![[1, 2]].view()).is_err());
/// assert!(KeyPadding::from_lengths(&[4], 3).is_err());
/// # Ok::<(), oxformer_tensor::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct KeyPadding {
    /// (batch, keys): 1.0 for a real token, 0.0 for padding.
    table: Array2<f32>,
}

impl KeyPadding {
    /// From transformers' `attention_mask`: 1 where a key is a real token, 0 where it is padding
    /// (on either side).
    ///
    /// # Shapes
    /// `attention_mask`: (batch, keys).
    ///
    /// # Errors
    /// A value other than 0 or 1 (named with its row and column).
    pub fn from_attention_mask(attention_mask: ArrayView2<'_, u32>) -> Result<Self> {
        if let Some(((row, column), value)) =
            attention_mask.indexed_iter().find(|(_, value)| **value > 1)
        {
            return Err(Error::AttentionMask {
                reason: format!(
                    "attention_mask[{row}][{column}] is {value}; it takes 1 (a token) or 0 (padding)"
                ),
            });
        }
        Ok(Self {
            table: attention_mask.mapv(|value| value as f32),
        })
    }

    /// Rows of `lengths[b]` real tokens followed by padding up to `keys` (right padding, as
    /// the tokenizers pad by default).
    ///
    /// # Shapes
    /// The table: (`lengths.len()`, `keys`).
    ///
    /// # Errors
    /// A length over `keys`.
    pub fn from_lengths(lengths: &[usize], keys: usize) -> Result<Self> {
        if let Some((row, length)) = lengths.iter().enumerate().find(|&(_, &len)| len > keys) {
            return Err(Error::AttentionMask {
                reason: format!("row {row} has {length} tokens, more than the {keys} keys"),
            });
        }
        Ok(Self {
            table: Array2::from_shape_fn((lengths.len(), keys), |(row, key)| {
                if key < lengths[row] { 1.0 } else { 0.0 }
            }),
        })
    }

    /// The table, (batch, keys): 1.0 for a real token, 0.0 for padding.
    pub fn view(&self) -> ArrayView2<'_, f32> {
        self.table.view()
    }

    /// Every query sees every real key of its batch entry.
    pub fn mask(&self) -> AttentionMask<'_> {
        AttentionMask {
            key_padding: Some(self.table.view()),
            causal: false,
            bias: None,
        }
    }

    /// Query `i` of `q` sees the real keys among `0 ..= i + (keys − q)` ([`AttentionMask::causal`]).
    pub fn causal_mask(&self) -> AttentionMask<'_> {
        AttentionMask {
            causal: true,
            ..self.mask()
        }
    }
}

/// `softmax(scale · Q·Kᵀ + bias + mask)·V` for every batch entry and head.
///
/// A query that may see no key at all (every key masked) gets zeros.
///
/// # Shapes
/// `q`: (batch, heads, queries, head_dim); `k`, `v`: (batch, heads, keys, head_dim), any strides
/// (so permuted views of a (batch, seq, heads, head_dim) buffer need no copy);
/// result: (batch, heads, queries, head_dim).
///
/// # Panics
/// If the shapes disagree.
pub fn attention(
    q: ArrayView4<'_, f32>,
    k: ArrayView4<'_, f32>,
    v: ArrayView4<'_, f32>,
    mask: &AttentionMask<'_>,
    scale: f32,
) -> Array4<f32> {
    let mut out = Array4::<f32>::zeros(q.dim());
    attention_into(q, k, v, mask, scale, out.view_mut());
    out
}

/// [`attention`] writing into `out` (batch, heads, queries, head_dim), any strides.
///
/// # Panics
/// If the shapes disagree.
pub fn attention_into(
    q: ArrayView4<'_, f32>,
    k: ArrayView4<'_, f32>,
    v: ArrayView4<'_, f32>,
    mask: &AttentionMask<'_>,
    scale: f32,
    out: ArrayViewMut4<'_, f32>,
) {
    attention_into_on(isa(), q, k, v, mask, scale, out);
}

/// [`attention_into`] with the instruction set `isa` rather than [`isa()`]; [`Isa::Scalar`] runs
/// [`attention_reference`]'s loops.
///
/// # Panics
/// If the shapes disagree, or this CPU cannot run `isa`.
pub fn attention_into_on(
    isa: Isa,
    q: ArrayView4<'_, f32>,
    k: ArrayView4<'_, f32>,
    v: ArrayView4<'_, f32>,
    mask: &AttentionMask<'_>,
    scale: f32,
    mut out: ArrayViewMut4<'_, f32>,
) {
    check_shapes(&q, &k, &v, mask, &out);
    let token = isa.token();
    if isa == Isa::Scalar {
        reference::attention_reference_into(q, k, v, mask, scale, out);
        return;
    }
    let (batch, heads, queries, head_dim) = q.dim();
    let keys = k.dim().2;
    if batch == 0 || heads == 0 || queries == 0 || head_dim == 0 {
        out.fill(0.0);
        return;
    }
    // the bias is read a vector of keys at a time
    let bias = mask.bias.as_ref().map(|bias| bias.as_standard_layout());
    let job = Job {
        q: Strided::of(&q),
        k: Strided::of(&k),
        v: Strided::of(&v),
        out: out.as_mut_ptr(),
        out_strides: strides4(out.strides()),
        padding: mask.key_padding.as_ref().map(|padding| {
            (
                padding.as_ptr(),
                [padding.strides()[0], padding.strides()[1]],
            )
        }),
        causal: mask.causal,
        bias: bias
            .as_ref()
            .map(|bias| (bias.as_ptr(), [bias.strides()[0], bias.strides()[1]])),
        scale,
        queries,
        keys,
        head_dim,
        borrows: PhantomData,
    };
    // a few queries (decoding with a KV cache): read K and V rows where they are, no copies
    let direct = queries <= decode::DIRECT_QUERIES
        && head_dim <= 1024
        && job.k.strides[3] == 1
        && job.v.strides[3] == 1;
    for_each_part(batch * heads, |index| {
        let (entry, head) = (index / heads, index % heads);
        // SAFETY: the token proves the CPU has the instruction set; the job describes the
        // checked views; each task writes its own (entry, head).
        unsafe {
            match (token, direct) {
                #[cfg(target_arch = "x86_64")]
                (Token::Avx512(_), false) => tiled::head_avx512(&job, entry, head),
                #[cfg(target_arch = "x86_64")]
                (Token::Avx2(_), false) => tiled::head_avx2(&job, entry, head),
                #[cfg(target_arch = "x86_64")]
                (Token::Avx512(_), true) => decode::head_direct_avx512(&job, entry, head),
                #[cfg(target_arch = "x86_64")]
                (Token::Avx2(_), true) => decode::head_direct_avx2(&job, entry, head),
                _ => unreachable!("scalar attention is handled above"),
            }
        }
    });
}

fn check_shapes(
    q: &ArrayView4<'_, f32>,
    k: &ArrayView4<'_, f32>,
    v: &ArrayView4<'_, f32>,
    mask: &AttentionMask<'_>,
    out: &ArrayViewMut4<'_, f32>,
) {
    let (batch, heads, _, head_dim) = q.dim();
    let keys = k.dim().2;
    assert_eq!(
        k.dim(),
        (batch, heads, keys, head_dim),
        "attention: key shape"
    );
    assert_eq!(
        v.dim(),
        (batch, heads, keys, head_dim),
        "attention: value shape"
    );
    assert_eq!(out.dim(), q.dim(), "attention: output shape");
    if let Some(padding) = &mask.key_padding {
        assert_eq!(padding.dim(), (batch, keys), "attention: key padding shape");
    }
    if let Some(bias) = &mask.bias {
        assert_eq!(
            bias.dim(),
            (heads, q.dim().2, keys),
            "attention: bias shape"
        );
    }
}

/// A 4-d operand as a pointer and element strides.
#[derive(Clone, Copy)]
struct Strided {
    ptr: *const f32,
    strides: [isize; 4],
}

impl Strided {
    fn of(view: &ArrayView4<'_, f32>) -> Self {
        Self {
            ptr: view.as_ptr(),
            strides: strides4(view.strides()),
        }
    }
}

fn strides4(strides: &[isize]) -> [isize; 4] {
    [strides[0], strides[1], strides[2], strides[3]]
}

/// One attention call as raw parts shared by the tasks; `'a` ties them to the views they came
/// from (borrowed for the call: the inputs shared, the output exclusive).
struct Job<'a> {
    q: Strided,
    k: Strided,
    v: Strided,
    out: *mut f32,
    out_strides: [isize; 4],
    padding: Option<(*const f32, [isize; 2])>,
    causal: bool,
    /// The additive bias, keys contiguous, and its head and query strides.
    bias: Option<(*const f32, [isize; 2])>,
    scale: f32,
    queries: usize,
    keys: usize,
    head_dim: usize,
    borrows: PhantomData<(&'a f32, &'a mut f32)>,
}

// SAFETY: the inputs are only read, for at most `'a`; each task writes its own rows of `out`,
// borrowed exclusively for `'a`.
unsafe impl Send for Job<'_> {}
// SAFETY: as above: shared between the tasks, the job is only read.
unsafe impl Sync for Job<'_> {}
