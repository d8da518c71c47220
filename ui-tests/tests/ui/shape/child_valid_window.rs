// A VALID convolution window larger than a declared child's output (rustc follows the
// child's declared [B, 4, 4, 64] into the parent's Conv).
use flax::prelude::*;

#[module]
pub struct Down;

#[module]
impl Down {
    #[compact]
    #[shape(x: [B, 8, 8, 32] -> [B, 4, 4, 64])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let x = nn::Conv::new(64, vec![3, 3]).call(cx, x)?;
        nn::max_pool_with(&x, [2, 2], nn::PoolOptions::new().strides([2, 2]))
    }
}

#[module]
pub struct Net;

#[module]
impl Net {
    #[compact]
    #[shape(x: [B, 8, 8, 32])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let h = Down::new().call(cx, x)?;
        nn::Conv::new(16, vec![5, 5]).padding(nn::Padding::Valid).call(cx, &h)
    }
}

fn main() {}
