// A field option #[module(…)] does not know: a misspelt `default`.
use flax::prelude::*;

#[module]
pub struct Mlp {
    features: i64,
    #[module(defualt = 0.1)]
    dropout_rate: f64,
}

fn main() {
    let _ = Mlp::new(3, 0.5);
}
