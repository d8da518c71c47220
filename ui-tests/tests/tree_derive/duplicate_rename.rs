// #[tree(rename = …)] given twice on one field: which key would it have?
use flax::tch::Tensor;

#[derive(flax::Tree)]
struct State {
    #[tree(rename = "params")]
    #[tree(rename = "weights")]
    params: Tensor,
}

fn main() {}
