// Flax: MultipleMethodsCompactError.
use flax::prelude::*;

#[module]
pub struct Twice {}

#[module]
impl Twice {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        nn::Dense::new(3).call(cx, x)
    }

    #[compact]
    pub fn other(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        nn::Dense::new(3).call(cx, x)
    }
}

fn main() {}
