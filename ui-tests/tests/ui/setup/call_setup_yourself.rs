// Flax's CallSetupUnboundModuleError: `setup` runs by itself, lazily; it cannot be called.
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
        let _ = self.setup();
        self.dense1.call(cx, x)
    }
}

fn main() {}
