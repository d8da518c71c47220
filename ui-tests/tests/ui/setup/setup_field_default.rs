// A #[setup] field is set by `setup`: a default (or #[submodule]) on it has no meaning.
use flax::prelude::*;

#[module]
pub struct Mlp {
    features: i64,
    #[setup]
    #[module(default = nn::Dense::new(4))]
    dense: nn::Dense,
}

#[module]
impl Mlp {
    fn setup(&self) -> MlpSetup {
        MlpSetup { dense: nn::Dense::new(self.features) }
    }

    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        self.dense.call(cx, x)
    }
}

fn main() {
    let x = Tensor::zeros([1, 2], (Kind::Float, Device::Cpu));
    let _ = Mlp::new(3).init(PRNGKey::new(0), &x);
}
