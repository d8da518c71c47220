// An unsqueeze past the end of the result (rank 3 has axes 0 to 2).
use flax::prelude::*;

#[module]
pub struct Model;

#[module]
impl Model {
    #[compact]
    #[shape(x: [B, 16])]
    pub fn call(&self, _cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        Ok(x.unsqueeze(3))
    }
}

fn main() {}
