// Flax's NameInUseError for an attribute assigned twice in `setup`: a field given twice.
use flax::prelude::*;

#[module]
pub struct Mlp {
    #[setup]
    dense1: nn::Dense,
}

#[module]
impl Mlp {
    fn setup(&self) -> MlpSetup {
        MlpSetup { dense1: nn::Dense::new(3), dense1: nn::Dense::new(4) }
    }

    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        self.dense1.call(cx, x)
    }
}

fn main() {}
