//! `tabulate` against the tables Flax prints: the spec's `Foo` example (`spec_foo.txt`, the
//! docstring of `Module.tabulate`), and the tables Flax 0.12.8 writes for the same modules
//! (`scripts/golden/tabulate_vectors.py`; their layout is the spec's 0.6.10 layout).

use flax::prelude::*;
use flax::summary::{self, TabulateOptions};
use flax::Error;

fn data(name: &str) -> String {
    let path = format!("{}/tests/data/tabulate/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn ones(shape: &[i64]) -> Tensor {
    Tensor::ones(shape, (Kind::Float, Device::Cpu))
}

fn key() -> PRNGKey {
    PRNGKey::new(0)
}

#[module]
pub struct Foo;

#[module]
impl Foo {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let h = nn::Dense::new(4).call(cx, x)?;
        nn::Dense::new(2).call(cx, &h)
    }
}

#[module]
pub struct Block;

#[module]
impl Block {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let x = nn::Dense::new(4).call(cx, x)?;
        nn::Dense::new(3).call(cx, &x.relu())
    }
}

#[module]
pub struct Net;

#[module]
impl Net {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let x = Block::new().call(cx, x)?;
        let x = Block::new().call(cx, &x)?;
        nn::Dense::new(2).call(cx, &x)
    }
}

#[module]
pub struct Encoder;

#[module]
impl Encoder {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        nn::Dense::new(3).call(cx, x)
    }

    pub fn encode(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        self.call(cx, x)
    }
}

#[module]
pub struct Shared;

#[module]
impl Shared {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let h = Encoder::new().encode(cx, x)?;
        let dense = nn::Dense::new(3);
        let h = dense.call(cx, &h)?;
        dense.call(cx, &h)
    }
}

#[module]
pub struct WithStats;

#[module]
impl WithStats {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let y = nn::Dense::new(3).call(cx, x)?;
        let mean =
            cx.variable("batch_stats", "mean", |cx| Ok(Tensor::zeros([3], (Kind::Float, cx.device()))))?;
        cx.variable("batch_stats", "count", |cx| Ok(Tensor::zeros([0i64; 0], (Kind::Int, cx.device()))))?;
        Ok(y - mean.value(cx)?)
    }
}

#[module]
pub struct Pair;

#[module]
impl Pair {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor, y: &Tensor, scale: bool) -> Result<(Tensor, Tensor)> {
        let a = nn::Dense::new(2).call(cx, x)?;
        let b = nn::Dense::new(2).call(cx, y)?;
        Ok((a * f64::from(u8::from(scale)), b))
    }
}

#[module]
pub struct TwoInputs;

#[module]
impl TwoInputs {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        let (a, b) = Pair::new().call(cx, x, y, true)?;
        Ok(a + b)
    }
}

#[module]
pub struct NoArgs;

#[module]
impl NoArgs {
    #[compact]
    pub fn call(&self, cx: &mut Scope) -> Result<Tensor> {
        cx.param("w", nn::initializers::zeros(), &[2])
    }
}

#[module]
pub struct Big;

#[module]
impl Big {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        nn::Dense::new(1024).call(cx, x)
    }
}

#[test]
fn foo_is_the_table_flax_prints() {
    let table = Foo::new().tabulate(key(), &ones(&[16, 9])).unwrap();
    assert_eq!(table, data("foo.txt"));
}

/// The spec's example, line by line. The docstring is trimmed by hand: rich pads the title
/// and caption lines with spaces to the table's width (as the spec's CNN table, a real print,
/// shows), and centres `Total Parameters: 50 (200 B)` one space further right than the
/// docstring has it. Everything else is character for character.
#[test]
fn foo_is_the_spec_example() {
    let table = Foo::new().tabulate(key(), &ones(&[16, 9])).unwrap();
    let spec = data("spec_foo.txt");
    let ours: Vec<&str> = table.lines().skip(1).map(str::trim_end).collect();
    let spec: Vec<&str> = spec.lines().collect();
    assert_eq!(ours.len(), spec.len() + 1, "ours ends with rich's blank line after the caption");
    let (footer, body) = spec.split_last().unwrap();
    assert_eq!(&ours[..body.len()], body);
    assert_eq!(ours[body.len()], format!(" {footer}"));
    assert_eq!(ours[spec.len()], "");
}

#[test]
fn depth_folds_submodules_into_the_rows_shown() {
    let x = ones(&[2, 5]);
    assert_eq!(Net::new().tabulate(key(), &x).unwrap(), data("net.txt"));
    let depth_1 = Net::new().tabulate_with(key(), &TabulateOptions::new().depth(1), &x).unwrap();
    assert_eq!(depth_1, data("net_depth1.txt"));
    let depth_0 = Net::new().tabulate_with(key(), &TabulateOptions::new().depth(0), &x).unwrap();
    assert_eq!(depth_0, data("net_depth0.txt"));
}

#[test]
fn narrow_consoles_shrink_the_widest_columns() {
    let options = TabulateOptions::new().console_width(60);
    assert_eq!(Net::new().tabulate_with(key(), &options, &ones(&[2, 5])).unwrap(), data("net_width60.txt"));
    let options = TabulateOptions::new().console_width(20);
    assert_eq!(Foo::new().tabulate_with(key(), &options, &ones(&[16, 9])).unwrap(), data("foo_width20.txt"));
}

#[test]
fn show_repeated_lists_every_call() {
    let x = ones(&[2, 3]);
    assert_eq!(Shared::new().tabulate(key(), &x).unwrap(), data("shared.txt"));
    let options = TabulateOptions::new().show_repeated(true);
    assert_eq!(Shared::new().tabulate_with(key(), &options, &x).unwrap(), data("shared_repeated.txt"));
}

#[test]
fn any_method_can_be_summarised() {
    let x = ones(&[2, 3]);
    let table =
        summary::tabulate(&Encoder::new(), key().into(), &TabulateOptions::new(), |m, cx| m.encode(cx, &x));
    assert_eq!(table.unwrap(), data("encoder_method.txt"));
}

#[test]
fn every_collection_gets_a_column() {
    assert_eq!(WithStats::new().tabulate(key(), &ones(&[2, 5])).unwrap(), data("with_stats.txt"));
}

#[test]
fn several_inputs_and_tuple_outputs_are_listed() {
    let table = TwoInputs::new().tabulate(key(), &ones(&[1, 3]), &ones(&[1, 4])).unwrap();
    assert_eq!(table, data("two_inputs.txt"));
}

#[test]
fn a_module_without_arguments_has_empty_inputs() {
    assert_eq!(NoArgs::new().tabulate(key()).unwrap(), data("no_args.txt"));
}

#[test]
fn large_counts_use_separators_and_megabytes() {
    assert_eq!(Big::new().tabulate(key(), &ones(&[1, 1000])).unwrap(), data("big.txt"));
}

#[test]
fn errors_of_the_run_are_returned() {
    let options = TabulateOptions::new().mutable(false);
    match Foo::new().tabulate_with(key(), &options, &ones(&[16, 9])) {
        Err(Error::ScopeCollectionNotFound { collection, scope, .. }) => {
            assert_eq!((collection.as_str(), scope.as_str()), ("params", "/Dense_0"));
        }
        other => panic!("expected ScopeCollectionNotFound, got {other:?}"),
    }
}
