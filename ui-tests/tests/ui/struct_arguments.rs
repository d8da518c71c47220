// #[module] on a struct takes no arguments (attributes are the struct's fields).
use flax::prelude::*;

#[module(features = 3)]
pub struct Mlp {
    features: i64,
}

fn main() {
    let _ = Mlp::new(3);
}
