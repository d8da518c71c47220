// An LSTM cell's output (its carry's 8 features) added to its 16-feature input.
use flax::prelude::*;

#[module]
pub struct Model;

#[module]
impl Model {
    #[compact]
    #[shape(x: [B, 16], c: [B, 8], h: [B, 8])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor, c: &Tensor, h: &Tensor) -> Result<Tensor> {
        let carry = (c.shallow_clone(), h.shallow_clone());
        let (_, y) = nn::LSTMCell::new().call(cx, &carry, x)?;
        Ok(y + x)
    }
}

fn main() {}
