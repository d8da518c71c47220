//! JAX's PRNG keys: `jax.random.PRNGKey`, `split`, `fold_in`, and Flax's static fold-in.
//!
//! A key is a value (two `u32` words of threefry2x32 key data), never a stateful generator:
//! the same key always yields the same numbers. The algorithms are those of jax 0.10.2's
//! default configuration, where `jax_threefry_partitionable` is `True`: `split` and the
//! random bits hash each element's 64-bit row-major index, split into two `u32` counter
//! words, and `random_bits` (32-bit) is the XOR of the two output words.

use sha1::{Digest, Sha1};

use crate::core::threefry::{threefry2x32, threefry_at};

/// A threefry2x32 PRNG key, bit-for-bit the `uint32[2]` key data of
/// `jax.random.PRNGKey(seed)` (`jax.random.key_data` of a typed key).
///
/// Cheap to copy; it fully determines every value drawn from it. It is a [`Tree`] leaf that is
/// not a tensor, saved in state dicts and checkpoints as its raw data (a `uint32` array of
/// shape `(2,)`, as Flax saves a `key: jax.Array` field), so a `TrainState` keeps its
/// dropout key across a restore.
///
/// [`Tree`]: crate::tree::Tree
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PRNGKey {
    data: [u32; 2],
}

impl PRNGKey {
    /// `jax.random.PRNGKey(seed)` under JAX's default 32-bit mode: the seed is cast to a
    /// 32-bit integer, so the key is `[0, seed mod 2^32]` (for example `2^32 + 5` gives the
    /// same key as `5`). JAX with `jax_enable_x64` would keep the high word; seeds of `2^63`
    /// and above, which Python's JAX rejects, are reduced the same way.
    pub fn new(seed: u64) -> Self {
        PRNGKey { data: [0, seed as u32] }
    }

    /// Wraps raw key data, for example a key saved from JAX with `jax.random.key_data`.
    pub fn from_raw(data: [u32; 2]) -> Self {
        PRNGKey { data }
    }

    /// The raw key data, as `jax.random.key_data` returns it.
    pub fn raw(&self) -> [u32; 2] {
        self.data
    }

    /// `jax.random.split(key, n)`: `n` new independent keys.
    pub fn split(&self, n: usize) -> Vec<PRNGKey> {
        (0..n as u64).map(|i| PRNGKey { data: threefry_at(self.data, i) }).collect()
    }

    /// `jax.random.split(key)` (two keys), without allocating.
    pub fn split2(&self) -> (PRNGKey, PRNGKey) {
        (PRNGKey { data: threefry_at(self.data, 0) }, PRNGKey { data: threefry_at(self.data, 1) })
    }

    /// `jax.random.fold_in(key, data)`: a new key that is a deterministic function of the key
    /// and `data`, for deriving keys from indices (steps, layers, devices) without splitting.
    pub fn fold_in(&self, data: u32) -> PRNGKey {
        PRNGKey { data: threefry2x32(self.data, [0, data]) }
    }

    /// `jax.random.bits(key, (n,), jnp.uint32)`: `n` uniformly random 32-bit words. Element `i`
    /// of any shape is element `i` of its row-major flattening.
    pub fn random_bits_u32(&self, n: usize) -> Vec<u32> {
        (0..n as u64)
            .map(|i| {
                let [hi, lo] = threefry_at(self.data, i);
                hi ^ lo
            })
            .collect()
    }

    /// `jax.random.bits(key, (n,), jnp.uint64)` (64-bit mode): the two output words of each
    /// element concatenated, high word first. Used for `float64` sampling.
    pub fn random_bits_u64(&self, n: usize) -> Vec<u64> {
        (0..n as u64)
            .map(|i| {
                let [hi, lo] = threefry_at(self.data, i);
                (u64::from(hi) << 32) | u64::from(lo)
            })
            .collect()
    }
}

