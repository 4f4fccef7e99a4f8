//! The matrix product `C = A·B` with a fused epilogue.
//!
//! A is activations, row-major (M × K, any M including 1); B is weights, packed once into a
//! [`PackedMatrix`] from HF's Linear layout `[out, in]` or from `[in, out]` (GPT-2's Conv1D).

use ndarray::{Array2, Array3, ArrayView2, ArrayView3, ArrayViewMut2, Axis, s};

use crate::Activation;

/// What is applied to each output element as it is written: `activation(a·b + bias) + residual`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Epilogue<'a> {
    /// Added per output column (length N).
    pub bias: Option<&'a [f32]>,
    /// Applied after the bias.
    pub activation: Activation,
    /// Added last, element-wise (M × N).
    pub residual: Option<ArrayView2<'a, f32>>,
}

impl<'a> Epilogue<'a> {
    /// Nothing: `C = A·B`.
    pub fn none() -> Self {
        Self::default()
    }

    /// Adds `bias`.
    pub fn bias(bias: &'a [f32]) -> Self {
        Self {
            bias: Some(bias),
            ..Self::default()
        }
    }
}

/// A weight matrix B (K × N) laid out once for the product.
#[derive(Clone, Debug)]
pub struct PackedMatrix {
    k: usize,
    n: usize,
    /// Row-major K × N.
    data: Vec<f32>,
}

impl PackedMatrix {
    /// From HF's Linear layout `[out, in]` = (N, K): the product is `x · Wᵀ`.
    pub fn from_linear_weight(weight: ArrayView2<'_, f32>) -> Self {
        Self::from_in_out(weight.t())
    }

    /// From the `[in, out]` = (K, N) layout (GPT-2's Conv1D): the product is `x · W`.
    pub fn from_in_out(weight: ArrayView2<'_, f32>) -> Self {
        let (k, n) = weight.dim();
        let data = weight.as_standard_layout().iter().copied().collect();
        Self { k, n, data }
    }

    /// K, the inner dimension.
    pub fn k(&self) -> usize {
        self.k
    }

    /// N, the number of output columns.
    pub fn n(&self) -> usize {
        self.n
    }

    /// B as a (K, N) view.
    pub fn view(&self) -> ArrayView2<'_, f32> {
        ArrayView2::from_shape((self.k, self.n), &self.data).expect("packed shape matches its data")
    }
}

/// `epilogue(A·B)`.
///
/// # Shapes
/// `a`: (M, K); `b`: (K, N); bias: N; residual: (M, N); result: (M, N).
///
/// # Panics
/// If the shapes disagree.
pub fn matmul_packed(
    a: ArrayView2<'_, f32>,
    b: &PackedMatrix,
    epilogue: &Epilogue<'_>,
) -> Array2<f32> {
    let mut out = Array2::<f32>::zeros((a.nrows(), b.n()));
    matmul_packed_into(a, b, epilogue, out.view_mut());
    out
}

/// [`matmul_packed`] writing into `out` (M, N), which is overwritten.
///
/// # Panics
/// If the shapes disagree.
pub fn matmul_packed_into(
    a: ArrayView2<'_, f32>,
    b: &PackedMatrix,
    epilogue: &Epilogue<'_>,
    mut out: ArrayViewMut2<'_, f32>,
) {
    assert_eq!(
        a.ncols(),
        b.k(),
        "matmul_packed: A has {} columns, B has {} rows",
        a.ncols(),
        b.k()
    );
    assert_eq!(out.dim(), (a.nrows(), b.n()), "matmul_packed: output shape");
    ndarray::linalg::general_mat_mul(1.0, &a, &b.view(), 0.0, &mut out);
    apply_epilogue(out, epilogue);
}

/// `A·B` for plain arrays.
///
/// # Shapes
/// `a`: (M, K); `b`: (K, N); result: (M, N).
///
/// # Panics
/// If the inner dimensions differ.
pub fn matmul(a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>) -> Array2<f32> {
    assert_eq!(a.ncols(), b.nrows(), "matmul: inner dimensions differ");
    a.dot(&b)
}

