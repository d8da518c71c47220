// What a declared parent does with its `#[submodule]` field's output is checked against the
// field type's declared output: a residual add of [B, 64] and [B, 32].
use flax::prelude::*;

#[module]
pub struct Backbone;

#[module]
impl Backbone {
    #[compact]
    #[shape(x: [B, 784] -> [B, 64])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        nn::Dense::new(64).call(cx, x)
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
    #[shape(x: [B, 784])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let h = self.backbone.call(cx, x)?;
        let y = nn::Dense::new(32).call(cx, &h)?;
        Ok(h + y)
    }
}

fn main() {}
