// A `rename` key is a string literal (the key in key paths and state dicts).
use flax::tch::Tensor;

#[derive(flax::Tree)]
struct State {
    #[tree(rename = Dense_0)]
    dense: Tensor,
}

fn main() {}
