// Using a plain struct where a module is expected names the fix.
use flax::prelude::*;

#[derive(Clone, Debug)]
pub struct Plain;

fn init_any<M: Module>(_module: &M) {}

fn main() {
    init_any(&Plain);
}
