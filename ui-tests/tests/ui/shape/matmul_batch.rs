// Batched attention scores between 8 queries per example and keys of a batch of 4.
use flax::prelude::*;

#[module]
pub struct Model;

#[module]
impl Model {
    #[compact]
    #[shape(q: [8, T, 64], k: [4, 64, T])]
    pub fn call(&self, _cx: &mut Scope, q: &Tensor, k: &Tensor) -> Result<Tensor> {
        Ok(q.matmul(k))
    }
}

fn main() {}
