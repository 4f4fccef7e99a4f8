//! Element-wise activations, named as in transformers' `ACT2FN` (activations.py).

use crate::threads::for_each_chunk_mut;
use ndarray::ArrayViewMut2;

use crate::isa::{Isa, Token, isa};
use crate::simd::{self, Simd};

/// An element-wise activation function.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Activation {
    /// No activation.
    #[default]
    Identity,
    /// `"gelu"`: exact GELU, `x · Φ(x)` with the error function.
    Gelu,
    /// `"gelu_new"` / `"gelu_pytorch_tanh"`: the tanh approximation of GELU.
    GeluTanh,
    /// `"relu"`.
    Relu,
    /// `"silu"` / `"swish"`: `x · σ(x)`.
    Silu,
    /// `"tanh"`.
    Tanh,
}

impl Activation {
    /// The activation of one value.
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Identity => x,
            Activation::Gelu => 0.5 * x * (1.0 + erf(x / std::f32::consts::SQRT_2)),
            Activation::GeluTanh => {
                let inner = (2.0 / std::f32::consts::PI).sqrt() * (x + 0.044715 * x * x * x);
                0.5 * x * (1.0 + inner.tanh())
            }
            Activation::Relu => {
                if x.is_nan() {
                    x
                } else {
                    x.max(0.0)
                }
            }
            Activation::Silu => x / (1.0 + (-x).exp()),
            Activation::Tanh => x.tanh(),
        }
    }
}

/// Applies `activation` to every element of `x` in place (vectorised; within a few f32 ulp of
/// [`Activation::apply`]).
pub fn apply_activation(x: ArrayViewMut2<'_, f32>, activation: Activation) {
    apply_activation_on(isa(), x, activation);
}

/// [`apply_activation`] with the instruction set `isa` rather than [`isa()`]; [`Isa::Scalar`]
/// uses [`Activation::apply`] itself.
///
/// # Panics
/// If this CPU cannot run `isa`.
pub fn apply_activation_on(isa: Isa, mut x: ArrayViewMut2<'_, f32>, activation: Activation) {
    let token = isa.token();
    if activation == Activation::Identity {
        return;
    }
    if let Some(values) = x.as_slice_memory_order_mut() {
        // element-wise, so any split gives the same result; large arrays go over the threads
        const CHUNK: usize = 1 << 14;
        if values.len() > 4 * CHUNK {
            for_each_chunk_mut(values, CHUNK, |_, chunk| {
                activation_in_place(token, activation, chunk)
            });
        } else {
            activation_in_place(token, activation, values);
        }
        return;
    }
    for mut row in x.rows_mut() {
        match row.as_slice_mut() {
            Some(values) => activation_in_place(token, activation, values),
            None => row.mapv_inplace(|value| activation.apply(value)),
        }
    }
}

/// The error function, computed in f64 so that GELU matches PyTorch's `erf` to f32 rounding.
pub(crate) fn erf(x: f32) -> f32 {
    libm_erf(x as f64) as f32
}

