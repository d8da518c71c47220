use flax::tch::Tensor;

#[derive(flax::Tree)]
struct Params {
    #[tree(skip)]
    kernel: Tensor,
}

fn main() {}
