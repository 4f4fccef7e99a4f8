//! [`Workspace`]: the buffers an encoder layer or a GPT-2 block writes its intermediate results
//! into, kept by the model and reused from layer to layer and from call to call, so that a forward
//! pass after the first allocates (and the kernel zeroes) no new pages for them.

use std::sync::{Mutex, TryLockError};

use ndarray::{Array1, Array2, ArrayViewMut2, s};
use oxformer_tensor::{line_aligned, team};

/// One layer's intermediate results. Each buffer only grows (to the largest batch seen;
/// about 28 KB per token for BERT-base); its values are always overwritten before they are read.
#[derive(Default)]
pub(crate) struct Workspace {
    /// The fused query/key/value product, (rows, 3 · hidden).
    pub(crate) qkv: Vec<f32>,
    /// Attention's output before its dense layer, (rows, hidden).
    pub(crate) context: Vec<f32>,
    /// The attention block's output, (rows, hidden).
    pub(crate) attention_output: Vec<f32>,
    /// The feed-forward block's inner activations, (rows, intermediate).
    pub(crate) intermediate: Vec<f32>,
    /// A pre-LayerNorm block's normalised input (GPT-2, T5), (rows, hidden).
    pub(crate) normed: Vec<f32>,
    /// A decoder layer's cross-attention queries (encoder-decoder models), (rows, hidden).
    pub(crate) query: Vec<f32>,
    /// A gated feed-forward block's activated half times its linear half (T5 v1.1),
    /// (rows, intermediate).
    pub(crate) gated: Vec<f32>,
    /// T5's relative position bias with the causal mask, (heads, queries, keys).
    pub(crate) position_bias: Vec<f32>,
}

impl std::fmt::Debug for Workspace {
    /// The sizes, not the values.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workspace")
            .field("qkv", &self.qkv.len())
            .field("context", &self.context.len())
            .field("attention_output", &self.attention_output.len())
            .field("intermediate", &self.intermediate.len())
            .field("normed", &self.normed.len())
            .field("query", &self.query.len())
            .field("gated", &self.gated.len())
            .field("position_bias", &self.position_bias.len())
            .finish()
    }
}

/// `buffer` as a (rows, columns) matrix starting on a cache line (a vector load or store of a
/// row then touches one line fewer), grown if it is too small. Its values are left as they were:
/// the caller overwrites them.
pub(crate) fn matrix(buffer: &mut Vec<f32>, rows: usize, columns: usize) -> ArrayViewMut2<'_, f32> {
    ArrayViewMut2::from_shape((rows, columns), line_aligned(buffer, rows * columns))
        .expect("the buffer holds rows × columns values")
}

/// The (rows, columns) matrix of a [`line_padded`](oxformer_tensor::line_padded) buffer once its rows × columns values are
/// pushed: it starts on a cache line.
pub(crate) fn line_matrix(values: Vec<f32>, rows: usize, columns: usize) -> Array2<f32> {
    let start = values.len() - rows * columns;
    Array1::from_vec(values)
        .slice_move(s![start..])
        .into_shape_with_order((rows, columns))
        .expect("rows × columns values after the padding")
}

/// A model's [`Workspace`], shared by its forward passes: a pass that finds it in use by
/// another thread works in a fresh one of its own instead of waiting.
#[derive(Debug, Default)]
pub(crate) struct SharedWorkspace(Mutex<Workspace>);

