// #[module] rewrites the methods of the module's own (inherent) impl block, not a trait impl.
use flax::prelude::*;

#[module]
pub struct Mlp {
    features: i64,
}

pub trait Layer {
    fn width(&self) -> i64;
}

#[module]
impl Layer for Mlp {
    fn width(&self) -> i64 {
        self.features
    }
}

fn main() {
    let _ = Mlp::new(3).width();
}
