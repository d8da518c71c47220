// A convolution and a pooling on a declared child's output are followed by rustc to the
// parent's declared output: [B, 4, 4, 16] is returned, [B, 8, 8, 16] declared.
use flax::prelude::*;

#[module]
pub struct Down;

#[module]
impl Down {
    #[compact]
    #[shape(x: [B, 16, 16, 32] -> [B, 8, 8, 64])]
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
    #[shape(x: [B, 16, 16, 32] -> [B, 8, 8, 16])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let h = Down::new().call(cx, x)?;
        let h = nn::Conv::new(16, vec![3, 3]).call(cx, &h)?.relu();
        nn::max_pool_with(&h, [2, 2], nn::PoolOptions::new().strides([2, 2]))
    }
}

fn main() {}
