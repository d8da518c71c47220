//! `setup`-style modules against Flax (`scripts/golden/module_setup.py`): submodules and
//! params assigned in `setup` get Flax's names (`dense1`, `layers_0`, `blocks_a`), the same
//! values from the same seed, and serve several methods; `setup` runs lazily, once per bound
//! module, also when a parent calls two methods of one child.

mod layers_golden;

use flax::prelude::*;
use layers_golden::{assert_close, assert_same_tree, key, Golden};
use std::collections::BTreeMap;

/// The spec's `ExplicitMLP`: a list of submodules.
#[module]
pub struct ExplicitMlp {
    pub features: Vec<i64>,
    #[setup]
    layers: Vec<nn::Dense>,
}

#[module]
impl ExplicitMlp {
    fn setup(&self) -> ExplicitMlpSetup {
        ExplicitMlpSetup { layers: self.features.iter().map(|&f| nn::Dense::new(f)).collect() }
    }

    pub fn call(&self, cx: &mut Scope, inputs: &Tensor) -> Result<Tensor> {
        let mut x = inputs.shallow_clone();
        for (i, lyr) in self.layers.iter().enumerate() {
            x = lyr.call(cx, &x)?;
            if i != self.layers.len() - 1 {
                x = x.relu();
            }
        }
        Ok(x)
    }
}

/// The spec's "setup vs compact" MLP.
#[module]
pub struct Mlp {
    #[setup]
    dense1: nn::Dense,
    #[setup]
    dense2: nn::Dense,
}

#[module]
impl Mlp {
    fn setup(&self) -> MlpSetup {
        MlpSetup { dense1: nn::Dense::new(32), dense2: nn::Dense::new(32) }
    }

    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let x = self.dense1.call(cx, x)?.relu();
        self.dense2.call(cx, &x)
    }
}

#[module]
pub struct Encoder {
    pub latents: i64,
}

#[module]
impl Encoder {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        // Constructed first, as Python evaluates `nn.Dense(latents)(…)`: it is `Dense_0`.
        let out = nn::Dense::new(self.latents);
        let h = nn::Dense::new(8).call(cx, x)?.relu();
        out.call(cx, &h)
    }
}

#[module]
pub struct Decoder;

#[module]
impl Decoder {
    #[compact]
    pub fn call(&self, cx: &mut Scope, z: &Tensor) -> Result<Tensor> {
        nn::Dense::new(5).call(cx, z)
    }
}

/// The spec's AutoEncoder: `call` and `generate` share the submodules of `setup`.
#[module]
pub struct AutoEncoder {
    #[module(default = 3)]
    pub latents: i64,
    #[setup]
    encoder: Encoder,
    #[setup]
    decoder: Decoder,
}

#[module]
impl AutoEncoder {
    fn setup(&self) -> AutoEncoderSetup {
        AutoEncoderSetup { encoder: Encoder::new(self.latents), decoder: Decoder::new() }
    }

    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let z = self.encoder.call(cx, x)?;
        self.decoder.call(cx, &z)
    }

    pub fn generate(&self, cx: &mut Scope, z: &Tensor) -> Result<Tensor> {
        Ok(self.decoder.call(cx, z)?.sigmoid())
    }
}

/// A map of submodules (`blocks_{key}`) and params declared in `setup`.
#[module]
pub struct Blocks {
    #[setup]
    blocks: BTreeMap<&'static str, nn::Dense>,
    #[setup]
    scale: Tensor,
    #[setup]
    offset: Tensor,
}

#[module]
impl Blocks {
    fn setup(&self, cx: &mut Scope) -> Result<BlocksSetup> {
        Ok(BlocksSetup {
            blocks: BTreeMap::from([("a", nn::Dense::new(4)), ("b", nn::Dense::new(5))]),
            scale: cx.param("scale", nn::initializers::normal(1.0), &[5])?,
            offset: cx.param("offset", nn::initializers::zeros(), &[5])?,
        })
    }

    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let h = self.blocks["a"].call(cx, x)?.relu();
        Ok(self.blocks["b"].call(cx, &h)? * self.scale + self.offset)
    }

    pub fn project(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        Ok(self.blocks["a"].call(cx, x)? * 2.0)
    }
}

/// `setup` and a `#[compact]` method in one module.
#[module]
pub struct SetupAndCompact {
    #[setup]
    dense: nn::Dense,
}

#[module]
impl SetupAndCompact {
    fn setup(&self) -> SetupAndCompactSetup {
        SetupAndCompactSetup { dense: nn::Dense::new(4) }
    }

    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let h = self.dense.call(cx, x)?.relu();
        nn::Dense::new(2).call(cx, &h)
    }
}

