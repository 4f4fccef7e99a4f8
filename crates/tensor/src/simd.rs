//! Instruction sets as zero-sized types, and the vector maths the kernels share.
//!
//! Every SIMD kernel is written once as an `#[inline(always)]` body generic over [`Simd`]; thin
//! `#[target_feature(enable = "...")]` wrappers instantiate it for [`Avx512`] and [`Avx2`], so the
//! body is compiled once per instruction set with that set enabled (the pattern of
//! matrixmultiply's `kernel_target_*`). Which set runs is chosen once at run time
//! ([`crate::isa`](mod@crate::isa)); a wrapper takes that set's token, so it can be a safe
//! function.
//!
//! # Safety
//! The methods of [`Simd`] are `unsafe`: they may only run on a CPU that has the instruction set,
//! and the pointer methods read or write `LANES` floats (or `n` for the partial ones).

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

// for the docs' links only: the tokens are the isa module's
#[cfg(doc)]
use crate::isa::Token;

/// One instruction set: a vector of `LANES` f32 and the operations the kernels need.
pub(crate) trait Simd: Copy + Send + Sync + 'static {
    type V: Copy;
    type Mask: Copy;
    const LANES: usize;

    /// # Safety
    /// Only on a CPU with `Self`'s instruction set (what a [`Token`] for it proves).
    unsafe fn splat(x: f32) -> Self::V;
    /// # Safety
    /// Only on a CPU with `Self`'s instruction set (what a [`Token`] for it proves), with `p` valid
    /// for reads of `LANES` floats (any alignment).
    unsafe fn load(p: *const f32) -> Self::V;
    /// # Safety
    /// Only on a CPU with `Self`'s instruction set (what a [`Token`] for it proves), with `p` valid
    /// for writes of `LANES` floats (any alignment).
    unsafe fn store(p: *mut f32, v: Self::V);
    /// Loads the first `n` (≤ LANES) floats; the other lanes are 0.
    ///
    /// # Safety
    /// Only on a CPU with `Self`'s instruction set (what a [`Token`] for it proves), with `p` valid
    /// for reads of `n` floats, `n ≤ LANES`; the lanes past `n` are not read.
    unsafe fn load_partial(p: *const f32, n: usize) -> Self::V;
    /// Stores the first `n` (≤ LANES) lanes.
    ///
    /// # Safety
    /// Only on a CPU with `Self`'s instruction set (what a [`Token`] for it proves), with `p` valid
    /// for writes of `n` floats, `n ≤ LANES`; the lanes past `n` are not written.
    unsafe fn store_partial(p: *mut f32, n: usize, v: Self::V);
    /// # Safety
    /// Only on a CPU with `Self`'s instruction set (what a [`Token`] for it proves).
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    /// # Safety
    /// Only on a CPU with `Self`'s instruction set (what a [`Token`] for it proves).
    unsafe fn sub(a: Self::V, b: Self::V) -> Self::V;
    /// # Safety
    /// Only on a CPU with `Self`'s instruction set (what a [`Token`] for it proves).
    unsafe fn mul(a: Self::V, b: Self::V) -> Self::V;
    /// # Safety
    /// Only on a CPU with `Self`'s instruction set (what a [`Token`] for it proves).
    unsafe fn div(a: Self::V, b: Self::V) -> Self::V;
    /// `a·b + c`, fused.
    ///
    /// # Safety
    /// Only on a CPU with `Self`'s instruction set (what a [`Token`] for it proves).
    unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// `a > b ? a : b` as the instruction does: `b` when either is NaN.
    ///
    /// # Safety
    /// Only on a CPU with `Self`'s instruction set (what a [`Token`] for it proves).
    unsafe fn max(a: Self::V, b: Self::V) -> Self::V;
    /// `a < b ? a : b` as the instruction does: `b` when either is NaN.
    ///
    /// # Safety
    /// Only on a CPU with `Self`'s instruction set (what a [`Token`] for it proves).
    unsafe fn min(a: Self::V, b: Self::V) -> Self::V;
    /// # Safety
    /// Only on a CPU with `Self`'s instruction set (what a [`Token`] for it proves).
    unsafe fn abs(a: Self::V) -> Self::V;
    /// `a` with the sign of `sign`.
    ///
    /// # Safety
    /// Only on a CPU with `Self`'s instruction set (what a [`Token`] for it proves).
    unsafe fn copysign(a: Self::V, sign: Self::V) -> Self::V;
    /// Round to nearest even.
    ///
    /// # Safety
    /// Only on a CPU with `Self`'s instruction set (what a [`Token`] for it proves).
    unsafe fn round(a: Self::V) -> Self::V;
    /// `2^n` for whole `n` in [-126, 127].
    ///
    /// # Safety
    /// Only on a CPU with `Self`'s instruction set (what a [`Token`] for it proves).
    unsafe fn pow2i(n: Self::V) -> Self::V;
    /// `a` with the low 12 mantissa bits cleared.
    ///
    /// # Safety
    /// Only on a CPU with `Self`'s instruction set (what a [`Token`] for it proves).
    unsafe fn truncate_low_bits(a: Self::V) -> Self::V;
    /// Lanes where `a < b` (false for NaN).
    ///
    /// # Safety
    /// Only on a CPU with `Self`'s instruction set (what a [`Token`] for it proves).
    unsafe fn lt(a: Self::V, b: Self::V) -> Self::Mask;
    /// Lanes where `a > b` (false for NaN).
    ///
    /// # Safety
    /// Only on a CPU with `Self`'s instruction set (what a [`Token`] for it proves).
    unsafe fn gt(a: Self::V, b: Self::V) -> Self::Mask;
    /// Whether every lane of `mask` is set.
    ///
    /// # Safety
    /// Only on a CPU with `Self`'s instruction set (what a [`Token`] for it proves).
    unsafe fn all(mask: Self::Mask) -> bool;
    /// `if mask { a } else { b }` per lane.
    ///
    /// # Safety
    /// Only on a CPU with `Self`'s instruction set (what a [`Token`] for it proves).
    unsafe fn select(mask: Self::Mask, a: Self::V, b: Self::V) -> Self::V;
    /// Horizontal sum, lanes in a fixed order.
    ///
    /// # Safety
    /// Only on a CPU with `Self`'s instruction set (what a [`Token`] for it proves).
    unsafe fn reduce_add(a: Self::V) -> f32;
    /// Horizontal maximum (NaN lanes are ignored, as `f32::max` does).
    ///
    /// # Safety
    /// Only on a CPU with `Self`'s instruction set (what a [`Token`] for it proves).
    unsafe fn reduce_max(a: Self::V) -> f32;
    /// `e^x` for a softmax's `x = score − max ≤ 0`: [`exp`] (the same reduction and
    /// polynomial), which an instruction set may compute faster for this range; `e^−∞ = 0` and
    /// NaN stays NaN.
    ///
    /// # Safety
    /// Only on a CPU with `Self`'s instruction set (what a [`Token`] for it proves).
    #[inline(always)]
    unsafe fn exp_nonpositive(x: Self::V) -> Self::V {
        // SAFETY: the caller's contract (the CPU has this instruction set).
        unsafe { exp::<Self>(x) }
    }
}

