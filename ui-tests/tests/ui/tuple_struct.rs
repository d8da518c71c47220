// A module's attributes are named fields (Flax modules are dataclasses): not a tuple struct.
use flax::prelude::*;

#[module]
pub struct Scale(f64);

fn main() {}
