// An RNN over one feature vector per example: it needs a time axis.
use flax::prelude::*;

#[module]
pub struct Model;

#[module]
impl Model {
    #[compact]
    #[shape(x: [B])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let (_, ys) = nn::RNN::new(nn::LSTMCell::new(), 64).call(cx, x, None, None)?;
        Ok(ys)
    }
}

fn main() {}