/// AVX-512F: 16 lanes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx512;

/// AVX2 + FMA: 8 lanes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx2;

/// Each method's `# Safety` is that of the [`Simd`] method it implements, the instruction set
/// being AVX-512F.
#[cfg(target_arch = "x86_64")]
impl Simd for Avx512 {
    type V = __m512;
    type Mask = __mmask16;
    const LANES: usize = 16;

    #[inline(always)]
    unsafe fn splat(x: f32) -> __m512 {
        // SAFETY: registers only; the caller runs on a CPU with AVX-512F (`Simd`'s contract).
        unsafe { _mm512_set1_ps(x) }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m512 {
        // SAFETY: the caller runs on a CPU with AVX-512F and `p` points to LANES readable floats
        // (`Simd`'s contract).
        unsafe { _mm512_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m512) {
        // SAFETY: the caller runs on a CPU with AVX-512F and `p` points to LANES writable floats
        // (`Simd`'s contract).
        unsafe { _mm512_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn load_partial(p: *const f32, n: usize) -> __m512 {
        // SAFETY: the caller runs on a CPU with AVX-512F and `p` points to `n` readable floats; the
        // masked lanes are not read (`Simd`'s contract).
        unsafe { _mm512_maskz_loadu_ps(lane_mask16(n), p) }
    }
    #[inline(always)]
    unsafe fn store_partial(p: *mut f32, n: usize, v: __m512) {
        // SAFETY: the caller runs on a CPU with AVX-512F and `p` points to `n` writable floats; the
        // masked lanes are not written (`Simd`'s contract).
        unsafe { _mm512_mask_storeu_ps(p, lane_mask16(n), v) }
    }
    #[inline(always)]
    unsafe fn add(a: __m512, b: __m512) -> __m512 {
        // SAFETY: registers only; the caller runs on a CPU with AVX-512F (`Simd`'s contract).
        unsafe { _mm512_add_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn sub(a: __m512, b: __m512) -> __m512 {
        // SAFETY: registers only; the caller runs on a CPU with AVX-512F (`Simd`'s contract).
        unsafe { _mm512_sub_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn mul(a: __m512, b: __m512) -> __m512 {
        // SAFETY: registers only; the caller runs on a CPU with AVX-512F (`Simd`'s contract).
        unsafe { _mm512_mul_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn div(a: __m512, b: __m512) -> __m512 {
        // SAFETY: registers only; the caller runs on a CPU with AVX-512F (`Simd`'s contract).
        unsafe { _mm512_div_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
        // SAFETY: registers only; the caller runs on a CPU with AVX-512F (`Simd`'s contract).
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn max(a: __m512, b: __m512) -> __m512 {
        // SAFETY: registers only; the caller runs on a CPU with AVX-512F (`Simd`'s contract).
        unsafe { _mm512_max_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn min(a: __m512, b: __m512) -> __m512 {
        // SAFETY: registers only; the caller runs on a CPU with AVX-512F (`Simd`'s contract).
        unsafe { _mm512_min_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn abs(a: __m512) -> __m512 {
        // SAFETY: registers only; the caller runs on a CPU with AVX-512F (`Simd`'s contract).
        unsafe { _mm512_abs_ps(a) }
    }
    #[inline(always)]
    unsafe fn copysign(a: __m512, sign: __m512) -> __m512 {
        // SAFETY: registers only; the caller runs on a CPU with AVX-512F (`Simd`'s contract).
        unsafe {
            let sign_bit = _mm512_set1_epi32(i32::MIN);
            let magnitude = _mm512_andnot_si512(sign_bit, _mm512_castps_si512(a));
            let sign = _mm512_and_si512(sign_bit, _mm512_castps_si512(sign));
            _mm512_castsi512_ps(_mm512_or_si512(magnitude, sign))
        }
    }
    #[inline(always)]
    unsafe fn round(a: __m512) -> __m512 {
        // SAFETY: registers only; the caller runs on a CPU with AVX-512F (`Simd`'s contract).
        unsafe { _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(a) }
    }
    #[inline(always)]
    unsafe fn pow2i(n: __m512) -> __m512 {
        // SAFETY: registers only; the caller runs on a CPU with AVX-512F (`Simd`'s contract).
        unsafe {
            let bits = _mm512_slli_epi32::<23>(_mm512_add_epi32(
                _mm512_cvtps_epi32(n),
                _mm512_set1_epi32(127),
            ));
            _mm512_castsi512_ps(bits)
        }
    }
    #[inline(always)]
    unsafe fn truncate_low_bits(a: __m512) -> __m512 {
        // SAFETY: registers only; the caller runs on a CPU with AVX-512F (`Simd`'s contract).
        unsafe {
            _mm512_castsi512_ps(_mm512_and_si512(
                _mm512_castps_si512(a),
                _mm512_set1_epi32(0xffff_f000u32 as i32),
            ))
        }
    }
    #[inline(always)]
    unsafe fn lt(a: __m512, b: __m512) -> __mmask16 {
        // SAFETY: registers only; the caller runs on a CPU with AVX-512F (`Simd`'s contract).
        unsafe { _mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, b) }
    }
    #[inline(always)]
    unsafe fn gt(a: __m512, b: __m512) -> __mmask16 {
        // SAFETY: registers only; the caller runs on a CPU with AVX-512F (`Simd`'s contract).
        unsafe { _mm512_cmp_ps_mask::<_CMP_GT_OQ>(a, b) }
    }
    #[inline(always)]
    unsafe fn all(mask: __mmask16) -> bool {
        mask == 0xffff
    }
    #[inline(always)]
    unsafe fn select(mask: __mmask16, a: __m512, b: __m512) -> __m512 {
        // SAFETY: registers only; the caller runs on a CPU with AVX-512F (`Simd`'s contract).
        unsafe { _mm512_mask_blend_ps(mask, b, a) }
    }
    #[inline(always)]
    unsafe fn reduce_add(a: __m512) -> f32 {
        // SAFETY: registers only; the caller runs on a CPU with AVX-512F (`Simd`'s contract).
        unsafe {
            let low = _mm512_castps512_ps256(a);
            let high = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(a)));
            Avx2::reduce_add(_mm256_add_ps(low, high))
        }
    }
    #[inline(always)]
    unsafe fn reduce_max(a: __m512) -> f32 {
        let mut lanes = [0.0f32; 16];
        // SAFETY: `lanes` holds LANES floats; the caller runs on a CPU with AVX-512F (`Simd`'s
        // contract).
        unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), a) };
        lanes.iter().copied().fold(f32::NEG_INFINITY, f32::max)
    }
    /// [`exp`]'s reduction and polynomial, with 2^n applied by `vscalefps` (no clamping, no
    /// exponent bit tricks): bit-identical to it from −87 to 0; below −87.34 (−∞ included)
    /// exactly 0; NaN stays NaN.
    #[inline(always)]
    unsafe fn exp_nonpositive(x: __m512) -> __m512 {
        // SAFETY: register-only AVX-512F intrinsics; the caller's contract is that the CPU has
        // AVX-512F.
        unsafe {
            const LOWEST: f32 = -87.336_55;
            // x ≥ LOWEST, or NaN
            let keep = _mm512_cmp_ps_mask::<_CMP_NLT_UQ>(x, _mm512_set1_ps(LOWEST));
            let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
            );
            let r = _mm512_fmadd_ps(n, _mm512_set1_ps(-0.693_359_4), x);
            let r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.121_944_4e-4), r);
            let mut p = _mm512_set1_ps(1.987_569_1e-4);
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.398_199_9e-3));
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.333_452e-3));
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.166_579_6e-2));
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.166_666_65));
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5));
            let r2 = _mm512_mul_ps(r, r);
            let y = _mm512_add_ps(_mm512_fmadd_ps(p, r2, r), _mm512_set1_ps(1.0));
            _mm512_maskz_scalef_ps(keep, y, n)
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn lane_mask16(n: usize) -> __mmask16 {
    if n >= 16 { 0xffff } else { (1u16 << n) - 1 }
}