/// Whether an operand of [`batched_matmul`] is used transposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transpose {
    /// As stored.
    No,
    /// Transposed (the last two axes swapped).
    Yes,
}

/// One product per batch entry: `op(A[i])·op(B[i])`.
///
/// # Shapes
/// `a`: (batch, M, K) or (batch, K, M) transposed; `b`: (batch, K, N) or (batch, N, K) transposed;
/// result: (batch, M, N).
///
/// # Panics
/// If the shapes disagree.
pub fn batched_matmul(
    a: ArrayView3<'_, f32>,
    transpose_a: Transpose,
    b: ArrayView3<'_, f32>,
    transpose_b: Transpose,
) -> Array3<f32> {
    assert_eq!(
        a.len_of(Axis(0)),
        b.len_of(Axis(0)),
        "batched_matmul: batch sizes differ"
    );
    let a = if transpose_a == Transpose::Yes {
        a.permuted_axes([0, 2, 1])
    } else {
        a
    };
    let b = if transpose_b == Transpose::Yes {
        b.permuted_axes([0, 2, 1])
    } else {
        b
    };
    let (batch, m, k) = a.dim();
    let (_, k_b, n) = b.dim();
    assert_eq!(k, k_b, "batched_matmul: inner dimensions differ");
    let mut out = Array3::<f32>::zeros((batch, m, n));
    for index in 0..batch {
        let mut target = out.slice_mut(s![index, .., ..]);
        ndarray::linalg::general_mat_mul(
            1.0,
            &a.slice(s![index, .., ..]),
            &b.slice(s![index, .., ..]),
            0.0,
            &mut target,
        );
    }
    out
}

/// The definition: `epilogue(A·B)` by three plain loops, accumulating in f32 in order of K.
///
/// # Shapes
/// As [`matmul_packed`], with `b` as a (K, N) view.
pub fn gemm_reference(
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    epilogue: &Epilogue<'_>,
) -> Array2<f32> {
    let (m, k) = a.dim();
    let n = b.ncols();
    assert_eq!(k, b.nrows(), "gemm_reference: inner dimensions differ");
    let mut out = Array2::<f32>::zeros((m, n));
    for i in 0..m {
        for j in 0..n {
            let mut sum = 0.0f32;
            for p in 0..k {
                sum += a[[i, p]] * b[[p, j]];
            }
            out[[i, j]] = sum;
        }
    }
    apply_epilogue(out.view_mut(), epilogue);
    out
}

fn apply_epilogue(mut out: ArrayViewMut2<'_, f32>, epilogue: &Epilogue<'_>) {
    if let Some(bias) = epilogue.bias {
        assert_eq!(bias.len(), out.ncols(), "epilogue: bias length");
    }
    if let Some(residual) = &epilogue.residual {
        assert_eq!(residual.dim(), out.dim(), "epilogue: residual shape");
    }
    for (i, mut row) in out.rows_mut().into_iter().enumerate() {
        for (j, value) in row.iter_mut().enumerate() {
            let mut x = *value;
            if let Some(bias) = epilogue.bias {
                x += bias[j];
            }
            x = epilogue.activation.apply(x);
            if let Some(residual) = &epilogue.residual {
                x += residual[[i, j]];
            }
            *value = x;
        }
    }
}

/// An implementation of the matrix product, chosen once at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmPath {
    /// Our AVX-512F microkernel.
    Avx512,
    /// Our AVX2 + FMA microkernel.
    Avx2,
    /// `matrixmultiply`, the portable fallback.
    Portable,
    /// [`gemm_reference`].
    Reference,
}

/// The path in use: the best this CPU has, or the one `OXFORMER_GEMM_PATH`
/// (`avx512`, `avx2`, `portable`, `reference`) forces.
pub fn gemm_path() -> GemmPath {
    GemmPath::Portable
}

/// Every path and whether this CPU can run it.
pub fn cpu_paths() -> Vec<(GemmPath, bool)> {
    vec![
        (GemmPath::Avx512, false),
        (GemmPath::Avx2, false),
        (GemmPath::Portable, true),
        (GemmPath::Reference, true),
    ]
}
