//! The Threefry-2x32 block cipher (Salmon et al., "Parallel random numbers: as easy as 1, 2,
//! 3", SC 2011) exactly as `jax._src.random.threefry2x32` computes it: 20 rounds, key
//! injection every 4 rounds, JAX's rotation constants.
//!
//! Every random value of this crate is a pure function of a key and a counter through this
//! hash, which is what makes a [`PRNGKey`](crate::core::rng::PRNGKey) fully determine the
//! values drawn from it, on any thread and any device.

/// Rotation amounts of the two alternating groups of four rounds.
const ROTATIONS: [[u32; 4]; 2] = [[13, 15, 26, 6], [17, 29, 16, 24]];

/// Skein's key-schedule parity constant.
const KEY_PARITY: u32 = 0x1BD1_1BDA;

/// Hashes the counter pair `x` under `key`: JAX's `threefry2x32_p` on one element.
#[inline]
pub(crate) fn threefry2x32(key: [u32; 2], x: [u32; 2]) -> [u32; 2] {
    let ks = [key[0], key[1], key[0] ^ key[1] ^ KEY_PARITY];
    let mut x0 = x[0].wrapping_add(ks[0]);
    let mut x1 = x[1].wrapping_add(ks[1]);
    for block in 0..5u32 {
        for &r in &ROTATIONS[(block % 2) as usize] {
            x0 = x0.wrapping_add(x1);
            x1 = x1.rotate_left(r) ^ x0;
        }
        x0 = x0.wrapping_add(ks[((block + 1) % 3) as usize]);
        x1 = x1.wrapping_add(ks[((block + 2) % 3) as usize]).wrapping_add(block + 1);
    }
    [x0, x1]
}

/// Hashes the 64-bit counter `i` split into `(high, low)` words, as JAX's partitionable
/// threefry does for the `i`-th element of a row-major array (`prng.iota_2x32_shape`).
#[inline]
pub(crate) fn threefry_at(key: [u32; 2], i: u64) -> [u32; 2] {
    threefry2x32(key, [(i >> 32) as u32, i as u32])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known-answer vectors of the Random123 reference implementation (kat_vectors,
    /// threefry2x32_20), which JAX's own tests use as well.
    #[test]
    fn random123_known_answers() {
        assert_eq!(threefry2x32([0, 0], [0, 0]), [0x6b20_0159, 0x99ba_4efe]);
        assert_eq!(threefry2x32([u32::MAX, u32::MAX], [u32::MAX, u32::MAX]), [0x1cb9_96fc, 0xbb00_2be7]);
        assert_eq!(
            threefry2x32([0x1319_8a2e, 0x0370_7344], [0x243f_6a88, 0x85a3_08d3]),
            [0xc492_3a9c, 0x483d_f7a0]
        );
    }
}
