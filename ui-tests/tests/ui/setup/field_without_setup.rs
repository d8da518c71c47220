// `#[setup]` fields are filled by the module's `fn setup`; without one they would never be set.
use flax::prelude::*;

#[module]
pub struct Mlp {
    #[setup]
    dense1: nn::Dense,
}

#[module]
impl Mlp {
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        self.dense1.call(cx, x)
    }
}

fn main() {}
