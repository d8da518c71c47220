// A reshape that leaves two dimensions to infer.
use flax::prelude::*;

#[module]
pub struct Model;

#[module]
impl Model {
    #[compact]
    #[shape(x: [B, 784])]
    pub fn call(&self, _cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        Ok(x.reshape([-1, -1, 28]))
    }
}

fn main() {}
