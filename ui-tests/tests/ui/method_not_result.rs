// Module methods return `flax::Result<T>`: params and submodules can fail, and `?` passes it on.
use flax::prelude::*;

#[module]
pub struct Mlp {
    features: i64,
}

#[module]
impl Mlp {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Tensor {
        nn::Dense::new(self.features).call(cx, x).unwrap()
    }
}

fn main() {
    let x = Tensor::zeros([1, 2], (Kind::Float, Device::Cpu));
    let _ = Mlp::new(3).init(PRNGKey::new(0), &x);
}
