use flax::tch::Tensor;

#[derive(flax::Tree)]
enum Params {
    Dense(Tensor),
    Conv(Tensor),
}

fn main() {}
