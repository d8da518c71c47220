//! `flax::serialization::safetensors::safetensors_restore` on arbitrary bytes: it must return,
//! never panic; whatever it restores must be written again, and read back to a tree that
//! writes the same bytes.
#![no_main]

use flax::serialization::safetensors::{safetensors_restore, to_safetensors};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(tree) = safetensors_restore(data) else { return };
    let bytes = to_safetensors(&tree).expect("a restored tree is written");
    let again = safetensors_restore(&bytes).expect("written bytes restore");
    assert!(to_safetensors(&again).expect("a restored tree is written") == bytes);
});
