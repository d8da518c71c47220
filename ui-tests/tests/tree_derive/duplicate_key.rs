use flax::tch::Tensor;

#[derive(flax::Tree)]
struct Params {
    #[tree(rename = "Dense_0")]
    dense: Tensor,
    #[tree(rename = "Dense_0")]
    other: Tensor,
}

fn main() {}
