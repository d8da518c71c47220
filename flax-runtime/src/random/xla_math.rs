//! The special functions behind `jax.random.normal` and `truncated_normal`, computed the way
//! jaxlib 0.10.2's CPU backend (XLA) computes them, so that samples match JAX bit for bit
//! rather than merely to a few ulps.
//!
//! Why not `libm`: XLA does not call the C library for these. `erf_inv` is Giles'
//! polynomial (f32) or a three-piece polynomial (f64) over `w = -log1p(-x²)`; `log1p` is a
//! Cephes rational function for small arguments and `log(1 + x)` otherwise; the f32 `log`
//! is XLA's own Cephes-style approximation; the f32 `erf` is Eigen's rational
//! approximation. XLA's LLVM backend contracts `a * b + c` into fused multiply-adds, which is
//! reproduced with `mul_add` exactly where the generated code has them (checked against JAX
//! on several hundred thousand inputs, see `scripts/golden/rng_vectors.py`). The f64 `log`
//! and `erf` are the C library's in XLA, as they are here (`f64::ln`, `libm::erf`).

/// `log(x)` for f32 as XLA's CPU backend emits it (Cephes/Eigen `plog`, with FMAs).
pub(crate) fn log_f32(v: f32) -> f32 {
    const SQRT_HALF: f32 = 0.70710677;
    const P: [f32; 9] = [
        0.070376836,
        -0.1151461,
        0.116769984,
        -0.12420141,
        0.14249323,
        -0.16668057,
        0.20000714,
        -0.24999994,
        0.3333333,
    ];
    const Q1: f32 = -0.00021219444;
    const Q2: f32 = 0.6933594;
    if v.is_nan() || v < 0.0 {
        return f32::NAN;
    }
    if v == 0.0 {
        return f32::NEG_INFINITY;
    }
    if v == f32::INFINITY {
        return v;
    }
    let bits = v.max(f32::MIN_POSITIVE).to_bits();
    let mut e = 1.0 + ((bits >> 23) as i32 - 0x7f) as f32;
    let m = f32::from_bits((bits & !0x7f80_0000) | 0.5f32.to_bits());
    let below = m < SQRT_HALF;
    let mut x = m - 1.0;
    if below {
        e -= 1.0;
        x += m;
    }
    let x2 = x * x;
    let x3 = x2 * x;
    let mut y = x.mul_add(P[0], P[1]);
    let mut y1 = x.mul_add(P[3], P[4]);
    let mut y2 = x.mul_add(P[6], P[7]);
    y = y.mul_add(x, P[2]);
    y1 = y1.mul_add(x, P[5]);
    y2 = y2.mul_add(x, P[8]);
    y = y.mul_add(x3, y1);
    y = y.mul_add(x3, y2);
    y = y.mul_add(x3, Q1 * e);
    x = (-0.5f32).mul_add(x2, x);
    x += y;
    Q2.mul_add(e, x)
}

/// Numerator and denominator coefficients of XLA's Cephes `log1p` for `|x| < sqrt(2) - 1`.
const LOG1P_NUMERATOR: [f64; 7] = [
    4.52700008624452e-05,
    0.49854102823193375,
    6.578732594206104,
    29.911919328553072,
    60.94966798098779,
    57.11296359058554,
    20.039553499201283,
];
const LOG1P_DENOMINATOR: [f64; 7] = [
    1.0,
    15.062909083469192,
    83.04756596796722,
    221.76239823732857,
    309.09872225312057,
    216.42788614495947,
    60.11866049760384,
];
const LOG1P_SMALL: f64 = 0.41421356237309503;

/// `log1p(x)` for f32 as XLA's CPU backend emits it.
pub(crate) fn log1p_f32(x: f32) -> f32 {
    if x.abs() >= LOG1P_SMALL as f32 {
        return log_f32(x + 1.0);
    }
    let horner = |coeffs: &[f64; 7]| coeffs.iter().fold(0.0f32, |p, &c| p.mul_add(x, c as f32));
    let x2 = x * x;
    let ratio = horner(&LOG1P_NUMERATOR) / horner(&LOG1P_DENOMINATOR);
    x + (-0.5f32).mul_add(x2, x * x2 * ratio)
}

/// `log1p(x)` for f64 as XLA's CPU backend emits it (the large branch calls the C library).
pub(crate) fn log1p_f64(x: f64) -> f64 {
    if x.abs() >= LOG1P_SMALL {
        return (x + 1.0).ln();
    }
    let horner = |coeffs: &[f64; 7]| coeffs.iter().fold(0.0f64, |p, &c| p.mul_add(x, c));
    let x2 = x * x;
    let ratio = horner(&LOG1P_NUMERATOR) / horner(&LOG1P_DENOMINATOR);
    x + (-0.5f64).mul_add(x2, x * x2 * ratio)
}

/// `erf_inv(x)` for f32 (XLA's `ErfInv32`, Giles' approximation).
pub(crate) fn erf_inv_f32(x: f32) -> f32 {
    const SMALL: [f32; 9] = [
        2.8102264e-08,
        3.4327394e-07,
        -3.5233877e-06,
        -4.3915065e-06,
        0.00021858087,
        -0.001253725,
        -0.0041776816,
        0.24664073,
        1.5014094,
    ];
    const LARGE: [f32; 9] = [
        -0.00020021426,
        0.00010095056,
        0.0013493432,
        -0.0036734284,
        0.0057395077,
        -0.0076224613,
        0.0094388705,
        1.001674,
        2.8329768,
    ];
    if x.abs() == 1.0 {
        return x * f32::INFINITY;
    }
    let w = -log1p_f32(-x * x);
    let (coeffs, t) = if w < 5.0 { (&SMALL, w - 2.5) } else { (&LARGE, w.sqrt() - 3.0) };
    let p = coeffs[1..].iter().fold(coeffs[0], |p, &c| p.mul_add(t, c));
    p * x
}

