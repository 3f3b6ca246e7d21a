//! `e^x` on eight f32 lanes (AVX2 + FMA), for the fused CPU ops' softmax and SiLU.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

/// `e^x` for eight lanes: `x = n·ln 2 + r` with `|r| ≤ ln 2 / 2`, a degree-6 polynomial for
/// `e^r` (Cephes' `expf` coefficients, within 2 ulp of `f32::exp` here), `2^n` built in the
/// exponent bits. Inputs are clamped to [−87.33, 88.37] (the result stays finite and normal);
/// a NaN stays NaN.
#[target_feature(enable = "avx2,fma")]
pub(crate) fn exp8(x: __m256) -> __m256 {
    let x = _mm256_min_ps(_mm256_set1_ps(88.37), _mm256_max_ps(_mm256_set1_ps(-87.33), x));
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)));
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm256_set1_ps(1.987_569_2e-4);
    for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    let p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0)));
    let pow2 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127))));
    _mm256_mul_ps(p, pow2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vector_exp_is_within_two_ulp_of_the_library_exp() {
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            return;
        }
        let mut worst = 0f32;
        for i in 0..200_000 {
            let x = -87.0 + i as f32 * (87.0 + 10.0) / 200_000.0;
            let mut out = [0f32; 8];
            // SAFETY: AVX2 and FMA were detected above; `out` is eight floats.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr(), exp8(_mm256_set1_ps(x))) };
            let want = x.exp();
            worst = worst.max(((out[0] - want) / want).abs());
        }
        assert!(worst <= 2.0 * f32::EPSILON, "relative error {worst}");
        let mut special = [0f32; 8];
        // SAFETY: as above.
        unsafe { _mm256_storeu_ps(special.as_mut_ptr(), exp8(_mm256_setr_ps(f32::NAN, -1e9, 0.0, 1e9, -87.33, 88.0, 1.0, -1.0))) };
        assert!(special[0].is_nan() && special[1] > 0.0 && special[1] < 1e-37 && special[2] == 1.0 && special[3].is_finite());
    }
}
