// Flax's AssignSubModuleError: a module with `setup` constructs a submodule in a method that
// is neither `setup` nor `#[compact]`.
use flax::prelude::*;

#[module]
pub struct Mlp {
    #[setup]
    dense1: nn::Dense,
}

#[module]
impl Mlp {
    fn setup(&self) -> MlpSetup {
        MlpSetup { dense1: nn::Dense::new(3) }
    }

    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let h = self.dense1.call(cx, x)?;
        nn::Dense::new(2).call(cx, &h)
    }
}

fn main() {}
