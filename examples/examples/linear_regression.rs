//! The spec's Flax Basics (L940-1389): linear regression as one `Dense` layer, trained by
//! gradient descent written by hand over the variable tree, then with Optax's Adam, then
//! serialized with Flax's msgpack and restored into a template.
//!
//! `cargo run --release -p flax-examples --example linear_regression -- --help`
//!
//! The random numbers are JAX's, so the data and the initial parameters equal those of the
//! same program in JAX 0.10 (the spec's printed values come from an older JAX, whose random
//! bits differ).

use clap::Parser;
use flax::optax::{self, GradientTransformation};
use flax::prelude::*;
use flax::random;
use flax::serialization::{from_bytes, to_bytes, to_state_dict};
use flax::tree;
use flax_examples::{device, exit_on_error};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    about = "Flax Basics: linear regression with a Dense layer, by hand and with Optax, then serialized"
)]
struct Args {
    /// Gradient step size, for gradient descent and Adam alike.
    #[arg(long, default_value_t = 0.3)]
    learning_rate: f64,
    /// Steps of each optimisation.
    #[arg(long, default_value_t = 101)]
    steps: usize,
    /// Run on CUDA when available.
    #[arg(long)]
    cuda: bool,
    /// A run for the test suite (the program is already quick: the same steps).
    #[arg(long)]
    quick: bool,
}

/// The data of the spec: a true `W` and `b`, and noisy samples of `x W + b`.
struct Problem {
    true_params: Variables,
    x_samples: Tensor,
    y_samples: Tensor,
}

fn main() -> ExitCode {
    exit_on_error(run(Args::parse()))
}

fn run(args: Args) -> Result<()> {
    let device = device(args.cuda);
    let options = (Kind::Float, device);

    // We create one dense layer instance (taking 'features' parameter as input).
    let model = nn::Dense::new(5);
    let (key1, key2) = PRNGKey::new(0).split2();
    let x = random::normal(key1, &[10], options)?; // Dummy input data
    let params = model.init(key2, &x)?; // Initialization call
    for (path, leaf) in tree::leaves_with_path(&params) {
        println!("{}: {:?}", path.join("/"), leaf.size());
    }

    let problem = problem(options)?;
    println!("x shape: {:?} ; y shape: {:?}", problem.x_samples.size(), problem.y_samples.size());
    let mse = |params: &Variables| mse(&model, params, &problem);
    println!("Loss for \"true\" W,b:  {}", mse(&problem.true_params)?.double_value(&[]) as f32);

    // Gradient descent by hand: `tree_map(lambda p, g: p - learning_rate * g, params, grads)`.
    let mut params = params;
    for i in 0..args.steps {
        let (loss_val, grads) = flax::value_and_grad(&params, mse)?;
        params =
            tree::tree_zip_map(&params, &grads, |p, g| Ok(p.f_sub(&g.try_mul_scalar(args.learning_rate)?)?))?;
        print_loss(i, &loss_val);
    }

    // The same with Optax's Adam, continuing from there.
    let tx = optax::adam(args.learning_rate);
    let mut opt_state = tx.init(&params)?;
    for i in 0..args.steps {
        let (loss_val, grads) = flax::value_and_grad(&params, mse)?;
        let (updates, new_state) = tx.update(grads, opt_state, None)?;
        params = optax::apply_updates(params, &updates)?;
        opt_state = new_state;
        print_loss(i, &loss_val);
    }

    // Serializing the result.
    let bytes_output = to_bytes(&params)?;
    println!("Dict output\n{}", to_state_dict(&params));
    println!("Bytes output ({} bytes)\n{}", bytes_output.len(), python_bytes(&bytes_output));
    let template = model.init(key2, &x)?;
    let restored = from_bytes(&template, &bytes_output)?;
    println!("{restored}");
    Ok(())
}

/// The spec's data: `W`, `b` from `split(PRNGKey(0))`, samples and noise from `split(k1)`.
fn problem(options: (Kind, Device)) -> Result<Problem> {
    let (n_samples, x_dim, y_dim) = (20, 10, 5);
    let (k1, k2) = PRNGKey::new(0).split2();
    let w = random::normal(k1, &[x_dim, y_dim], options)?;
    let b = random::normal(k2, &[y_dim], options)?;
    let true_params =
        frozen_dict! { "params": frozen_dict! { "bias": b.shallow_clone(), "kernel": w.shallow_clone() } };
    let (key_sample, key_noise) = k1.split2();
    let x_samples = random::normal(key_sample, &[n_samples, x_dim], options)?;
    let noise = random::normal(key_noise, &[n_samples, y_dim], options)?;
    let y_samples = x_samples.f_matmul(&w)?.f_add(&b)?.f_add(&noise.try_mul_scalar(0.1)?)?;
    Ok(Problem { true_params, x_samples, y_samples })
}

/// The mean over the samples of half the squared error (`jnp.inner(y - pred, y - pred) / 2`).
fn mse(model: &nn::Dense, params: &Variables, problem: &Problem) -> Result<Tensor> {
    let pred = model.apply(params, &problem.x_samples)?;
    let error = problem.y_samples.f_sub(&pred)?;
    Ok(error
        .f_square()?
        .f_sum_dim_intlist([-1i64].as_slice(), false, Kind::Float)?
        .try_div_scalar(2.0)?
        .f_mean(Kind::Float)?)
}

fn print_loss(step: usize, loss: &Tensor) {
    if step % 10 == 0 {
        println!("Loss step {step}:  {}", loss.double_value(&[]) as f32);
    }
}

/// `bytes` as Python prints a `bytes` object (`b'\x81\xa6params...'`).
fn python_bytes(bytes: &[u8]) -> String {
    let mut out = String::from("b'");
    for &byte in bytes {
        match byte {
            b'\\' => out += "\\\\",
            b'\'' => out += "\\'",
            b'\t' => out += "\\t",
            b'\n' => out += "\\n",
            b'\r' => out += "\\r",
            0x20..=0x7e => out.push(byte as char),
            _ => out += &format!("\\x{byte:02x}"),
        }
    }
    out + "'"
}
