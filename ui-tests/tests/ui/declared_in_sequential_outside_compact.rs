// Flax: AssignSubModuleError, for a submodule declared in a function layer of a `Sequential`
// in a method that is not #[compact], as for a declaration anywhere else in such a method.
use flax::prelude::*;

#[module]
pub struct Head {}

#[module]
impl Head {
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let head = flax::sequential![nn::relu, |cx: &mut Scope, y: &Tensor| nn::Dense::new(3).call(cx, y)];
        head.call(cx, x)
    }
}

fn main() {}
