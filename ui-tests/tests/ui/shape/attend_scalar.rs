// Embed::attend given a scalar (the summed hidden state) instead of a [.., features] query.
use flax::prelude::*;

#[module]
pub struct Model;

#[module]
impl Model {
    #[compact]
    #[shape(h: [B, T, 64])]
    pub fn call(&self, cx: &mut Scope, h: &Tensor) -> Result<Tensor> {
        let total = h.sum(Kind::Float);
        nn::Embed::new(1000, 64).attend(cx, &total)
    }
}

fn main() {}
