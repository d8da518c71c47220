// The generated init/apply take the compact method's argument types.
use flax::prelude::*;

#[module]
pub struct Mlp {}

#[module]
impl Mlp {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor, train: bool) -> Result<Tensor> {
        let y = nn::Dense::new(3).call(cx, x)?;
        Ok(if train { y.relu() } else { y })
    }
}

fn main() -> Result<()> {
    let model = Mlp::new();
    let x = Tensor::zeros([1, 4], (Kind::Float, Device::Cpu));
    let variables = model.init(PRNGKey::new(0), &x, true)?;
    let _ = model.apply(&variables, &x, "train")?;
    Ok(())
}
