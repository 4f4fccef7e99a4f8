//! [`FeedForward`]: the position-wise feed-forward block, `fc2(activation(fc1(x)))`, as
//! transformers' BART/Marian layers name it.

use ndarray::Array2;
use ndarray::ArrayView2;
use oxformer_tensor::Activation;

use crate::error::{Error, Result};
use crate::layers::Linear;
use crate::weights::Weights;

/// `fc2(activation(fc1(x)))`, the activation fused into `fc1`'s product.
#[derive(Debug)]
pub struct FeedForward {
    up: Linear,
    down: Linear,
    activation: Activation,
}

impl FeedForward {
    /// Loads `fc1` (`[inner, hidden]`) and `fc2` (`[hidden, inner]`), with biases, under
    /// `weights`' prefix.
    ///
    /// # Errors
    /// Missing or mis-shaped tensors, named by their full dotted path.
    pub fn load(
        weights: &Weights,
        hidden: usize,
        inner: usize,
        activation: Activation,
    ) -> Result<Self> {
        let up = Linear::load(&weights.sub("fc1"), hidden, inner)?;
        let down = Linear::load(&weights.sub("fc2"), inner, hidden)?;
        Self::from_parts(up, down, activation)
    }

    /// The block from its two layers.
    ///
    /// # Errors
    /// [`Error::Layer`] when `down` does not take `up`'s output or give back its input width.
    pub fn from_parts(up: Linear, down: Linear, activation: Activation) -> Result<Self> {
        if down.in_features() != up.out_features() || down.out_features() != up.in_features() {
            return Err(Error::Layer {
                layer: format!("{} / {}", up.name(), down.name()),
                reason: format!(
                    "{} → {} then {} → {} do not make a feed-forward block",
                    up.in_features(),
                    up.out_features(),
                    down.in_features(),
                    down.out_features()
                ),
            });
        }
        Ok(Self {
            up,
            down,
            activation,
        })
    }

    /// `fc2(activation(fc1(x)))`.
    ///
    /// # Shapes
    /// `x`: (rows, hidden); result: (rows, hidden).
    ///
    /// # Errors
    /// [`Error::Layer`] when `x` is not `hidden` wide.
    pub fn forward(&self, x: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        let inner = self.up.forward_with(x, self.activation, None)?;
        self.down.forward(inner.view())
    }
}
