// A module whose `call` takes something other than tensors is not a layer of a Sequential
// (no `nn::CallArgs` is generated for it); the error says what a layer is.
use flax::prelude::*;

#[module]
pub struct Tagged;

#[module]
impl Tagged {
    pub fn call(&self, _cx: &mut Scope, x: &Tensor, _tag: &str) -> Result<Tensor> {
        Ok(x.shallow_clone())
    }
}

fn main() {
    let _model = flax::sequential![nn::Dense::new(4), Tagged::new()];
}
