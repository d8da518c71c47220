use flax::tch::Tensor;

struct Optimizer;

#[derive(flax::Tree)]
struct State {
    params: Tensor,
    #[tree(static)]
    tx: Optimizer,
}

fn main() {}
