// A declared parent passes its `#[submodule]` field an input the field type's declaration
// rejects (the impl cannot see the field's type; rustc reads its contract).
use flax::prelude::*;

#[module]
pub struct Backbone;

#[module]
impl Backbone {
    #[compact]
    #[shape(x: [B, 28, 28, 1] -> [B, 64])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        nn::Dense::new(64).call(cx, &x.flatten(1, -1))
    }
}

#[module]
pub struct Classifier {
    #[submodule]
    pub backbone: Backbone,
}

#[module]
impl Classifier {
    #[compact]
    #[shape(x: [B, 784] -> [B, 10])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let x = self.backbone.call(cx, x)?;
        nn::Dense::new(10).call(cx, &x)
    }
}

fn main() {}
