// The typed params view is checked by the compiler: a name the module never declares is a
// compile error, not a KeyError at run time.
use flax::prelude::*;

#[module]
pub struct Mlp {}

#[module]
impl Mlp {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        nn::Dense::new(3).call(cx, x)
    }
}

fn main() -> Result<()> {
    let x = Tensor::zeros([1, 4], (Kind::Float, Device::Cpu));
    let variables = Mlp::new().init(PRNGKey::new(0), &x)?;
    let params = Mlp::params(&variables)?;
    let _ = params.dense_1.kernel;
    Ok(())
}