/// A compact parent calling two methods of one setup child.
#[module]
pub struct Outer;

#[module]
impl Outer {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let ae = AutoEncoder::new().latents(2);
        let a = ae.call(cx, x)?;
        Ok(a + ae.generate(cx, &x.narrow(1, 0, 2))?)
    }
}

/// `get_variable`/`put_variable` and the module's own `variables` inside a method.
#[module]
pub struct Stats;

#[module]
impl Stats {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let y = nn::Dense::new(2).call(cx, x)?;
        let total =
            cx.get_variable("stats", "total").unwrap_or_else(|| Tensor::zeros([], (Kind::Float, x.device())));
        cx.put_variable("stats", "total", total + x.sum(Kind::Float))?;
        let own = cx.variables();
        let kernel = own.tensor(&["params", "Dense_0", "kernel"]).expect("Dense_0 ran");
        let total = own.tensor(&["stats", "total"]).expect("just put");
        Ok(y * kernel.sum(Kind::Float) + total)
    }
}

/// The transfer-learning guide's shape: a backbone declared in `setup`.
#[module]
pub struct Transfer {
    #[setup]
    backbone: AutoEncoder,
    #[setup]
    head: nn::Dense,
}

#[module]
impl Transfer {
    fn setup(&self) -> TransferSetup {
        TransferSetup { backbone: AutoEncoder::new().latents(2), head: nn::Dense::new(3) }
    }

    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let h = self.backbone.call(cx, x)?;
        self.head.call(cx, &h)
    }
}

/// `get_variable`/`put_variable` and `cx.variables()` against Flax's `Stats`.
fn variables_get_put_and_own_variables_match_flax(g: &Golden) {
    let c = g.case("stats");
    let x = c.input("x");
    let v = Stats::new().init(key(), &x).unwrap();
    assert_same_tree("stats: init", &v, &c.variables());
    let (y, updated) =
        Stats::new().apply_with(&c.variables(), ApplyOptions::new().mutable("stats"), &x).unwrap();
    assert_close("stats: output", &y, &c.output());
    assert_same_tree("stats: updated", &updated, &c.updated());
}

/// `bind(variables).backbone.unbind()` against Flax's.
fn a_setup_submodule_unbinds_with_its_variables_as_in_flax(g: &Golden) {
    let c = g.case("unbind");
    let x = c.input("x");
    let model = Transfer::new();
    assert_same_tree("unbind: init", &model.init(key(), &x).unwrap(), &c.variables());
    let mut bound = model.bind(c.variables(), ApplyOptions::new());
    let (backbone, variables) = bound.unbind_setup_submodule(|s| &s.backbone).unwrap();
    assert_same_tree("unbind: backbone variables", &variables, &c.dict("backbone_variables"));
    assert_close("unbind: backbone output", &backbone.apply(&variables, &x).unwrap(), &c.output());
    assert_eq!(Transfer::params(&c.variables()).unwrap().backbone.encoder.dense_1.kernel.size(), [4, 8]);
}

#[test]
fn a_submodule_field_unbinds_with_its_variables() {
    #[module]
    pub struct Holder {
        #[submodule]
        pub backbone: Encoder,
    }
    #[module]
    impl Holder {
        pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
            self.backbone.call(cx, x)
        }
    }
    let x = Tensor::ones([2, 4], (Kind::Float, Device::Cpu));
    let model = Holder::new(Encoder::new(3));
    let v = model.init(key(), &x).unwrap();
    let (encoder, own) =
        model.bind(v.clone(), ApplyOptions::new()).unbind_submodule(|m| &m.backbone).unwrap();
    let mut names: Vec<&str> = own.get_dict("params").unwrap().keys().collect();
    names.sort_unstable();
    assert_eq!(names, ["Dense_0", "Dense_1"]);
    assert_close("unbound encoder", &encoder.apply(&own, &x).unwrap(), &model.apply(&v, &x).unwrap());
}

#[test]
fn setup_runs_once_per_bound_module_and_lazily() {
    // A param drawn in `setup` is drawn once: two methods of one bound module see one value,
    // and a setup submodule that no method calls gets no params (Flax's laziness).
    let x = Tensor::ones([2, 4], (Kind::Float, Device::Cpu));
    let v = Blocks::new().init(key(), &x).unwrap();
    let mut bound = Blocks::new().bind(v.clone(), ApplyOptions::new());
    let a = bound.run(|m, cx| m.call(cx, &x)).unwrap();
    let b = bound.run(|m, cx| m.call(cx, &x)).unwrap();
    assert_close("same setup, same output", &a, &b);
    let (_, only_a) = Blocks::new().init_method(key(), |m, cx| m.project(cx, &x)).unwrap();
    let mut params: Vec<&str> = only_a.get_dict("params").unwrap().keys().collect();
    params.sort_unstable();
    assert_eq!(params, ["blocks_a", "offset", "scale"]);
}

