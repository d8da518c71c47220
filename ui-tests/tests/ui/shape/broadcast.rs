// A residual add between 64 and 32 features.
use flax::prelude::*;

#[module]
pub struct Block;

#[module]
impl Block {
    #[compact]
    #[shape(x: [B, 64] -> [B, 64])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let y = nn::Dense::new(32).call(cx, x)?.relu();
        Ok(x + y)
    }
}

fn main() {}
