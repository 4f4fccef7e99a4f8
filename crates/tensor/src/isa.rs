//! Which vector instruction set the kernels use: what this CPU has (detected once), capped by
//! `OXFORMER_ISA`.
//!
//! Every kernel (GEMM, matrix-vector, softmax, LayerNorm, activations, attention, the argmax
//! screen, packing) asks [`isa`] and nothing else. A kernel body that needs an instruction set
//! takes its token ([`Avx2Fma`], [`Avx512F`]): a token is built only by [`Isa::token`], after
//! the CPU was checked, so the `#[target_feature]` wrapper that takes one is a safe function.
//!
//! # `OXFORMER_ISA`
//! `OXFORMER_ISA=avx512|avx2|scalar` caps the set for every kernel of the process: a machine with
//! AVX-512 times its AVX2 path with `OXFORMER_ISA=avx2`, and `scalar` runs plain Rust (GEMM:
//! matrixmultiply). A cap above what the CPU has changes nothing; an unknown name is ignored with
//! a warning on stderr. `OXFORMER_GEMM_PATH` (avx512, avx2, portable, reference) still picks the
//! GEMM's implementation within that cap (see [`gemm_path`](crate::gemm_path)).

use std::sync::OnceLock;

/// A vector instruction set the kernels are compiled for, ordered from least to most capable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Plain Rust (GEMM: matrixmultiply).
    Scalar,
    /// AVX2 + FMA: 8 lanes of f32, 16 ymm registers.
    Avx2,
    /// AVX-512F (with AVX2 + FMA): 16 lanes, 32 zmm registers.
    Avx512,
}

impl Isa {
    /// Every set, most capable first.
    pub const ALL: [Isa; 3] = [Isa::Avx512, Isa::Avx2, Isa::Scalar];

    /// The name `OXFORMER_ISA` takes: `avx512`, `avx2`, `scalar`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
            Isa::Scalar => "scalar",
        }
    }

    /// The set named `name` (as [`Isa::name`]), if any.
    pub fn from_name(name: &str) -> Option<Isa> {
        Isa::ALL
            .into_iter()
            .find(|isa| isa.name().eq_ignore_ascii_case(name.trim()))
    }

    /// Whether this CPU can run it (regardless of `OXFORMER_ISA`).
    pub fn available(self) -> bool {
        self <= detected_isa()
    }

    /// The proof that this CPU runs `self`, for the kernels' wrappers.
    ///
    /// # Panics
    /// If it cannot (see [`Isa::available`]).
    pub(crate) fn token(self) -> Token {
        assert!(
            self.available(),
            "this CPU cannot run the {} kernels (it has {})",
            self.name(),
            detected_isa().name()
        );
        match self {
            Isa::Avx512 => Token::Avx512(Avx512F(())),
            Isa::Avx2 => Token::Avx2(Avx2Fma(())),
            Isa::Scalar => Token::Scalar,
        }
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Proof that this CPU has AVX2 and FMA: built only by [`Isa::token`] after detection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx2Fma(());

/// Proof that this CPU has AVX-512F, AVX2 and FMA: built only by [`Isa::token`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx512F(());

/// An instruction set with its proof, what kernels dispatch on.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Token {
    Avx512(Avx512F),
    Avx2(Avx2Fma),
    Scalar,
}

impl Token {
    /// The AVX2 + FMA proof, if the set includes it.
    pub(crate) fn avx2(self) -> Option<Avx2Fma> {
        match self {
            Token::Avx512(_) => Some(Avx2Fma(())),
            Token::Avx2(token) => Some(token),
            Token::Scalar => None,
        }
    }
}

/// The best set this CPU has (CPUID, read once), ignoring `OXFORMER_ISA`.
pub fn detected_isa() -> Isa {
    static DETECTED: OnceLock<Isa> = OnceLock::new();
    *DETECTED.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            let avx2 = has!("avx2") && has!("fma");
            if avx2 && has!("avx512f") {
                return Isa::Avx512;
            }
            if avx2 {
                return Isa::Avx2;
            }
        }
        Isa::Scalar
    })
}

