// A reshape into rows of 10 per example from 784 features: 784 is no multiple of 10.
use flax::prelude::*;

#[module]
pub struct Model;

#[module]
impl Model {
    #[compact]
    #[shape(x: [B, 784])]
    pub fn call(&self, _cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        Ok(x.reshape([x.size()[0], -1, 10]))
    }
}

fn main() {}
