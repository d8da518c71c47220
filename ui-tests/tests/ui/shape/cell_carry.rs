// An LSTM carry initialised for a batch of 4 stepped with a batch of 2.
use flax::prelude::*;

#[module]
pub struct Model;

#[module]
impl Model {
    #[compact]
    #[shape(x: [2, 16], c: [4, 8], h: [4, 8])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor, c: &Tensor, h: &Tensor) -> Result<Tensor> {
        let carry = (c.shallow_clone(), h.shallow_clone());
        let (_, y) = nn::LSTMCell::new().call(cx, &carry, x)?;
        Ok(y)
    }
}

fn main() {}