/// The set every kernel uses: [`detected_isa`], capped by `OXFORMER_ISA` (read once).
pub fn isa() -> Isa {
    static CHOSEN: OnceLock<Isa> = OnceLock::new();
    *CHOSEN.get_or_init(|| {
        let detected = detected_isa();
        match std::env::var("OXFORMER_ISA") {
            Err(_) => detected,
            Ok(cap) => match Isa::from_name(&cap) {
                Some(cap) => cap.min(detected),
                None => {
                    eprintln!(
                        "OXFORMER_ISA={cap}: expected avx512, avx2 or scalar; using {detected}"
                    );
                    detected
                }
            },
        }
    })
}

/// Every set and whether this CPU can run it, most capable first.
pub fn cpu_isas() -> Vec<(Isa, bool)> {
    Isa::ALL
        .into_iter()
        .map(|isa| (isa, isa.available()))
        .collect()
}

/// The CPU's model name (`/proc/cpuinfo`'s, else CPUID's brand string), for reports.
pub fn cpu_model() -> String {
    if let Ok(info) = std::fs::read_to_string("/proc/cpuinfo")
        && let Some(line) = info.lines().find(|line| line.starts_with("model name"))
        && let Some((_, name)) = line.split_once(':')
    {
        return name.trim().to_string();
    }
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::__cpuid;
        // leaves 0x80000002..4 are the brand string where 0x80000000 reports them
        let brand = {
            if __cpuid(0x8000_0000).eax >= 0x8000_0004 {
                let mut bytes = Vec::with_capacity(48);
                for leaf in 0x8000_0002u32..=0x8000_0004 {
                    let r = __cpuid(leaf);
                    for word in [r.eax, r.ebx, r.ecx, r.edx] {
                        bytes.extend_from_slice(&word.to_le_bytes());
                    }
                }
                Some(
                    String::from_utf8_lossy(&bytes)
                        .trim_matches(['\0', ' '])
                        .to_string(),
                )
            } else {
                None
            }
        };
        if let Some(brand) = brand {
            return brand;
        }
    }
    "unknown CPU".to_string()
}

/// The sizes of this CPU's data caches per core, in bytes, as CPUID reports them (leaf 4 on
/// Intel, 0x8000001D on AMD); defaults (32 KiB, 512 KiB, 2 MiB) where it reports none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheSizes {
    /// L1 data cache.
    pub l1d: usize,
    /// L2 (unified) cache.
    pub l2: usize,
    /// L3 cache (shared; the whole of it).
    pub l3: usize,
}

/// This CPU's cache sizes (read once).
pub fn cache_sizes() -> CacheSizes {
    static SIZES: OnceLock<CacheSizes> = OnceLock::new();
    *SIZES.get_or_init(|| {
        let mut sizes = CacheSizes {
            l1d: 32 << 10,
            l2: 512 << 10,
            l3: 2 << 20,
        };
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{__cpuid, __cpuid_count};
            // a leaf is read only where the maximum leaf of its range says it exists
            {
                let vendor = __cpuid(0);
                let amd = vendor.ebx == u32::from_le_bytes(*b"Auth");
                let leaf = if amd {
                    (__cpuid(0x8000_0000).eax >= 0x8000_001D).then_some(0x8000_001D)
                } else {
                    (vendor.eax >= 4).then_some(4)
                };
                if let Some(leaf) = leaf {
                    for index in 0..16 {
                        let r = __cpuid_count(leaf, index);
                        let kind = r.eax & 0x1f; // 0: no more; 1: data; 2: instruction; 3: unified
                        if kind == 0 {
                            break;
                        }
                        if kind == 2 {
                            continue;
                        }
                        let level = (r.eax >> 5) & 0x7;
                        let ways = ((r.ebx >> 22) & 0x3ff) as usize + 1;
                        let partitions = ((r.ebx >> 12) & 0x3ff) as usize + 1;
                        let line = (r.ebx & 0xfff) as usize + 1;
                        let sets = r.ecx as usize + 1;
                        let size = ways * partitions * line * sets;
                        match level {
                            1 => sizes.l1d = size,
                            2 => sizes.l2 = size,
                            3 => sizes.l3 = size,
                            _ => {}
                        }
                    }
                }
            }
        }
        sizes
    })
}

