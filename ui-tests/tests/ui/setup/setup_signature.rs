// A module's `setup` takes `&self` and, to declare params, the scope: nothing else.
use flax::prelude::*;

#[module]
pub struct Mlp {
    features: i64,
    #[setup]
    dense: nn::Dense,
}

#[module]
impl Mlp {
    fn setup(&self, features: i64) -> MlpSetup {
        MlpSetup { dense: nn::Dense::new(features) }
    }

    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        self.dense.call(cx, x)
    }
}

fn main() {
    let x = Tensor::zeros([1, 2], (Kind::Float, Device::Cpu));
    let _ = Mlp::new(3).init(PRNGKey::new(0), &x);
}
