// A U-Net skip concatenated at the wrong resolution.
use flax::prelude::*;

#[module]
pub struct Up;

#[module]
impl Up {
    #[compact]
    #[shape(x: [B, 8, 8, 64], skip: [B, 32, 32, 32])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor, skip: &Tensor) -> Result<Tensor> {
        let x = nn::Conv::new(32, vec![3, 3]).call(cx, x)?;
        let x = Tensor::cat(&[&x, skip], -1);
        nn::Conv::new(32, vec![3, 3]).call(cx, &x)
    }
}

fn main() {}
