// The outputs of an RNN (64 features) added to its inputs (16).
use flax::prelude::*;

#[module]
pub struct Model;

#[module]
impl Model {
    #[compact]
    #[shape(x: [B, T, 16] -> [B, T, 16])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let (_, ys) = nn::RNN::new(nn::LSTMCell::new(), 64).call(cx, x, None, None)?;
        Ok(ys + x)
    }
}

fn main() {}
