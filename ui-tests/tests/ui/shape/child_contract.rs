// A declared parent passes a declared child an input its declaration rejects.
use flax::prelude::*;

#[module]
pub struct Head;

#[module]
impl Head {
    #[compact]
    #[shape(x: [B, 784] -> [B, 10])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        nn::Dense::new(10).call(cx, x)
    }
}

#[module]
pub struct Net;

#[module]
impl Net {
    #[compact]
    #[shape(x: [B, 28, 28, 1])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let x = nn::Dense::new(785).call(cx, &x.flatten(1, -1))?;
        Head::new().call(cx, &x)
    }
}

fn main() {}
