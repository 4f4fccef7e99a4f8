//! Packing: B once per weight matrix (into column panels), A once per call (into row panels).

use ndarray::ArrayView2;
use rayon::prelude::*;

use crate::buffer::Aligned;
#[cfg(test)]
use crate::buffer::LINE;
use crate::isa::Isa;

/// Columns per packed B panel for AVX-512 (and the portable path): one AVX-512 microkernel's
/// width (two vectors of 16).
pub(crate) const PANEL: usize = 32;

/// Columns per packed B panel for AVX2: one AVX2 microkernel's width (two vectors of 8), so the
/// K × 16 sliver it streams is contiguous, one cache line per row of K, and a KC block of it
/// fills L1's sets evenly (32-wide panels left every other set unused).
pub(crate) const AVX2_PANEL: usize = 16;

/// The panel width B is packed in for `isa`'s kernels. Every path runs on either width; this
/// is the one its microkernel streams best.
pub(crate) fn panel_for(isa: Isa) -> usize {
    match isa {
        Isa::Avx2 => AVX2_PANEL,
        Isa::Avx512 | Isa::Scalar => PANEL,
    }
}

/// B (K × N) as ⌈N / panel⌉ panels, each K × panel row-major and contiguous, the last one padded
/// with zero columns: element (p, j) lives at `(j / panel)·K·panel + p·panel + j % panel`.
/// A microkernel then streams one panel front to back; a KC block of it is contiguous too, and
/// starts on a cache line. `panel` is a multiple of 16 (whole cache lines per panel row).
pub(crate) fn pack_b(b: ArrayView2<'_, f32>, panel: usize) -> Aligned {
    pack_b_parts(&[b], panel)
}