/// # Safety
/// Only on a CPU with AVX2.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn lane_mask8(n: usize) -> __m256i {
    const INDICES: [i32; 8] = [0, 1, 2, 3, 4, 5, 6, 7];
    // SAFETY: INDICES holds the 8 i32 the unaligned load reads; the caller has AVX2.
    unsafe {
        let indices = _mm256_loadu_si256(INDICES.as_ptr().cast());
        _mm256_cmpgt_epi32(_mm256_set1_epi32(n.min(8) as i32), indices)
    }
}

/// Each method's `# Safety` is that of the [`Simd`] method it implements, the instruction set
/// being AVX2 + FMA.
#[cfg(target_arch = "x86_64")]
impl Simd for Avx2 {
    type V = __m256;
    type Mask = __m256;
    const LANES: usize = 8;

    #[inline(always)]
    unsafe fn splat(x: f32) -> __m256 {
        // SAFETY: registers only; the caller runs on a CPU with AVX2 + FMA (`Simd`'s contract).
        unsafe { _mm256_set1_ps(x) }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m256 {
        // SAFETY: the caller runs on a CPU with AVX2 + FMA and `p` points to LANES readable floats
        // (`Simd`'s contract).
        unsafe { _mm256_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m256) {
        // SAFETY: the caller runs on a CPU with AVX2 + FMA and `p` points to LANES writable floats
        // (`Simd`'s contract).
        unsafe { _mm256_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn load_partial(p: *const f32, n: usize) -> __m256 {
        // SAFETY: the caller runs on a CPU with AVX2 + FMA and `p` points to `n` readable floats;
        // the masked lanes are not read (`Simd`'s contract).
        unsafe { _mm256_maskload_ps(p, lane_mask8(n)) }
    }
    #[inline(always)]
    unsafe fn store_partial(p: *mut f32, n: usize, v: __m256) {
        // SAFETY: the caller runs on a CPU with AVX2 + FMA and `p` points to `n` writable floats;
        // the masked lanes are not written (`Simd`'s contract).
        unsafe { _mm256_maskstore_ps(p, lane_mask8(n), v) }
    }
    #[inline(always)]
    unsafe fn add(a: __m256, b: __m256) -> __m256 {
        // SAFETY: registers only; the caller runs on a CPU with AVX2 + FMA (`Simd`'s contract).
        unsafe { _mm256_add_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn sub(a: __m256, b: __m256) -> __m256 {
        // SAFETY: registers only; the caller runs on a CPU with AVX2 + FMA (`Simd`'s contract).
        unsafe { _mm256_sub_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn mul(a: __m256, b: __m256) -> __m256 {
        // SAFETY: registers only; the caller runs on a CPU with AVX2 + FMA (`Simd`'s contract).
        unsafe { _mm256_mul_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn div(a: __m256, b: __m256) -> __m256 {
        // SAFETY: registers only; the caller runs on a CPU with AVX2 + FMA (`Simd`'s contract).
        unsafe { _mm256_div_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
        // SAFETY: registers only; the caller runs on a CPU with AVX2 + FMA (`Simd`'s contract).
        unsafe { _mm256_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn max(a: __m256, b: __m256) -> __m256 {
        // SAFETY: registers only; the caller runs on a CPU with AVX2 + FMA (`Simd`'s contract).
        unsafe { _mm256_max_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn min(a: __m256, b: __m256) -> __m256 {
        // SAFETY: registers only; the caller runs on a CPU with AVX2 + FMA (`Simd`'s contract).
        unsafe { _mm256_min_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn abs(a: __m256) -> __m256 {
        // SAFETY: registers only; the caller runs on a CPU with AVX2 + FMA (`Simd`'s contract).
        unsafe { _mm256_andnot_ps(_mm256_set1_ps(-0.0), a) }
    }
    #[inline(always)]
    unsafe fn copysign(a: __m256, sign: __m256) -> __m256 {
        // SAFETY: registers only; the caller runs on a CPU with AVX2 + FMA (`Simd`'s contract).
        unsafe {
            let sign_bit = _mm256_set1_ps(-0.0);
            _mm256_or_ps(_mm256_andnot_ps(sign_bit, a), _mm256_and_ps(sign_bit, sign))
        }
    }
    #[inline(always)]
    unsafe fn round(a: __m256) -> __m256 {
        // SAFETY: registers only; the caller runs on a CPU with AVX2 + FMA (`Simd`'s contract).
        unsafe { _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(a) }
    }
    #[inline(always)]
    unsafe fn pow2i(n: __m256) -> __m256 {
        // SAFETY: registers only; the caller runs on a CPU with AVX2 + FMA (`Simd`'s contract).
        unsafe {
            let bits = _mm256_slli_epi32::<23>(_mm256_add_epi32(
                _mm256_cvtps_epi32(n),
                _mm256_set1_epi32(127),
            ));
            _mm256_castsi256_ps(bits)
        }
    }
    #[inline(always)]
    unsafe fn truncate_low_bits(a: __m256) -> __m256 {
        // SAFETY: registers only; the caller runs on a CPU with AVX2 + FMA (`Simd`'s contract).
        unsafe {
            _mm256_castsi256_ps(_mm256_and_si256(
                _mm256_castps_si256(a),
                _mm256_set1_epi32(0xffff_f000u32 as i32),
            ))
        }
    }
    #[inline(always)]
    unsafe fn lt(a: __m256, b: __m256) -> __m256 {
        // SAFETY: registers only; the caller runs on a CPU with AVX2 + FMA (`Simd`'s contract).
        unsafe { _mm256_cmp_ps::<_CMP_LT_OQ>(a, b) }
    }
    #[inline(always)]
    unsafe fn gt(a: __m256, b: __m256) -> __m256 {
        // SAFETY: registers only; the caller runs on a CPU with AVX2 + FMA (`Simd`'s contract).
        unsafe { _mm256_cmp_ps::<_CMP_GT_OQ>(a, b) }
    }
    #[inline(always)]
    unsafe fn all(mask: __m256) -> bool {
        // SAFETY: registers only; the caller runs on a CPU with AVX2 + FMA (`Simd`'s contract).
        unsafe { _mm256_movemask_ps(mask) == 0xff }
    }
    #[inline(always)]
    unsafe fn select(mask: __m256, a: __m256, b: __m256) -> __m256 {
        // SAFETY: registers only; the caller runs on a CPU with AVX2 + FMA (`Simd`'s contract).
        unsafe { _mm256_blendv_ps(b, a, mask) }
    }
    #[inline(always)]
    unsafe fn reduce_add(a: __m256) -> f32 {
        // SAFETY: registers only; the caller runs on a CPU with AVX2 + FMA (`Simd`'s contract).
        unsafe {
            let quad = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
            let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
            let single = _mm_add_ss(pair, _mm_shuffle_ps::<0b01>(pair, pair));
            _mm_cvtss_f32(single)
        }
    }
    #[inline(always)]
    unsafe fn reduce_max(a: __m256) -> f32 {
        let mut lanes = [0.0f32; 8];
        // SAFETY: `lanes` holds LANES floats; the caller runs on a CPU with AVX2 + FMA (`Simd`'s
        // contract).
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), a) };
        lanes.iter().copied().fold(f32::NEG_INFINITY, f32::max)
    }
}

// ---------------------------------------------------------------------------------------------
// Vector maths, generic over the instruction set.

/// `e^x`, after Cephes' `expf` (range reduction by ln 2 in two parts, degree-6 polynomial);
/// within 2 ulp. `exp(-inf) = 0`, `exp(+inf) = +inf`, NaN stays NaN.
///
/// # Safety
/// Only on a CPU with `S`'s instruction set (what a [`Token`] for it proves).
#[inline(always)]
pub(crate) unsafe fn exp<S: Simd>(x: S::V) -> S::V {
    // SAFETY: arithmetic on values, no memory access; the caller has `S`'s instruction set.
    unsafe {
        const HIGHEST: f32 = 88.376_26;
        const LOWEST: f32 = -87.336_55;
        // Clamped so that 2^n stays a normal number; lanes beyond are fixed up at the end.
        // `min(bound, x)` returns x for NaN, so NaN flows through.
        let clamped = S::max(S::splat(-87.0), S::min(S::splat(88.0), x));
        let n = S::round(S::mul(clamped, S::splat(std::f32::consts::LOG2_E)));
        let r = S::fma(n, S::splat(-0.693_359_4), clamped);
        let r = S::fma(n, S::splat(2.121_944_4e-4), r);
        let mut p = S::splat(1.987_569_1e-4);
        p = S::fma(p, r, S::splat(1.398_199_9e-3));
        p = S::fma(p, r, S::splat(8.333_452e-3));
        p = S::fma(p, r, S::splat(4.166_579_6e-2));
        p = S::fma(p, r, S::splat(0.166_666_65));
        p = S::fma(p, r, S::splat(0.5));
        let r2 = S::mul(r, r);
        let y = S::add(S::fma(p, r2, r), S::splat(1.0));
        let y = S::mul(y, S::pow2i(n));
        let y = S::select(S::lt(x, S::splat(LOWEST)), S::splat(0.0), y);
        S::select(S::gt(x, S::splat(HIGHEST)), S::splat(f32::INFINITY), y)
    }
}

/// # Safety
/// Only on a CPU with `S`'s instruction set (what a [`Token`] for it proves).
#[inline(always)]
unsafe fn polynomial<S: Simd>(x: S::V, coefficients: &[f32]) -> S::V {
    // Horner, highest degree first.
    // SAFETY: arithmetic on values, no memory access; the caller has `S`'s instruction set.
    unsafe {
        let mut acc = S::splat(coefficients[0]);
        for &c in &coefficients[1..] {
            acc = S::fma(acc, x, S::splat(c));
        }
        acc
    }
}

/// The error function: fdlibm's `erff` (as musl ships it) with its four intervals computed for
/// every lane and blended; within 1 ulp of f32.
///
/// # Safety
/// Only on a CPU with `S`'s instruction set (what a [`Token`] for it proves).
#[inline(always)]
#[allow(clippy::excessive_precision)]
pub(crate) unsafe fn erf<S: Simd>(x: S::V) -> S::V {
    // Coefficients highest degree first; the f32 roundings of fdlibm's (see activation.rs).
    const PP: [f32; 5] = [
        -2.376_301_7e-5,
        -5.770_270_2e-3,
        -2.848_175e-2,
        -3.250_421e-1,
        1.283_791_7e-1,
    ];
    const QQ: [f32; 6] = [
        -3.960_228_3e-6,
        1.324_947_4e-4,
        5.081_306_2e-3,
        6.502_225e-2,
        3.979_172_2e-1,
        1.0,
    ];
    const PA: [f32; 7] = [
        -2.166_375_5e-3,
        3.547_830_5e-2,
        -1.108_946_9e-1,
        3.183_466_2e-1,
        -3.722_078_8e-1,
        4.148_561_1e-1,
        -2.362_118_6e-3,
    ];
    const QA: [f32; 7] = [
        1.198_450_0e-2,
        1.363_708_4e-2,
        1.261_712_2e-1,
        7.182_865_6e-2,
        5.403_979_4e-1,
        1.064_208_8e-1,
        1.0,
    ];
    const RA: [f32; 8] = [
        -9.814_329e0,
        -8.128_743_7e1,
        -1.846_050_9e2,
        -1.623_966_7e2,
        -6.237_533_2e1,
        -1.055_862_6e1,
        -6.938_585_6e-1,
        -9.864_944e-3,
    ];
    const SA: [f32; 9] = [
        -6.042_441_5e-2,
        6.570_25,
        1.086_350_1e2,
        4.290_081_4e2,
        6.453_872_7e2,
        4.345_658_8e2,
        1.376_577_5e2,
        1.965_127_2e1,
        1.0,
    ];
    const RB: [f32; 7] = [
        -4.835_191_9e2,
        -1.025_095_1e3,
        -6.375_664_4e2,
        -1.606_363_8e2,
        -1.775_795_5e1,
        -7.992_832_4e-1,
        -9.864_943e-3,
    ];
    const SB: [f32; 8] = [
        -2.244_095_2e1,
        4.745_285_4e2,
        2.553_050_3e3,
        3.199_858_2e3,
        1.536_729_6e3,
        3.257_925_1e2,
        3.033_806_1e1,
        1.0,
    ];
    const ERX: f32 = 8.450_629e-1;
    // SAFETY: arithmetic on values, no memory access; the caller has `S`'s instruction set.
    unsafe {
        let ax = S::abs(x);
        let one = S::splat(1.0);
        let small_lanes = S::lt(ax, S::splat(0.84375));
        let middle_lanes = S::lt(ax, S::splat(1.25));
        let near = S::lt(ax, S::splat(1.0 / 0.35));

        // Each interval is a ratio of polynomials; the numerator and denominator of each lane's
        // interval are chosen first so that one division serves them all (divisions are slow).
        // |x| < 0.84375: P(x²)/Q(x²); 0.84375 ≤ |x| < 1.25: P(s)/Q(s), s = |x| − 1;
        // 1.25 ≤ |x| < 6: R(1/x²)/S(1/x²) (two sets of coefficients, split at 1/0.35).
        let z = S::mul(x, x);
        let s = S::sub(ax, one);
        if S::all(middle_lanes) {
            // every lane below 1.25 (no NaN): the two polynomial intervals alone, the same
            // values as the blend below gives them, at well under half its cost (no `exp`, one
            // division); GELU's inputs mostly fall here
            let numerator = S::select(
                small_lanes,
                polynomial::<S>(z, &PP),
                polynomial::<S>(s, &PA),
            );
            let denominator = S::select(
                small_lanes,
                polynomial::<S>(z, &QQ),
                polynomial::<S>(s, &QA),
            );
            let ratio = S::div(numerator, denominator);
            let small = S::fma(x, ratio, x);
            let middle = S::copysign(S::add(S::splat(ERX), ratio), x);
            return S::select(small_lanes, small, middle);
        }
        let inverse_square = S::div(one, z);
        let numerator = S::select(
            small_lanes,
            polynomial::<S>(z, &PP),
            S::select(
                middle_lanes,
                polynomial::<S>(s, &PA),
                S::select(
                    near,
                    polynomial::<S>(inverse_square, &RA),
                    polynomial::<S>(inverse_square, &RB),
                ),
            ),
        );
        let denominator = S::select(
            small_lanes,
            polynomial::<S>(z, &QQ),
            S::select(
                middle_lanes,
                polynomial::<S>(s, &QA),
                S::select(
                    near,
                    polynomial::<S>(inverse_square, &SA),
                    polynomial::<S>(inverse_square, &SB),
                ),
            ),
        );
        let ratio = S::div(numerator, denominator);

        // |x| < 0.84375: x + x·ratio
        let small = S::fma(x, ratio, x);
        // 0.84375 ≤ |x| < 1.25: erx + ratio
        let middle = S::add(S::splat(ERX), ratio);
        // 1.25 ≤ |x| < 6: 1 − exp(−z² − 0.5625)·exp((z − |x|)(z + |x|) + ratio)/|x|, with z = |x|
        // rounded to 12 fewer bits (so z² is exact), and 1/|x| = |x|/x²
        let zt = S::truncate_low_bits(ax);
        let e1 = exp::<S>(S::sub(
            S::mul(S::sub(S::splat(0.0), zt), zt),
            S::splat(0.5625),
        ));
        let e2 = exp::<S>(S::add(S::mul(S::sub(zt, ax), S::add(zt, ax)), ratio));
        let tail = S::sub(one, S::mul(S::mul(e1, e2), S::mul(ax, inverse_square)));

        // |x| ≥ 6: ±1; NaN compares false everywhere and stays NaN (through `ax`)
        let beyond = S::select(S::gt(ax, S::splat(5.0)), one, ax);
        let mut magnitude = S::select(S::lt(ax, S::splat(6.0)), tail, beyond);
        magnitude = S::select(middle_lanes, middle, magnitude);
        let signed = S::copysign(magnitude, x);
        S::select(small_lanes, small, signed)
    }
}

/// `tanh`: Cephes' `tanhf` polynomial below 0.625, `1 − 2/(e^{2|x|} + 1)` above, sign restored.
///
/// # Safety
/// Only on a CPU with `S`'s instruction set (what a [`Token`] for it proves).
#[inline(always)]
#[allow(clippy::excessive_precision)]
pub(crate) unsafe fn tanh<S: Simd>(x: S::V) -> S::V {
    const P: [f32; 5] = [
        -5.704_988_7e-3,
        2.063_908_9e-2,
        -5.373_971_6e-2,
        1.333_144_2e-1,
        -3.333_328_2e-1,
    ];
    // SAFETY: arithmetic on values, no memory access; the caller has `S`'s instruction set.
    unsafe {
        let ax = S::abs(x);
        let z = S::mul(x, x);
        let small = S::fma(S::mul(x, z), polynomial::<S>(z, &P), x);
        let e = exp::<S>(S::add(ax, ax));
        let large = S::sub(
            S::splat(1.0),
            S::div(S::splat(2.0), S::add(e, S::splat(1.0))),
        );
        let large = S::copysign(large, x);
        // NaN: `small` is NaN.
        S::select(S::gt(ax, S::splat(0.625)), large, small)
    }
}
