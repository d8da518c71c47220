// Flax: AssignSubModuleError, for a param and for an inline submodule in a method that is
// not #[compact].
use flax::prelude::*;

#[module]
pub struct Plain {}

#[module]
impl Plain {
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let scale = cx.param("scale", nn::initializers::ones(), &[3])?;
        let y = nn::Dense::new(3).call(cx, x)?;
        Ok(y * scale)
    }
}

fn main() {}
