// A declared child's output (64 features, from its declaration) added to 32 features.
use flax::prelude::*;

#[module]
pub struct Encoder;

#[module]
impl Encoder {
    #[compact]
    #[shape(x: [B, 784] -> [B, 64])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        nn::Dense::new(64).call(cx, x)
    }
}

#[module]
pub struct Net;

#[module]
impl Net {
    #[compact]
    #[shape(x: [B, 784])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let h = Encoder::new().call(cx, x)?;
        let skip = nn::Dense::new(32).call(cx, x)?;
        Ok(h + skip)
    }
}

fn main() {}