/// One item of static data Flax folds into a key: a submodule name or an RNG counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RngSuffix<'a> {
    /// A name, hashed as its UTF-8 bytes.
    Str(&'a str),
    /// A non-negative integer, hashed as its minimal big-endian bytes (no bytes for 0).
    Int(u64),
}

/// `flax.core.scope._fold_in_static`: folds names and counters into a key through SHA-1.
///
/// This is how Flax derives every `make_rng` key: a scope at path `("Encoder_0", "Dense_1")`
/// asking for its `n`-th key of a stream folds `["Encoder_0", "Dense_1", n]` into the
/// stream's root key. The SHA-1 digest of the concatenated items (with no separators, as with
/// Flax's default `flax_fix_rng_separator = False`) is read as a big-endian `u32` from its
/// first four bytes and passed to [`PRNGKey::fold_in`]. Empty `data` returns `key` unchanged.
pub fn fold_in_static(key: PRNGKey, data: &[RngSuffix<'_>]) -> PRNGKey {
    if data.is_empty() {
        return key;
    }
    let mut hasher = Sha1::new();
    for item in data {
        match item {
            RngSuffix::Str(s) => hasher.update(s.as_bytes()),
            RngSuffix::Int(i) => {
                let bytes = i.to_be_bytes();
                let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
                hasher.update(&bytes[first..]);
            }
        }
    }
    let digest = hasher.finalize();
    key.fold_in(u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values are printed by scripts/golden/rng_vectors.py from jax 0.10.2 / flax 0.12.8.

    #[test]
    fn seeds_map_like_jax_32_bit_mode() {
        assert_eq!(PRNGKey::new(0).raw(), [0, 0]);
        assert_eq!(PRNGKey::new(42).raw(), [0, 42]);
        assert_eq!(PRNGKey::new((1 << 32) + 5).raw(), [0, 5]);
        assert_eq!(PRNGKey::from_raw([7, 9]).raw(), [7, 9]);
    }

    #[test]
    fn split_matches_jax() {
        let keys: Vec<[u32; 2]> = PRNGKey::new(0).split(3).iter().map(PRNGKey::raw).collect();
        assert_eq!(keys, [[1797259609, 2579123966], [928981903, 3453687069], [4146024105, 2718843009]]);
        let (a, b) = PRNGKey::new(0).split2();
        assert_eq!([a.raw(), b.raw()], [keys[0], keys[1]]);
    }

    #[test]
    fn fold_in_matches_jax() {
        assert_eq!(PRNGKey::new(42).fold_in(12345).raw(), [605133419, 3761158475]);
    }

    #[test]
    fn fold_in_static_matches_flax() {
        let root = PRNGKey::new(0);
        let fold = |data: &[RngSuffix<'_>]| fold_in_static(root, data).raw();
        assert_eq!(fold(&[RngSuffix::Int(1)]), [1428664606, 3351135085]);
        assert_eq!(fold(&[RngSuffix::Str("Dense_0"), RngSuffix::Int(1)]), [3043437727, 3662875008]);
        assert_eq!(
            fold(&[RngSuffix::Str("Encoder_0"), RngSuffix::Str("Dense_1"), RngSuffix::Int(3)]),
            [2022021097, 2538759978]
        );
        assert_eq!(fold(&[RngSuffix::Int(0)]), [1582770048, 702645809]);
        assert_eq!(fold(&[RngSuffix::Int(256)]), [1933920794, 3294697503]);
        assert_eq!(fold(&[]), root.raw());
    }

    #[test]
    fn random_bits_match_jax() {
        let bits = PRNGKey::new(42).random_bits_u32(6);
        assert_eq!(bits, [2098992034, 2919706841, 2646866425, 2409546199, 1935504149, 2516274904]);
        let wide = PRNGKey::new(42).random_bits_u64(6);
        assert!(wide.iter().zip(&bits).all(|(w, b)| ((w >> 32) as u32) ^ (*w as u32) == *b));
    }
}
