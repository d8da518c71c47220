// A parent declared to return 11 features returns its declared child's 10 (through a Dense
// that keeps them and a LayerNorm).
use flax::prelude::*;

#[module]
pub struct Head;

#[module]
impl Head {
    #[compact]
    #[shape(x: [B, 64] -> [B, 10])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        nn::Dense::new(10).call(cx, x)
    }
}

#[module]
pub struct Net;

#[module]
impl Net {
    #[compact]
    #[shape(x: [B, 64] -> [B, 11])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let y = Head::new().call(cx, x)?;
        let y = nn::LayerNorm::new().call(cx, &y)?.relu();
        Ok(y.flatten(1, -1))
    }
}

fn main() {}
