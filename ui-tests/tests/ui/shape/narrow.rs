// A narrow past the end of its axis.
use flax::prelude::*;

#[module]
pub struct Model;

#[module]
impl Model {
    #[compact]
    #[shape(x: [B, 10, 16])]
    pub fn call(&self, _cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        Ok(x.narrow(1, 4, 8))
    }
}

fn main() {}
