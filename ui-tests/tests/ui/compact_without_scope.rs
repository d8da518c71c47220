// A #[compact] method declares its params and submodules through the scope: it must take one.
use flax::prelude::*;

#[module]
pub struct Mlp {
    features: i64,
}

#[module]
impl Mlp {
    #[compact]
    pub fn call(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.relu())
    }
}

fn main() {
    let x = Tensor::zeros([1, 2], (Kind::Float, Device::Cpu));
    let _ = Mlp::new(3).init(PRNGKey::new(0), &x);
}
