// Module methods take `&self` (Flax modules are frozen dataclasses), not `&mut self`.
use flax::prelude::*;

#[module]
pub struct Mlp {
    features: i64,
}

#[module]
impl Mlp {
    #[compact]
    pub fn call(&mut self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        nn::Dense::new(self.features).call(cx, x)
    }
}

fn main() {
    let x = Tensor::zeros([1, 2], (Kind::Float, Device::Cpu));
    let _ = Mlp::new(3).init(PRNGKey::new(0), &x);
}
