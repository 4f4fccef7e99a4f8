//! [`Embedding`]: a table of vectors looked up by id (torch.nn.Embedding).

use ndarray::{Array2, ArrayView2};

use crate::error::{Error, Result};
use crate::tensor::Tensor;
use crate::weights::Weights;

/// A lookup table `[num_embeddings, dim]`, read in place from the checkpoint when it is f32.
#[derive(Debug, Clone)]
pub struct Embedding {
    table: Tensor,
}

impl Embedding {
    /// Loads `weight` `[num_embeddings, dim]` under `weights`' prefix.
    ///
    /// # Errors
    /// [`Error::TensorNotFound`] / [`Error::ShapeMismatch`] naming the full dotted path.
    pub fn load(weights: &Weights, num_embeddings: usize, dim: usize) -> Result<Self> {
        let table = weights.get("weight", &[num_embeddings, dim])?;
        Ok(Self { table })
    }

    /// A table from values in hand, `[num_embeddings, dim]` (copied); `name` names it in
    /// errors.
    pub fn from_table(name: &str, table: ArrayView2<'_, f32>) -> Self {
        let shape = vec![table.nrows(), table.ncols()];
        let values: Vec<f32> = table.iter().copied().collect();
        let table = Tensor::from_vec(name, shape, values).expect("the values fill the shape");
        Self { table }
    }

    /// Number of rows (ids `0..num_embeddings`).
    pub fn num_embeddings(&self) -> usize {
        self.table.shape()[0]
    }

    /// Size of each vector.
    pub fn dim(&self) -> usize {
        self.table.shape()[1]
    }

    /// The whole table, `[num_embeddings, dim]` (the decoder of tied language-model heads).
    pub fn table(&self) -> ArrayView2<'_, f32> {
        self.table
            .view2()
            .expect("an Embedding table has two dimensions")
    }

    /// One row per id, in order.
    ///
    /// # Shapes
    /// `ids`: n; result: (n, dim).
    ///
    /// # Errors
    /// [`Error::Layer`] naming the table and the id when an id is not below `num_embeddings`.
    pub fn forward(&self, ids: &[u32]) -> Result<Array2<f32>> {
        let mut out = Array2::<f32>::zeros((ids.len(), self.dim()));
        for (row, &id) in ids.iter().enumerate() {
            self.add_row_to(id, out.row_mut(row).as_slice_mut().expect("fresh row"))?;
        }
        Ok(out)
    }

    /// Row `id`.
    ///
    /// # Errors
    /// [`Error::Layer`] naming the table and the id when `id` is not below `num_embeddings`.
    pub fn row(&self, id: u32) -> Result<&[f32]> {
        let (rows, dim) = (self.num_embeddings(), self.dim());
        if id as usize >= rows {
            return Err(Error::Layer {
                layer: format!("Embedding `{}`", self.table.name()),
                reason: format!("id {id} is out of range for a table of {rows} rows"),
            });
        }
        let start = id as usize * dim;
        Ok(&self.table.as_slice()[start..start + dim])
    }

    /// Adds row `id` to `target` (summing embeddings without a temporary).
    ///
    /// # Errors
    /// [`Error::Layer`] when `id` is out of range or `target` is not `dim` long.
    pub fn add_row_to(&self, id: u32, target: &mut [f32]) -> Result<()> {
        let dim = self.dim();
        let row = self.row(id)?;
        if target.len() != dim {
            return Err(Error::Layer {
                layer: format!("Embedding `{}`", self.table.name()),
                reason: format!("target has {} values, rows have {dim}", target.len()),
            });
        }
        for (value, &add) in target.iter_mut().zip(row) {
            *value += add;
        }
        Ok(())
    }
}
