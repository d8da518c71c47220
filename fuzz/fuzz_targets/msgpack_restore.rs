//! `flax::serialization::msgpack_restore` on arbitrary bytes: it must return, never panic,
//! overflow the stack or allocate without bound; and whatever it restores must serialize again
//! and restore to bytes that serialize identically (the writer accepts every tree the reader
//! makes, and the two agree).
#![no_main]

use flax::serialization::{msgpack_restore, msgpack_serialize};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = msgpack_restore(data) else { return };
    let bytes = msgpack_serialize(&value).expect("a restored tree serializes");
    let again = msgpack_restore(&bytes).expect("serialized bytes restore");
    assert!(msgpack_serialize(&again).expect("a restored tree serializes") == bytes);
});
