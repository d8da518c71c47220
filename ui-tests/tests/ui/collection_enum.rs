// #[derive(Collection)] (clu's metrics.Collection): each named field is a metric, not an enum variant.
use flax::training::metrics::{Accuracy, Average, Collection, Loss};

#[derive(Collection)]
pub enum Metrics {
    Accuracy(Accuracy),
    Loss(Average<Loss>),
}

fn main() {}
