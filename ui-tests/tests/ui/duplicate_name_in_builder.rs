// Flax: NameInUseError, for a param declared in a builder argument of a layer bound with `let`
// (the argument runs in this module's body like any other code there).
use flax::prelude::*;

#[module]
pub struct Scaled {}

#[module]
impl Scaled {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let scale = cx.param("scale", nn::initializers::ones(), &[1])?;
        let norm = nn::LayerNorm::new().epsilon(cx.param("scale", nn::initializers::ones(), &[])?.double_value(&[]));
        Ok(norm.call(cx, x)? * scale)
    }
}

fn main() {}