/// Runs `iterations` rounds of 12 independent chains of vector fused multiply-adds on `isa`'s
/// registers (no memory operands; AVX2: ymm, AVX-512: zmm; scalar: `f32::mul_add`) on this
/// thread, and returns the floating-point operations done (2 per lane per FMA): timed, the
/// thread's FMA peak, which kernels' rates are compared against.
///
/// # Panics
/// If this CPU cannot run `isa`.
pub fn fma_peak_loop(isa: Isa, iterations: u64) -> f64 {
    const CHAINS: usize = 12;
    let token = isa.token();
    let (lanes, sum) = match token {
        // SAFETY: the token proves the CPU has AVX-512F (with AVX2 + FMA).
        #[cfg(target_arch = "x86_64")]
        Token::Avx512(_) => (16, unsafe { peak::avx512(iterations) }),
        // SAFETY: the token proves the CPU has AVX2 and FMA.
        #[cfg(target_arch = "x86_64")]
        Token::Avx2(_) => (8, unsafe { peak::avx2(iterations) }),
        _ => {
            let (a, b) = std::hint::black_box((0.999_999_9f32, 1e-7f32));
            let mut chains = [1.0f32; CHAINS];
            for _ in 0..iterations {
                for chain in &mut chains {
                    *chain = chain.mul_add(a, b);
                }
            }
            (1, chains.iter().sum())
        }
    };
    std::hint::black_box(sum);
    2.0 * (CHAINS * lanes) as f64 * iterations as f64
}

#[cfg(target_arch = "x86_64")]
mod peak {
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn avx2(iterations: u64) -> f32 {
        let (a, b) = std::hint::black_box((0.999_999_9f32, 1e-7f32));
        let (a, b) = (_mm256_set1_ps(a), _mm256_set1_ps(b));
        let mut chains = [_mm256_set1_ps(1.0); 12];
        for _ in 0..iterations {
            for chain in &mut chains {
                *chain = _mm256_fmadd_ps(*chain, a, b);
            }
        }
        let mut lanes = [0.0f32; 8];
        let total = chains
            .iter()
            .fold(_mm256_setzero_ps(), |s, &c| _mm256_add_ps(s, c));
        // SAFETY: 8 floats into an array of 8.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), total) };
        lanes.iter().sum()
    }

    /// # Safety
    /// The CPU has AVX-512F.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn avx512(iterations: u64) -> f32 {
        let (a, b) = std::hint::black_box((0.999_999_9f32, 1e-7f32));
        let (a, b) = (_mm512_set1_ps(a), _mm512_set1_ps(b));
        let mut chains = [_mm512_set1_ps(1.0); 12];
        for _ in 0..iterations {
            for chain in &mut chains {
                *chain = _mm512_fmadd_ps(*chain, a, b);
            }
        }
        let total = chains
            .iter()
            .fold(_mm512_setzero_ps(), |s, &c| _mm512_add_ps(s, c));
        _mm512_reduce_add_ps(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_the_chosen_set_runs_here() {
        for isa in Isa::ALL {
            assert_eq!(Isa::from_name(isa.name()), Some(isa));
        }
        assert_eq!(Isa::from_name("sse"), None);
        assert!(isa().available());
        assert!(Isa::Scalar.available());
        assert!(isa() <= detected_isa());
    }

    #[test]
    fn the_peak_loop_counts_its_operations() {
        for isa in Isa::ALL.into_iter().filter(|isa| isa.available()) {
            let lanes = match isa {
                Isa::Avx512 => 16.0,
                Isa::Avx2 => 8.0,
                Isa::Scalar => 1.0,
            };
            assert_eq!(fma_peak_loop(isa, 10), 2.0 * 12.0 * lanes * 10.0, "{isa}");
        }
    }

    #[test]
    fn cache_sizes_are_plausible() {
        let sizes = cache_sizes();
        println!("{sizes:?}");
        assert!((8 << 10..=4 << 20).contains(&sizes.l1d), "{sizes:?}");
        assert!(sizes.l2 >= sizes.l1d, "{sizes:?}");
    }
}
