// #[shape] declares a module method (one taking the scope); a plain helper gets no check.
use flax::prelude::*;

#[module]
pub struct Model;

#[module]
impl Model {
    #[shape(x: [B, 16] -> [B, 16])]
    fn activation(&self, x: &Tensor) -> Tensor {
        x.relu()
    }

    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let y = nn::Dense::new(16).call(cx, x)?;
        Ok(self.activation(&y))
    }
}

fn main() {}