/// [`pack_b`] of the parts side by side, `[B₀ | B₁ | …]` (same K), each part but the last
/// a whole number of panels wide: a fused product's weights packed without stacking them first.
///
/// # Panics
/// If the parts' K differ or a part before the last is not a multiple of `panel` wide.
pub(crate) fn pack_b_parts(parts: &[ArrayView2<'_, f32>], panel: usize) -> Aligned {
    debug_assert!(panel.is_multiple_of(16));
    let k = parts.first().map_or(0, |part| part.nrows());
    let n: usize = parts.iter().map(|part| part.ncols()).sum();
    for (index, part) in parts.iter().enumerate() {
        assert_eq!(part.nrows(), k, "pack_b_parts: the parts' K differ");
        assert!(
            index + 1 == parts.len() || part.ncols().is_multiple_of(panel),
            "pack_b_parts: a part before the last is not a whole number of panels"
        );
    }
    let len = n.div_ceil(panel) * k * panel;
    // every panel of every part writes all of its K × panel values
    Aligned::new(len, |mut rest| {
        if len == 0 {
            return;
        }
        for part in parts {
            let (target, after) = rest.split_at_mut(part.ncols().div_ceil(panel) * k * panel);
            pack_b_into(*part, panel, target);
            rest = after;
        }
    })
}

/// Packs B into `dst` (⌈N / panel⌉ · K · panel values), writing every one of them.
fn pack_b_into(b: ArrayView2<'_, f32>, panel_width: usize, dst: &mut [std::mem::MaybeUninit<f32>]) {
    let (k, n) = b.dim();
    let row_stride = b.strides()[0];
    let column_stride = b.strides()[1];
    dst.par_chunks_mut(k * panel_width)
        .enumerate()
        .for_each(|(panel, dst)| {
            let j0 = panel * panel_width;
            let width = panel_width.min(n - j0);
            #[cfg(target_arch = "x86_64")]
            if let Some(token) = crate::isa::isa().token().avx2()
                && row_stride == 1
                && column_stride > 0
                && width == panel_width
            {
                // HF's Linear layout seen transposed: columns of B are contiguous rows of W,
                // turned into panel rows by the register transposes of A's panels, the last
                // K % 8 values one by one; every value of the panel is written
                let rows = b.slice(ndarray::s![.., j0..j0 + width]).reversed_axes();
                let done = transpose_rows(token, rows, dst);
                for p in done..k {
                    for c in 0..panel_width {
                        dst[p * panel_width + c].write(b[[p, j0 + c]]);
                    }
                }
                return;
            }
            for value in dst.iter_mut() {
                value.write(0.0);
            }
            if column_stride == 1 {
                // [in, out] layout: rows of B are contiguous
                for p in 0..k {
                    let row = b.row(p);
                    let src = &row.as_slice().expect("unit column stride")[j0..j0 + width];
                    for (target, &value) in dst[p * panel_width..p * panel_width + width]
                        .iter_mut()
                        .zip(src)
                    {
                        target.write(value);
                    }
                }
                return;
            }
            for p in 0..k {
                for c in 0..width {
                    dst[p * panel_width + c].write(b[[p, j0 + c]]);
                }
            }
        });
}

/// A (M × K) as ⌈M / mr⌉ row panels, each K × mr (the mr values of one column together), padded
/// with zero rows: what the microkernel broadcasts from, one contiguous stream per panel.
/// `dst` holds ⌈M / mr⌉ · K · mr values, every one of which is written.
pub(crate) fn pack_a(a: ArrayView2<'_, f32>, mr: usize, dst: &mut [f32]) {
    let (m, k) = a.dim();
    let panel_len = k * mr;
    debug_assert_eq!(dst.len(), m.div_ceil(mr) * panel_len);
    if panel_len == 0 {
        return;
    }
    // with AVX2, full panels of unit-stride rows are transposed 8 columns at a time (4 rows at a
    // time, or AVX2's 6 at once)
    let transpose = (mr.is_multiple_of(4) || mr == 6) && a.strides()[1] == 1;
    let token = crate::isa::isa().token().avx2().filter(|_| transpose);
    for (panel, dst) in dst.chunks_mut(panel_len).enumerate() {
        let i0 = panel * mr;
        let height = mr.min(m - i0);
        let mut done = 0;
        #[cfg(target_arch = "x86_64")]
        if let Some(token) = token
            && height == mr
        {
            // SAFETY: `MaybeUninit<f32>` has f32's layout, and the transposes write only
            // initialised values through it.
            let uninit = unsafe {
                &mut *(std::ptr::from_mut::<[f32]>(dst) as *mut [std::mem::MaybeUninit<f32>])
            };
            done = transpose_rows(token, a.slice(ndarray::s![i0..i0 + mr, ..]), uninit);
        }
        for r in 0..height {
            let row = a.row(i0 + r);
            match row.as_slice() {
                Some(src) => {
                    for (p, &value) in src.iter().enumerate().skip(done) {
                        dst[p * mr + r] = value;
                    }
                }
                None => {
                    for (p, &value) in row.iter().enumerate().skip(done) {
                        dst[p * mr + r] = value;
                    }
                }
            }
        }
        for r in height..mr {
            for p in 0..k {
                dst[p * mr + r] = 0.0;
            }
        }
    }
}

/// Packs the rows of `rows` (mr × k, unit column stride; mr 6 or a multiple of 4) into `dst` as
/// one panel (column p's mr values at `p·mr`), by register transposes of 8 columns at a time, on
/// a CPU `token` proves has AVX2. Returns how many columns it packed (a multiple of 8; the rest
/// are left to the caller). Writes only the first `done · mr` values of `dst`.
///
/// # Panics
/// If `rows` does not have unit column stride, mr is neither 6 nor a multiple of 4, or `dst`
/// holds fewer than k × mr values.
#[cfg(target_arch = "x86_64")]
fn transpose_rows(
    _token: crate::isa::Avx2Fma,
    rows: ArrayView2<'_, f32>,
    dst: &mut [std::mem::MaybeUninit<f32>],
) -> usize {
    let (mr, k) = rows.dim();
    assert!(mr == 6 || mr.is_multiple_of(4), "transpose_rows: {mr} rows");
    assert!(
        dst.len() >= k * mr,
        "transpose_rows: {} values for {k} × {mr}",
        dst.len()
    );
    if mr == 0 || k < 8 {
        return 0;
    }
    assert_eq!(rows.strides()[1], 1, "transpose_rows: column stride");
    // a row stride that is not positive (one row, or reversed rows) goes through the caller's loop
    let Ok(lda) = usize::try_from(rows.strides()[0]) else {
        return 0;
    };
    if lda == 0 && mr > 1 {
        return 0;
    }
    let (a, dst) = (rows.as_ptr(), dst.as_mut_ptr().cast::<f32>());
    // SAFETY: `_token` proves the CPU has AVX2; rows 0..mr of k values lie `lda` apart with unit
    // stride from `a` (the view's own elements), and `dst` holds k × mr values (checked above).
    unsafe {
        if mr == 6 {
            transpose_panel6_avx2(a, lda, k, dst)
        } else {
            transpose_panel_avx2(a, lda, k, mr, dst)
        }
    }
}

/// Packs one full panel of `mr` rows (a multiple of 4; `a`: row 0, `lda`: row stride) into `dst`
/// (k × mr), 8 columns at a time: 4 rows × 8 columns loaded as 4 vectors, transposed as two 4 × 4
/// blocks, stored as 8 runs of 4. Returns how many columns it packed (the rest, fewer than 8,
/// are left to the caller).
///
/// # Safety
/// The CPU has AVX2; the `mr` rows of `k` values exist; `dst` holds k × mr values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn transpose_panel_avx2(
    a: *const f32,
    lda: usize,
    k: usize,
    mr: usize,
    dst: *mut f32,
) -> usize {
    use std::arch::x86_64::*;
    let blocks = k / 8;
    for block in 0..blocks {
        let p = block * 8;
        for r in (0..mr).step_by(4) {
            // SAFETY: rows r..r + 4, columns p..p + 8 exist; the stores are inside dst.
            unsafe {
                let row = |i: usize| _mm256_loadu_ps(a.add((r + i) * lda + p));
                let (r0, r1, r2, r3) = (row(0), row(1), row(2), row(3));
                let t0 = _mm256_unpacklo_ps(r0, r1);
                let t1 = _mm256_unpackhi_ps(r0, r1);
                let t2 = _mm256_unpacklo_ps(r2, r3);
                let t3 = _mm256_unpackhi_ps(r2, r3);
                // column p + j of the 4 rows in the low half, column p + 4 + j in the high one
                let columns = [
                    _mm256_shuffle_ps::<0x44>(t0, t2),
                    _mm256_shuffle_ps::<0xEE>(t0, t2),
                    _mm256_shuffle_ps::<0x44>(t1, t3),
                    _mm256_shuffle_ps::<0xEE>(t1, t3),
                ];
                for (j, &column) in columns.iter().enumerate() {
                    _mm_storeu_ps(dst.add((p + j) * mr + r), _mm256_castps256_ps128(column));
                    _mm_storeu_ps(
                        dst.add((p + 4 + j) * mr + r),
                        _mm256_extractf128_ps::<1>(column),
                    );
                }
            }
        }
    }
    blocks * 8
}

