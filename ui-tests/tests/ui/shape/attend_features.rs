// Embed::attend (tied output logits) given the 32-feature hidden state of a 64-feature embedding.
use flax::prelude::*;

#[module]
pub struct Model;

#[module]
impl Model {
    #[compact]
    #[shape(ids: [B, T], h: [B, T, 32])]
    pub fn call(&self, cx: &mut Scope, ids: &Tensor, h: &Tensor) -> Result<Tensor> {
        let embed = nn::Embed::new(1000, 64);
        let _ = embed.call(cx, ids)?;
        embed.attend(cx, h)
    }
}

fn main() {}
