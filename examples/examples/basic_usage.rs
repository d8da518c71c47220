//! The spec's basic usage: define an MLP with `#[module]`, print its summary, initialise it,
//! apply it, and round-trip its variables through Flax's msgpack format.
//!
//! `cargo run --release --example basic_usage -- --help`

use clap::Parser;
use flax::prelude::*;
use flax::serialization::{from_bytes, to_bytes};

/// A two-layer perceptron; its submodules are auto-named Dense_0 and Dense_1 as in Flax.
#[module]
pub struct Mlp {
    /// The number of outputs.
    pub out_dims: i64,
}

#[module]
impl Mlp {
    #[compact]
    #[shape(x: [B, 28, 28, 1] -> [B, self.out_dims])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let x = x.flatten(1, -1);
        let x = nn::Dense::new(128).call(cx, &x)?.relu();
        nn::Dense::new(self.out_dims).call(cx, &x)
    }
}

#[derive(Parser)]
#[command(about = "Flax's basic usage in Rust: init, apply, tabulate and serialize an MLP")]
struct Args {
    /// Batch size of the dummy input.
    #[arg(long, default_value_t = 4)]
    batch: i64,
    /// Seed of the `params` RNG stream.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Run on CUDA when available.
    #[arg(long)]
    cuda: bool,
    /// A fast run for the test suite (same steps, smaller input).
    #[arg(long)]
    quick: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let device = if args.cuda { Device::cuda_if_available() } else { Device::Cpu };
    let batch = if args.quick { 2 } else { args.batch };
    let model = Mlp::new(10);
    println!("{model:?}\n");
    let x = Tensor::zeros([batch, 28, 28, 1], (Kind::Float, device));
    println!("{}", model.tabulate(PRNGKey::new(args.seed), &x)?);

    let variables = model.init(PRNGKey::new(args.seed), &x)?;
    let y = model.apply(&variables, &x)?;
    println!("output shape: {:?} on {:?}", y.size(), y.device());

    let bytes = to_bytes(&variables)?;
    let restored = from_bytes(&variables, &bytes)?;
    let same = model.apply(&restored, &x)?.allclose(&y, 0.0, 0.0, false);
    println!("msgpack round trip: {} bytes, identical output: {same}", bytes.len());
    Ok(())
}
