// One expansion reports every error it finds together (parsing, the signature checks and the
// body checks), each at its own span, and still generates `init`/`apply`: the calls in `main`
// give no second error.
use flax::prelude::*;

#[module]
pub struct Block {
    features: i64,
}

#[module(bogus)]
impl Block {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let w = cx.param("w", nn::initializers::ones(), &[2])?;
        let y = nn::Dense::new(2).name("w").call(cx, x)?;
        Ok(y * w)
    }

    pub fn helper(&mut self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        nn::Dense::new(2).call(cx, x)
    }
}

fn main() -> Result<()> {
    let x = Tensor::zeros([1, 2], (Kind::Float, Device::Cpu));
    let model = Block::new(2);
    let variables = model.init(PRNGKey::new(0), &x)?;
    let _ = model.apply(&variables, &x)?;
    Ok(())
}
