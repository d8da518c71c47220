use flax::tch::Tensor;

#[derive(flax::Tree)]
struct State {
    params: Tensor,
    #[tree(static, rename = "lr")]
    learning_rate: f64,
}

fn main() {}
