// #[module] on an impl block takes no arguments but `custom_call_args`.
use flax::prelude::*;

#[module]
pub struct Mlp {
    features: i64,
}

#[module(compact)]
impl Mlp {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        nn::Dense::new(self.features).call(cx, x)
    }
}

fn main() {
    let _ = Mlp::new(3).init(PRNGKey::new(0), &Tensor::zeros([1, 2], (Kind::Float, Device::Cpu)));
}
