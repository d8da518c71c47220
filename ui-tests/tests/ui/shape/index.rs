// An index past the end of its axis with i(..).
use flax::prelude::*;

#[module]
pub struct Model;

#[module]
impl Model {
    #[compact]
    #[shape(x: [B, 10, 16])]
    pub fn call(&self, _cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        use flax::tch::IndexOp;
        Ok(x.i((.., 10)))
    }
}

fn main() {}
