// Flax: NameInUseError, when a literal name is used twice in one compact body.
use flax::prelude::*;

#[module]
pub struct Dup {}

#[module]
impl Dup {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let scale = cx.param("scale", nn::initializers::ones(), &[3])?;
        let y = nn::Dense::new(3).name("scale").call(cx, x)?;
        Ok(y * scale)
    }
}

fn main() {}
