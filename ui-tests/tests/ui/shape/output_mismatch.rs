// The declared output differs from the shape the body computes.
use flax::prelude::*;

#[module]
pub struct Classifier;

#[module]
impl Classifier {
    #[compact]
    #[shape(x: [B, 784] -> [B, 10])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let x = nn::Dense::new(128).call(cx, x)?.relu();
        nn::Dense::new(12).call(cx, &x)
    }
}

fn main() {}
