// A VALID pooling window larger than its input.
use flax::prelude::*;

#[module]
pub struct Net;

#[module]
impl Net {
    #[compact]
    #[shape(x: [B, 28, 28, 1])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let x = nn::Conv::new(8, vec![3, 3]).strides(4).call(cx, x)?;
        nn::max_pool(&x, [8, 8])
    }
}

fn main() {}
