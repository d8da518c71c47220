// #[derive(Collection)]: a metric is computed under its field's name, so a tuple struct has none.
use flax::training::metrics::{Accuracy, Average, Collection, Loss};

#[derive(Collection)]
pub struct Metrics(Accuracy, Average<Loss>);

fn main() {}
