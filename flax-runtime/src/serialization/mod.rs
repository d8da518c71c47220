//! `flax.serialization`: variable trees to and from bytes, in Flax's msgpack format.
//!
//! The bytes are those of `flax.serialization` in Flax 0.12.8 (unchanged in substance since the
//! 0.6.10 the spec documents), so a file written here loads in Python Flax and the other way
//! round. The golden tests under `tests/serialization_golden.rs` prove byte identity against
//! vectors written by the real library (`scripts/golden/serialization_vectors.py`). The other
//! direction, Python Flax loading bytes written by Rust, is checked by
//! `scripts/golden/check_rust_bytes.py` on the files that golden test saves:
//!
//! ```text
//! cargo test -p flax-runtime --test serialization_golden
//! .golden-venv/bin/python scripts/golden/check_rust_bytes.py
//! ```
//!
//! - [`msgpack_serialize`] / [`msgpack_restore`]: any [`Value`](crate::Value) tree.
//! - [`to_bytes`] / [`from_bytes`]: any [`Tree`](crate::tree::Tree) (variables, a train
//!   state) through its state dict ([`to_state_dict`]), restored into a target of the same
//!   structure; strict by default, with [`from_bytes_with`] and [`RestoreOptions`] for
//!   partial restores. The state-dict rules live in [`crate::tree`]; the functions here are
//!   Flax's names for them.
//! - [`safetensors`]: the same trees as safetensors files, in the layout transformers uses for
//!   Flax models (`Dense_0.kernel`).
//! - [`pytorch`]: a PyTorch `state_dict` saved as safetensors, converted to Flax's layout and
//!   names (Linear and Conv transposes, BatchNorm statistics into `batch_stats`).
//! - Checkpoint files (`checkpoint_<step>`) are [`crate::training::checkpoints`]; Orbax
//!   checkpoint directories are [`crate::training::orbax`].
//!
//! # The format
//! - A dictionary is a msgpack map with string keys; a [`Value::List`](crate::Value::List) is a
//!   msgpack array; a [`Scalar`](crate::Scalar) is the matching msgpack scalar (`None` is nil,
//!   integers take msgpack's smallest encoding, floats are always float64, strings are str,
//!   bytes are bin).
//! - An array is msgpack extension type 1 whose payload is itself the msgpack encoding of the
//!   triple `[shape, dtype name, raw bytes]`: the shape as an array of integers, numpy's dtype
//!   name (`float32`, `bfloat16`, `float8_e4m3fn`, …; ml_dtypes names for the types numpy lacks)
//!   and the little-endian, C-order element bytes.
//! - Arrays of `uint16`, `uint32` and `uint64`, which libtorch through tch 0.26 cannot hold
//!   (a JAX PRNG key is a `uint32[2]` array), are restored host-side as
//!   [`Scalar::UintArray`](crate::Scalar::UintArray) and written back byte for byte, chunked
//!   like tensors; [`PRNGKey`](crate::PRNGKey)'s state dict is one.
//! - A Python `complex` is extension type 2: the msgpack array `[real, imag]` of two float64.
//! - A numpy scalar (`np.float32(1.5)`) is extension type 3 with the same payload as type 1 and
//!   shape `[]`. It is restored as a 0-d array, which writes back as type 1: Flax reads that as
//!   a 0-d `np.ndarray` with the same value, dtype and shape (Rust has no separate numpy scalar).
//! - msgpack caps one object at 2^32 - 1 bytes, so Flax splits an array of more than
//!   2^30 bytes into 1-D chunks of at most 2^30 bytes, stored as the map
//!   `{"__msgpack_chunked_array__": true, "shape": {"0": d0, …}, "chunks": {"0": array, …}}`.
//!   As in Flax, only arrays reached from the root through dictionaries are chunked, and only
//!   those are re-assembled on reading (an array inside a list never is).
//!
//! # Key order
//! Flax's two writers order keys differently, and this module follows each:
//! [`msgpack_serialize`] sorts the keys of every dictionary (Flax copies the tree with
//! `jax.tree_util.tree_map` first, which rebuilds dictionaries in sorted key order), while
//! [`to_bytes`] keeps the state dict's insertion order (Flax serializes the state dict in place).
//! Reading keeps the order of the bytes.
//!
//! # Reading untrusted bytes
//! [`msgpack_restore`] never panics and never allocates more than a small multiple of its
//! input: it reads in one pass, checks every declared length against the bytes left before
//! allocating anything for it, counts objects against a budget proportional to the size
//! (`object_budget`), limits nesting to 127 levels, and an array's declared shape and dtype
//! must account for exactly the bytes it carries. Anything else — truncated or trailing data, unknown extension types or
//! dtypes, non-string map keys, negative dimensions, integers beyond `i64` — is
//! [`Error::Format`](crate::Error::Format).

mod chunking;
mod msgpack;
mod msgpack_reader;
pub(crate) mod ndarray;
mod object_budget;
pub mod pytorch;
pub mod safetensors;
mod state_dict;
#[cfg(test)]
mod testing;

pub use crate::tree::RestoreOptions;
pub(crate) use msgpack::msgpack_restore_from;
pub use msgpack::{msgpack_restore, msgpack_serialize};
pub use state_dict::{
    from_bytes, from_bytes_with, from_state_dict, from_state_dict_with, to_bytes, to_state_dict,
};
