// A reshape whose element count cannot match its input's.
use flax::prelude::*;

#[module]
pub struct Net;

#[module]
impl Net {
    #[compact]
    #[shape(x: [B, 784])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let batch = x.size()[0];
        let image = x.reshape([batch, 28, 27, 1]);
        nn::Conv::new(8, vec![3, 3]).call(cx, &image)
    }
}

fn main() {}
