// Flax's SetAttributeInModuleSetupError: `setup` cannot set an attribute (`features`).
use flax::prelude::*;

#[module]
pub struct Mlp {
    pub features: i64,
    #[setup]
    dense1: nn::Dense,
}

#[module]
impl Mlp {
    fn setup(&self) -> MlpSetup {
        MlpSetup { features: 3, dense1: nn::Dense::new(self.features) }
    }

    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        self.dense1.call(cx, x)
    }
}

fn main() {}
