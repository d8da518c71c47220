// A declared child's output ([B, 8, 8, 64], from its declaration) concatenated with a skip at
// another resolution.
use flax::prelude::*;

#[module]
pub struct Down;

#[module]
impl Down {
    #[compact]
    #[shape(x: [B, 16, 16, 32] -> [B, 8, 8, 64])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        nn::Conv::new(64, vec![3, 3]).strides(2).call(cx, x)
    }
}

#[module]
pub struct Net;

#[module]
impl Net {
    #[compact]
    #[shape(x: [B, 16, 16, 32])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let h = Down::new().call(cx, x)?;
        Ok(Tensor::cat(&[&h, x], -1))
    }
}

fn main() {}
