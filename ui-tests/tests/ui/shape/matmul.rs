// Attention scores without transposing the keys: 64 against 16.
use flax::prelude::*;

#[module]
pub struct Model;

#[module]
impl Model {
    #[compact]
    #[shape(q: [B, 16, 64], k: [B, 16, 64])]
    pub fn call(&self, _cx: &mut Scope, q: &Tensor, k: &Tensor) -> Result<Tensor> {
        let scores = q.matmul(k);
        Ok(scores.softmax(-1, Kind::Float))
    }
}

fn main() {}