/// `erf_inv(x)` for f64 (XLA's `ErfInv64`: one polynomial for each of `w < 6.25`, `w < 16`
/// and beyond).
pub(crate) fn erf_inv_f64(x: f64) -> f64 {
    const CENTRAL: [f64; 23] = [
        -3.64441206401782e-21,
        -1.6850591381820166e-19,
        1.28584807152564e-18,
        1.1157877678025181e-17,
        -1.333171662854621e-16,
        2.0972767875968562e-17,
        6.637638134358324e-15,
        -4.054566272975207e-14,
        -8.151934197605472e-14,
        2.6335093153082323e-12,
        -1.2975133253453532e-11,
        -5.415412054294628e-11,
        1.0512122733215323e-09,
        -4.112633980346984e-09,
        -2.9070369957882005e-08,
        4.2347877827932404e-07,
        -1.3654692000834679e-06,
        -1.3882523362786469e-05,
        0.00018673420803405714,
        -0.000740702534166267,
        -0.006033670871430149,
        0.24015818242558962,
        1.6536545626831027,
    ];
    const MIDDLE: [f64; 19] = [
        2.2137376921775787e-09,
        9.075656193888539e-08,
        -2.7517406297064545e-07,
        1.8239629214389228e-08,
        1.5027403968909828e-06,
        -4.013867526981546e-06,
        2.9234449089955446e-06,
        1.2475304481671779e-05,
        -4.7318229009055734e-05,
        6.828485145957318e-05,
        2.4031110387097894e-05,
        -0.0003550375203628475,
        0.0009532893797373805,
        -0.0016882755560235047,
        0.002491442096107851,
        -0.003751208507569241,
        0.005370914553590064,
        1.0052589676941592,
        3.0838856104922208,
    ];
    const TAIL: [f64; 17] = [
        -2.7109920616438573e-11,
        -2.555641816996525e-10,
        1.5076572693500548e-09,
        -3.789465440126737e-09,
        7.61570120807834e-09,
        -1.496002662714924e-08,
        2.914795345090108e-08,
        -6.771199775845234e-08,
        2.2900482228026655e-07,
        -9.9298272942317e-07,
        4.526062597223154e-06,
        -1.968177810553167e-05,
        7.599527703001776e-05,
        -0.00021503011930044477,
        -0.00013871931833623122,
        1.0103004648645344,
        4.849906401408584,
    ];
    if x.abs() == 1.0 {
        return x * f64::INFINITY;
    }
    let w = -log1p_f64(-x * x);
    let (coeffs, t): (&[f64], f64) = if w < 6.25 {
        (&CENTRAL, w - 3.125)
    } else if w < 16.0 {
        (&MIDDLE, w.sqrt() - 3.25)
    } else {
        (&TAIL, w.sqrt() - 5.0)
    };
    let p = coeffs[1..].iter().fold(coeffs[0], |p, &c| p.mul_add(t, c));
    p * x
}

/// `erf(x)` for f32 (Eigen's `generic_fast_erf`, which XLA's CPU backend uses).
pub(crate) fn erf_f32(x: f32) -> f32 {
    const SATURATION: f32 = 3.832507;
    // The last coefficient is Eigen's fitted value, one ulp below `FRAC_2_SQRT_PI`.
    #[allow(clippy::approx_constant)]
    const ALPHA: [f32; 5] = [0.00022905065, 0.003408291, 0.050955694, 0.18520832, 1.1283791];
    const BETA: [f32; 7] =
        [-1.1791603e-07, 2.3547966e-05, 0.0010179626, 0.01407047, 0.11098505, 0.49746925, 1.0];
    if x.abs() >= SATURATION {
        return 1.0f32.copysign(x);
    }
    let x2 = x * x;
    let p = ALPHA[1..].iter().fold(ALPHA[0], |p, &c| x2.mul_add(p, c));
    let q = BETA[1..].iter().fold(BETA[0], |q, &c| x2.mul_add(q, c));
    x * p / q
}

/// `erf(x)` for f64: XLA's CPU backend calls the C library, as `libm::erf` does.
pub(crate) fn erf_f64(x: f64) -> f64 {
    libm::erf(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The approximations stay within a few float32 ulps of the exact functions (their
    /// bit-exactness against JAX is tested through the samplers).
    #[test]
    fn approximations_are_accurate() {
        for i in 1..2000 {
            let x = i as f32 / 2000.0;
            let close = |a: f32, b: f64, what: &str| {
                assert!(
                    (f64::from(a) - b).abs() <= 4.0 * f64::from(f32::EPSILON) * b.abs().max(1e-3),
                    "{what}({x})"
                )
            };
            close(log_f32(x), f64::from(x).ln(), "log");
            close(log1p_f32(-x), (-f64::from(x)).ln_1p(), "log1p");
            close(erf_f32(x * 4.0), libm::erf(f64::from(x) * 4.0), "erf");
            close(erf_inv_f32(erf_f32(x)), f64::from(x), "erf_inv");
            let y = f64::from(x) * 0.999;
            assert!((erf_inv_f64(libm::erf(y)) - y).abs() < 1e-14, "erf_inv_f64({y})");
        }
        assert_eq!(erf_inv_f32(1.0), f32::INFINITY);
        assert_eq!(erf_inv_f64(-1.0), f64::NEG_INFINITY);
        assert_eq!(log_f32(0.0), f32::NEG_INFINITY);
    }
}