impl SharedWorkspace {
    /// Runs `work` with the model's workspace, or a fresh one while another pass holds it, on a
    /// [`team`]: the pool's other threads stay awake from one kernel of the pass to the next,
    /// as ONNX Runtime's and PyTorch's spinning threads do, instead of sleeping after each kernel
    /// and being woken for the next (a wake-up costs most on a shared or virtual machine).
    pub(crate) fn with<R>(&self, work: impl FnOnce(&mut Workspace) -> R) -> R {
        team(|| match self.0.try_lock() {
            Ok(mut workspace) => work(&mut workspace),
            // The buffers hold no invariant a panic elsewhere could break.
            Err(TryLockError::Poisoned(poisoned)) => work(&mut poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => work(&mut Workspace::default()),
        })
    }
}

impl Clone for SharedWorkspace {
    /// A clone of a model starts with an empty workspace of its own.
    fn clone(&self) -> Self {
        Self::default()
    }
}

/// Runs one block (`work` on the rows of a padded batch, in place) on a (batch, seq, hidden)
/// array with its key-padding mask, in a workspace of its own: what a block's public
/// `forward` does around the in-place kernel the model runs.
///
/// # Errors
/// [`crate::Error::Input`] naming `block` when the mask is not (batch, seq); `work`'s errors.
pub(crate) fn run_block(
    block: &str,
    hidden: ndarray::ArrayView3<'_, f32>,
    key_padding: Option<ndarray::ArrayView2<'_, f32>>,
    work: impl FnOnce(
        ArrayViewMut2<'_, f32>,
        &crate::input::TokenLayout,
        &oxformer_tensor::AttentionMask<'_>,
        &mut Workspace,
    ) -> crate::Result<()>,
) -> crate::Result<ndarray::Array3<f32>> {
    let (batch, seq, width) = hidden.dim();
    if let Some(padding) = key_padding
        && padding.dim() != (batch, seq)
    {
        return Err(crate::Error::Input {
            model: block.to_string(),
            reason: format!(
                "key_padding has shape {:?} for hidden states of (batch, seq) = ({batch}, {seq})",
                padding.dim()
            ),
        });
    }
    let mut rows = hidden
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order((batch * seq, width))
        .expect("a standard-layout array reshapes");
    let layout = crate::input::TokenLayout::Padded { batch, seq };
    let mask = oxformer_tensor::AttentionMask {
        key_padding,
        causal: false,
        bias: None,
    };
    work(rows.view_mut(), &layout, &mask, &mut Workspace::default())?;
    Ok(rows
        .into_shape_with_order((batch, seq, width))
        .expect("(batch · seq, hidden) reshapes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxformer_tensor::line_padded;

    /// Floats per cache line: `line_aligned` keeps room for up to a line's padding.
    const LINE: usize = 16;

    #[test]
    fn matrix_grows_keeps_capacity_and_starts_on_a_line() {
        let mut buffer = Vec::new();
        let on_a_line = |view: &ArrayViewMut2<'_, f32>| (view.as_ptr() as usize).is_multiple_of(64);
        let view = matrix(&mut buffer, 3, 4);
        assert_eq!(view.dim(), (3, 4));
        assert!(on_a_line(&view));
        assert_eq!(buffer.len(), 12 + LINE - 1);
        let view = matrix(&mut buffer, 2, 5);
        assert_eq!(view.dim(), (2, 5));
        assert!(on_a_line(&view));
        assert_eq!(
            buffer.len(),
            12 + LINE - 1,
            "a smaller matrix reuses the buffer"
        );
        let view = matrix(&mut buffer, 40, 4);
        assert_eq!(view.dim(), (40, 4));
        assert!(on_a_line(&view));
        assert_eq!(buffer.len(), 160 + LINE - 1);
    }

    #[test]
    fn line_buffers_become_matrices_starting_on_a_line() {
        for (rows, columns) in [(0, 4), (1, 1), (3, 5), (64, 768)] {
            let mut values = line_padded(rows * columns);
            values.extend((0..rows * columns).map(|v| v as f32));
            let matrix = line_matrix(values, rows, columns);
            assert_eq!(matrix.dim(), (rows, columns));
            if !matrix.is_empty() {
                assert_eq!(matrix.as_ptr() as usize % 64, 0, "{rows} × {columns}");
            }
            for ((r, c), &value) in matrix.indexed_iter() {
                assert_eq!(value, (r * columns + c) as f32);
            }
        }
    }

    #[test]
    fn busy_workspace_lends_a_fresh_one() {
        let shared = SharedWorkspace::default();
        shared.with(|outer| {
            outer.qkv.resize(8, 1.0);
            shared.with(|inner| assert!(inner.qkv.is_empty(), "a second pass gets its own"));
        });
        shared.with(|again| assert_eq!(again.qkv.len(), 8, "the model's buffers are kept"));
    }
}
