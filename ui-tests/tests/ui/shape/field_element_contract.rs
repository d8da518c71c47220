// A declared parent passes an element of its `Vec` submodule field an input the element
// type's declaration rejects (rustc reads the element type's contract, listed as `layers[]`).
use flax::prelude::*;

#[module]
pub struct Block;

#[module]
impl Block {
    #[compact]
    #[shape(x: [B, 16] -> [B, 16])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        nn::Dense::new(16).call(cx, x)
    }
}

#[module]
pub struct Stack {
    #[submodule]
    pub layers: Vec<Block>,
}

#[module]
impl Stack {
    #[compact]
    #[shape(x: [B, 32] -> [B, 16])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let y = self.layers[0].call(cx, x)?;
        self.layers[1].call(cx, &y)
    }
}

fn main() {}