// erf for f64, after Sun's fdlibm s_erf.c (the algorithm every C library ships); the constants
// are fdlibm's, digit for digit.
#[allow(clippy::excessive_precision)]
fn libm_erf(x: f64) -> f64 {
    const ERX: f64 = 8.45062911510467529297e-01;
    const EFX8: f64 = 1.02703333676410069053e+00;
    const PP: [f64; 5] = [
        1.28379167095512558561e-01,
        -3.25042107247001499370e-01,
        -2.84817495755985104766e-02,
        -5.77027029648944159157e-03,
        -2.37630166566501626084e-05,
    ];
    const QQ: [f64; 5] = [
        3.97917223959155352819e-01,
        6.50222499887672944485e-02,
        5.08130628187576562776e-03,
        1.32494738004321644526e-04,
        -3.96022827877536812320e-06,
    ];
    const PA: [f64; 7] = [
        -2.36211856075265944077e-03,
        4.14856118683748331666e-01,
        -3.72207876035701323847e-01,
        3.18346619901161753674e-01,
        -1.10894694282396677476e-01,
        3.54783043256182359371e-02,
        -2.16637559486879084300e-03,
    ];
    const QA: [f64; 6] = [
        1.06420880400844228286e-01,
        5.40397917702171048937e-01,
        7.18286544141962662868e-02,
        1.26171219808761642112e-01,
        1.36370839120290507362e-02,
        1.19844998467991074170e-02,
    ];
    const RA: [f64; 8] = [
        -9.86494403484714822705e-03,
        -6.93858572707181764372e-01,
        -1.05586262253232909814e+01,
        -6.23753324503260060396e+01,
        -1.62396669462573470355e+02,
        -1.84605092906711035994e+02,
        -8.12874355063065934246e+01,
        -9.81432934416914548592e+00,
    ];
    const SA: [f64; 8] = [
        1.96512716674392571292e+01,
        1.37657754143519042600e+02,
        4.34565877475229228821e+02,
        6.45387271733267880336e+02,
        4.29008140027567833386e+02,
        1.08635005541779435134e+02,
        6.57024977031928170135e+00,
        -6.04244152148580987438e-02,
    ];
    const RB: [f64; 7] = [
        -9.86494292470009928597e-03,
        -7.99283237680523006574e-01,
        -1.77579549177547519889e+01,
        -1.60636384855821916062e+02,
        -6.37566443368389627722e+02,
        -1.02509513161107724954e+03,
        -4.83519191608651397019e+02,
    ];
    const SB: [f64; 7] = [
        3.03380607434824582924e+01,
        3.25792512996573918826e+02,
        1.53672958608443695994e+03,
        3.19985821950859553908e+03,
        2.55305040643316442583e+03,
        4.74528541206955367215e+02,
        -2.24409524465858183362e+01,
    ];
    if x.is_nan() {
        return x;
    }
    let sign = if x < 0.0 { -1.0 } else { 1.0 };
    let ax = x.abs();
    if ax < 0.84375 {
        if ax < 3.7252902984e-09 {
            return x + x * (EFX8 / 8.0);
        }
        let z = x * x;
        let r = PP[0] + z * (PP[1] + z * (PP[2] + z * (PP[3] + z * PP[4])));
        let s = 1.0 + z * (QQ[0] + z * (QQ[1] + z * (QQ[2] + z * (QQ[3] + z * QQ[4]))));
        return x + x * (r / s);
    }
    if ax < 1.25 {
        let s = ax - 1.0;
        let p =
            PA[0] + s * (PA[1] + s * (PA[2] + s * (PA[3] + s * (PA[4] + s * (PA[5] + s * PA[6])))));
        let q =
            1.0 + s * (QA[0] + s * (QA[1] + s * (QA[2] + s * (QA[3] + s * (QA[4] + s * QA[5])))));
        return sign * (ERX + p / q);
    }
    if ax >= 6.0 {
        return sign * (1.0 - 1e-300);
    }
    let s = 1.0 / (ax * ax);
    let (r, big_s) = if ax < 1.0 / 0.35 {
        (
            RA[0]
                + s * (RA[1]
                    + s * (RA[2]
                        + s * (RA[3] + s * (RA[4] + s * (RA[5] + s * (RA[6] + s * RA[7])))))),
            1.0 + s
                * (SA[0]
                    + s * (SA[1]
                        + s * (SA[2]
                            + s * (SA[3] + s * (SA[4] + s * (SA[5] + s * (SA[6] + s * SA[7]))))))),
        )
    } else {
        (
            RB[0] + s * (RB[1] + s * (RB[2] + s * (RB[3] + s * (RB[4] + s * (RB[5] + s * RB[6]))))),
            1.0 + s
                * (SB[0]
                    + s * (SB[1]
                        + s * (SB[2] + s * (SB[3] + s * (SB[4] + s * (SB[5] + s * SB[6])))))),
        )
    };
    // z = ax with the low 32 bits cleared, as fdlibm does, so exp(-z*z) is exact enough.
    let z = f64::from_bits(ax.to_bits() & 0xffff_ffff_0000_0000);
    let result = (-z * z - 0.5625).exp() * ((z - ax) * (z + ax) + r / big_s).exp() / ax;
    sign * (1.0 - result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_points() {
        // Values of erf from the defining integral (Abramowitz & Stegun, table 7.1).
        for (x, expected) in [
            (0.0, 0.0),
            (0.5, 0.520_499_9),
            (1.0, 0.842_700_8),
            (2.0, 0.995_322_3),
        ] {
            assert!((erf(x) - expected).abs() < 1e-6, "erf({x}) = {}", erf(x));
            assert!((erf(-x) + expected).abs() < 1e-6);
        }
    }
}

/// The activation of each lane; the same definitions as [`Activation::apply`].
///
/// # Safety
/// Only on a CPU with `S`'s instruction set (what a [`Token`] for it proves).
#[inline(always)]
pub(crate) unsafe fn per_lane<S: Simd>(activation: Activation, x: S::V) -> S::V {
    // SAFETY: arithmetic on values, no memory access; the caller has `S`'s instruction set.
    unsafe {
        match activation {
            Activation::Identity => x,
            Activation::Gelu => {
                let e = simd::erf::<S>(S::mul(x, S::splat(std::f32::consts::FRAC_1_SQRT_2)));
                S::mul(S::mul(S::splat(0.5), x), S::add(S::splat(1.0), e))
            }
            Activation::GeluTanh => {
                let cube = S::mul(S::mul(x, x), x);
                let inner = S::mul(
                    S::splat((2.0 / std::f32::consts::PI).sqrt()),
                    S::fma(S::splat(0.044715), cube, x),
                );
                S::mul(
                    S::mul(S::splat(0.5), x),
                    S::add(S::splat(1.0), simd::tanh::<S>(inner)),
                )
            }
            // max(0, x) returns x for NaN, as the reference does.
            Activation::Relu => S::max(S::splat(0.0), x),
            Activation::Silu => {
                let e = simd::exp::<S>(S::sub(S::splat(0.0), x));
                S::div(x, S::add(S::splat(1.0), e))
            }
            Activation::Tanh => simd::tanh::<S>(x),
        }
    }
}

/// Applies `activation` to a slice, vectorised.
///
/// # Safety
/// Only on a CPU with `S`'s instruction set (what a [`Token`] for it proves).
#[inline(always)]
pub(crate) unsafe fn activation_slice<S: Simd>(activation_kind: Activation, values: &mut [f32]) {
    let lanes = S::LANES;
    let mut chunks = values.chunks_exact_mut(lanes);
    for chunk in &mut chunks {
        // SAFETY: `chunk` holds exactly LANES floats, read and written whole; the caller has `S`'s
        // instruction set.
        unsafe {
            let v = S::load(chunk.as_ptr());
            S::store(chunk.as_mut_ptr(), per_lane::<S>(activation_kind, v));
        }
    }
    let rest = chunks.into_remainder();
    if !rest.is_empty() {
        // SAFETY: the masked load and store touch only the `rest.len()` floats of `rest`; the
        // caller has `S`'s instruction set.
        unsafe {
            let v = S::load_partial(rest.as_ptr(), rest.len());
            S::store_partial(
                rest.as_mut_ptr(),
                rest.len(),
                per_lane::<S>(activation_kind, v),
            );
        }
    }
}

/// Applies `activation` to `values` with the instruction set of `token`.
fn activation_in_place(token: Token, activation: Activation, values: &mut [f32]) {
    match token {
        #[cfg(target_arch = "x86_64")]
        Token::Avx512(token) => x86::activation_avx512(token, activation, values),
        #[cfg(target_arch = "x86_64")]
        Token::Avx2(token) => x86::activation_avx2(token, activation, values),
        _ => values
            .iter_mut()
            .for_each(|value| *value = activation.apply(*value)),
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use crate::isa::{Avx2Fma, Avx512F};
    use crate::simd::{Avx2, Avx512};

    pub(super) fn activation_avx512(_: Avx512F, activation: Activation, values: &mut [f32]) {
        /// # Safety
        /// Only on a CPU with AVX-512F, AVX2 and FMA.
        #[target_feature(enable = "avx512f,avx2,fma")]
        fn run(activation: Activation, values: &mut [f32]) {
            // SAFETY: the slice's values are read and written in bounds (LANES at a time, the
            // rest masked); the features are enabled.
            unsafe { activation_slice::<Avx512>(activation, values) }
        }
        // SAFETY: the token proves the CPU has AVX-512F, AVX2 and FMA.
        unsafe { run(activation, values) }
    }

    pub(super) fn activation_avx2(_: Avx2Fma, activation: Activation, values: &mut [f32]) {
        /// # Safety
        /// Only on a CPU with AVX2 and FMA.
        #[target_feature(enable = "avx2,fma")]
        fn run(activation: Activation, values: &mut [f32]) {
            // SAFETY: as above, with AVX2 + FMA.
            unsafe { activation_slice::<Avx2>(activation, values) }
        }
        // SAFETY: the token proves the CPU has AVX2 and FMA.
        unsafe { run(activation, values) }
    }
}
