//! Embedding lookup.

use ndarray::{Array2, ArrayView2};

use crate::{Error, Result};

/// Rows `ids` of `table`, in order.
///
/// # Shapes
/// `table`: (rows, dim); result: (ids.len(), dim).
///
/// # Errors
/// [`Error::IndexOutOfRange`] when an id is not below the number of rows.
pub fn gather_rows(table: ArrayView2<'_, f32>, ids: &[u32]) -> Result<Array2<f32>> {
    let (rows, dim) = table.dim();
    let mut out = Array2::<f32>::zeros((ids.len(), dim));
    for (mut row, &id) in out.rows_mut().into_iter().zip(ids) {
        let index = id as usize;
        if index >= rows {
            return Err(Error::IndexOutOfRange { index, rows });
        }
        row.assign(&table.row(index));
    }
    Ok(out)
}
