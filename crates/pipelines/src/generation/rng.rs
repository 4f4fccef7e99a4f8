//! The seeded random generator of sampling: xoshiro256** (Blackman and Vigna) seeded through
//! SplitMix64. Draws happen on the calling thread in a fixed order, so a seed gives the same
//! tokens whatever the number of threads.

/// A small, fast, seedable generator.
#[derive(Clone, Debug)]
pub struct Rng {
    state: [u64; 4],
}

impl Rng {
    /// A generator whose whole sequence is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        let mut mix = seed;
        let mut next = || {
            // SplitMix64.
            mix = mix.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = mix;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Self {
            state: [next(), next(), next(), next()],
        }
    }

    /// A generator seeded from the clock.
    pub fn from_clock() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos() as u64);
        Self::new(nanos)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let [s0, s1, s2, s3] = &mut self.state;
        let result = s1.wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = *s1 << 17;
        *s2 ^= *s0;
        *s3 ^= *s1;
        *s1 ^= *s2;
        *s0 ^= *s3;
        *s2 ^= t;
        *s3 = s3.rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// An index drawn with probability proportional to `weights` (non-negative; zeros are never
    /// drawn), as `torch.multinomial(probs, 1)`. `None` when every weight is zero.
    pub fn categorical(&mut self, weights: &[f32]) -> Option<usize> {
        let total: f64 = weights.iter().map(|&w| w.max(0.0) as f64).sum();
        if total.is_nan() || total <= 0.0 {
            return None;
        }
        let target = self.next_f64() * total;
        let mut cumulative = 0.0f64;
        let mut last_positive = None;
        for (index, &weight) in weights.iter().enumerate() {
            if weight > 0.0 {
                cumulative += weight as f64;
                last_positive = Some(index);
                if target < cumulative {
                    return Some(index);
                }
            }
        }
        last_positive
    }

    /// `count` distinct indices drawn without replacement, each with probability proportional
    /// to its weight among those left (as `torch.multinomial(probs, count)`); fewer when fewer
    /// weights are positive.
    pub fn categorical_without_replacement(&mut self, weights: &[f32], count: usize) -> Vec<usize> {
        let mut left = weights.to_vec();
        let mut drawn = Vec::with_capacity(count);
        for _ in 0..count {
            match self.categorical(&left) {
                Some(index) => {
                    drawn.push(index);
                    left[index] = 0.0;
                }
                None => break,
            }
        }
        drawn
    }
}
