// Declarations that do not fit the method: an unknown argument, a non-tensor argument, a
// tensor output declared on a method returning a pair.
use flax::prelude::*;

#[module]
pub struct Net;

#[module]
impl Net {
    #[compact]
    #[shape(x: [B, 4], y: [B], train: [1] -> [B, 4])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor, train: bool) -> Result<(Tensor, Tensor)> {
        let _ = train;
        let y = nn::Dense::new(4).call(cx, x)?;
        Ok((y.shallow_clone(), y))
    }
}

fn main() {}