/// [`transpose_panel_avx2`] for a panel of 6 rows (AVX2's): 6 rows × 8 columns loaded as 6
/// vectors and stored as the 48 packed values they make, 6 whole vectors (column j's 6 rows, then
/// column j + 1's, …): the 4 × 4 transposes give each column's first 4 rows, an interleave its
/// last 2, and 64-bit shuffles join them. Returns how many columns it packed (the rest, fewer
/// than 8, are left to the caller).
///
/// # Safety
/// The CPU has AVX2; the 6 rows of `k` values exist; `dst` holds k × 6 values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn transpose_panel6_avx2(a: *const f32, lda: usize, k: usize, dst: *mut f32) -> usize {
    use std::arch::x86_64::*;
    let blocks = k / 8;
    for block in 0..blocks {
        let p = block * 8;
        // SAFETY: rows 0..6, columns p..p + 8 exist; the 6 stores cover dst[6p..6p + 48], inside
        // the k × 6 values.
        unsafe {
            let row = |i: usize| _mm256_loadu_ps(a.add(i * lda + p));
            let (r0, r1, r2, r3) = (row(0), row(1), row(2), row(3));
            let t0 = _mm256_unpacklo_ps(r0, r1);
            let t1 = _mm256_unpackhi_ps(r0, r1);
            let t2 = _mm256_unpacklo_ps(r2, r3);
            let t3 = _mm256_unpackhi_ps(r2, r3);
            // rows 0..4 of column j (low half) and of column j + 4 (high half)
            let fours = [
                _mm256_shuffle_ps::<0x44>(t0, t2),
                _mm256_shuffle_ps::<0xEE>(t0, t2),
                _mm256_shuffle_ps::<0x44>(t1, t3),
                _mm256_shuffle_ps::<0xEE>(t1, t3),
            ];
            // column j's rows 0..4, as two 64-bit pairs
            let head = |j: usize| {
                _mm_castps_pd(if j < 4 {
                    _mm256_castps256_ps128(fours[j])
                } else {
                    _mm256_extractf128_ps::<1>(fours[j - 4])
                })
            };
            let (r4, r5) = (row(4), row(5));
            // rows 4, 5 of columns (0, 1), (4, 5) in `low`; (2, 3), (6, 7) in `high`
            let low = _mm256_castps_pd(_mm256_unpacklo_ps(r4, r5));
            let high = _mm256_castps_pd(_mm256_unpackhi_ps(r4, r5));
            let tails = [
                _mm256_castpd256_pd128(low),
                _mm256_castpd256_pd128(high),
                _mm256_extractf128_pd::<1>(low),
                _mm256_extractf128_pd::<1>(high),
            ];
            // columns 4h..4h + 4: 24 values, 3 vectors
            for half in 0..2 {
                let q = |j: usize| head(4 * half + j);
                let (pairs01, pairs23) = (tails[2 * half], tails[2 * half + 1]);
                // column 0's rows 0..4 | its rows 4, 5 and column 1's rows 0, 1
                let first = _mm256_set_m128d(_mm_unpacklo_pd(pairs01, q(1)), q(0));
                // column 1's rows 2..6 | column 2's rows 0..4
                let second = _mm256_set_m128d(q(2), _mm_shuffle_pd::<0b11>(q(1), pairs01));
                // column 2's rows 4, 5 and column 3's rows 0, 1 | column 3's rows 2..6
                let third = _mm256_set_m128d(
                    _mm_shuffle_pd::<0b11>(q(3), pairs23),
                    _mm_unpacklo_pd(pairs23, q(3)),
                );
                let out = dst.add((p + 4 * half) * 6).cast::<f64>();
                _mm256_storeu_pd(out, first);
                _mm256_storeu_pd(out.add(4), second);
                _mm256_storeu_pd(out.add(8), third);
            }
        }
    }
    blocks * 8
}

/// The inverse of [`pack_b`]: B as a (K, N) row-major array.
pub(crate) fn unpack_b(data: &[f32], k: usize, n: usize, panel: usize) -> ndarray::Array2<f32> {
    ndarray::Array2::from_shape_fn((k, n), |(p, j)| {
        data[(j / panel) * k * panel + p * panel + j % panel]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_panels_and_their_clones_start_on_a_cache_line() {
        for panel in [PANEL, AVX2_PANEL] {
            for (k, n) in [(1, 1), (3, 45), (64, 96), (768, 2304)] {
                let b = ndarray::Array2::from_shape_fn((k, n), |(p, j)| (p * n + j) as f32);
                let packed = pack_b(b.view(), panel);
                let copy = packed.clone();
                for values in [packed.as_slice(), copy.as_slice()] {
                    assert_eq!(values.as_ptr() as usize % (LINE * size_of::<f32>()), 0);
                    assert_eq!(unpack_b(values, k, n, panel), b, "{k}×{n} in {panel}");
                }
            }
        }
        assert!(
            pack_b(ndarray::Array2::<f32>::zeros((0, 5)).view(), PANEL)
                .as_slice()
                .is_empty()
        );
    }
}