#[test]
fn setup_modules_match_flax() {
    let g = Golden::load("module_setup");
    let c = g.case("explicit_mlp");
    let x = c.input("x");
    let m = ExplicitMlp::new(vec![3, 4, 5]);
    c.check(|| m.init(key(), &x), |v| m.apply(v, &x));

    let c = g.case("mlp");
    c.check(|| Mlp::new().init(key(), &x), |v| Mlp::new().apply(v, &x));

    let ae = AutoEncoder::new();
    let c = g.case("autoencoder");
    c.check(|| ae.init(key(), &x), |v| ae.apply(v, &x));
    let c = g.case("autoencoder_generate");
    let z = c.input("z");
    c.check(
        || ae.init(key(), &x),
        |v| Ok(ae.apply_method(v, ApplyOptions::new(), |m, cx| m.generate(cx, &z))?.0),
    );

    let c = g.case("blocks");
    c.check(|| Blocks::new().init(key(), &x), |v| Blocks::new().apply(v, &x));
    let c = g.case("blocks_project");
    let y = c.input("y");
    c.check(
        || Blocks::new().init(key(), &x),
        |v| Ok(Blocks::new().apply_method(v, ApplyOptions::new(), |m, cx| m.project(cx, &y))?.0),
    );

    let c = g.case("setup_and_compact");
    c.check(|| SetupAndCompact::new().init(key(), &x), |v| SetupAndCompact::new().apply(v, &x));

    let c = g.case("outer");
    c.check(|| Outer::new().init(key(), &x), |v| Outer::new().apply(v, &x));

    variables_get_put_and_own_variables_match_flax(&g);
    a_setup_submodule_unbinds_with_its_variables_as_in_flax(&g);
    g.assert_all_seen();
}

/// A layer applied to one tensor: the bound of the generic setup module below.
pub trait TensorLayer: Module + 'static {
    fn forward(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor>;
}

impl TensorLayer for nn::Dense {
    fn forward(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        self.call(cx, x)
    }
}

/// A generic `setup` module: `times` copies of a layer, one after the other. Its setup
/// struct is generic in the layer type; the const parameter, which no `#[setup]` field uses,
/// stays on the module only.
#[module]
pub struct Repeat<L: TensorLayer, const SKIP: bool> {
    pub template: L,
    pub times: usize,
    #[setup]
    layers: Vec<L>,
}

#[module]
impl<L: TensorLayer, const SKIP: bool> Repeat<L, SKIP> {
    fn setup(&self) -> RepeatSetup<L> {
        RepeatSetup { layers: (0..self.times).map(|_| self.template.copy()).collect() }
    }

    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let mut y = x.shallow_clone();
        for layer in self.layers.iter() {
            let out = layer.forward(cx, &y)?;
            y = if SKIP { out + y } else { out };
        }
        Ok(y)
    }
}

#[test]
fn a_generic_setup_module_names_and_runs_its_fields_as_a_plain_one() {
    // `Repeat<Dense>` of three `Dense(3)` equals the spec's ExplicitMLP of (3, 3, 3) without
    // its ReLUs: the same names (`layers_0`, …) and, from the same key, the same params.
    let x = Tensor::ones([2, 3], (Kind::Float, Device::Cpu));
    let repeat = Repeat::<nn::Dense, false>::new(nn::Dense::new(3), 3);
    let v = repeat.init(key(), &x).unwrap();
    let plain = ExplicitMlp::new(vec![3, 3, 3]).init(key(), &x).unwrap();
    assert_same_tree("generic setup: params", &v, &plain);
    let mut y = x.shallow_clone();
    for i in 0..3 {
        let p = |name: &str| v.tensor(&["params", &format!("layers_{i}"), name]).unwrap().shallow_clone();
        y = y.matmul(&p("kernel")) + p("bias");
    }
    assert_close("generic setup: output", &repeat.apply(&v, &x).unwrap(), &y);
    let skip = Repeat::<nn::Dense, true>::new(nn::Dense::new(3), 1);
    let v = skip.init(key(), &x).unwrap();
    let p = |name: &str| v.tensor(&["params", "layers_0", name]).unwrap().shallow_clone();
    assert_close(
        "generic setup: skip",
        &skip.apply(&v, &x).unwrap(),
        &(x.matmul(&p("kernel")) + p("bias") + &x),
    );
}
