// #[tree(static)] given twice on one field.
use flax::tch::Tensor;

#[derive(flax::Tree)]
struct State {
    params: Tensor,
    #[tree(static, static)]
    learning_rate: f64,
}

fn main() {}
