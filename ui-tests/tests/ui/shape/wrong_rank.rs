// A 2-D convolution receives a flat vector per example.
use flax::prelude::*;

#[module]
pub struct Net;

#[module]
impl Net {
    #[compact]
    #[shape(x: [B, 784] -> [B, 10])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let x = nn::Conv::new(32, vec![3, 3]).call(cx, x)?.relu();
        nn::Dense::new(10).call(cx, &x.flatten(1, -1))
    }
}

fn main() {}
