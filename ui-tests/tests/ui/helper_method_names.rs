// A module built by a helper method takes an auto-name at run time that the macro cannot see:
// the typed view offers no field for the layers after it, rather than a wrong one.
use flax::prelude::*;

#[module]
pub struct WithHelper {}

impl WithHelper {
    fn make_dense(&self) -> nn::Dense {
        nn::Dense::new(5)
    }
}

#[module]
impl WithHelper {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let a = self.make_dense().call(cx, x)?; // Dense_0 at run time
        nn::Dense::new(8).call(cx, &a) // Dense_1 at run time, not `dense_0`
    }
}

fn main() {
    let x = Tensor::ones([2, 4], (Kind::Float, Device::Cpu));
    let v = WithHelper::new().init(PRNGKey::new(0), &x).unwrap();
    let _ = WithHelper::params(&v).unwrap().dense_0;
}
