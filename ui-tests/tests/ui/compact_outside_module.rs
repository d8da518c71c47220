// #[compact] only means something inside a #[module] impl block.
use flax::prelude::*;

pub struct NotAModule;

impl NotAModule {
    #[compact]
    pub fn call(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.shallow_clone())
    }
}

fn main() {}
