use flax::tch::Tensor;

struct Optimizer;

#[derive(flax::Tree)]
struct State {
    params: Tensor,
    tx: Optimizer,
}

fn main() {}
