//! The Module API around `init` against Flax (`scripts/golden/module_api.py`): `copy` with
//! changed attributes, `module_paths`, `lazy_init` and its `LazyInitError`.

mod layers_golden;

use flax::prelude::*;
use flax::{Error, ShapeDtypeStruct, Value};
use layers_golden::{assert_same_tree, key, Golden};

/// `copy` inside a compact method: a new auto-name, changed attributes, or a given name.
#[module]
pub struct Copies;

#[module]
impl Copies {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let d = nn::Dense::new(3);
        let e = nn::Dense { features: 4, ..d.copy() };
        let f = d.copy().name("named");
        let y = Tensor::cat(&[d.call(cx, x)?, e.call(cx, x)?, f.call(cx, x)?], -1);
        nn::Dense::new(5).call(cx, &y)
    }
}

#[module]
pub struct Encoder;

#[module]
impl Encoder {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let outer = nn::Dense::new(2);
        let inner = nn::Dense::new(3);
        let h = inner.call(cx, x)?;
        outer.call(cx, &h)
    }
}

#[module]
pub struct Mlp {
    #[setup]
    enc: Encoder,
    #[setup]
    head: nn::Dense,
}

#[module]
impl Mlp {
    fn setup(&self) -> MlpSetup {
        MlpSetup { enc: Encoder::new(), head: nn::Dense::new(4) }
    }

    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let h = self.enc.call(cx, x)?;
        self.head.call(cx, &h)
    }
}

#[module]
pub struct Top;

#[module]
impl Top {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let y = Mlp::new().call(cx, x)?;
        let z = Mlp::new().name("second").call(cx, x)?;
        nn::Dense::new(1).call(cx, &(y + z))
    }
}

/// Conv, BatchNorm in training mode (no statistics update during `init`), Dense.
#[module]
pub struct Lazy;

#[module]
impl Lazy {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let x = nn::Conv::new(4, [3, 3]).call(cx, x)?;
        let x = nn::BatchNorm::new().call(cx, &x, Some(false))?;
        let n = x.size()[0];
        nn::Dense::new(2).call(cx, &x.reshape([n, -1]))
    }
}

/// The spec's `LazyInitError` example: a param computed from the input's values.
#[module]
pub struct DependsOnValues;

#[module]
impl DependsOnValues {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let k = cx.param_fn("kernel", |_key| Ok(x.copy()))?;
        Ok(x * k)
    }
}

#[test]
fn copy_gives_flax_names_and_attributes() {
    let g = Golden::load("module_api");
    let c = g.case("copy");
    let x = c.input("x");
    c.check(|| Copies::new().init(key(), &x), |v| Copies::new().apply(v, &x));
    for case in ["module_paths", "lazy_init"] {
        let _ = g.case(case);
    }
    g.assert_all_seen();
}

#[test]
fn module_paths_lists_every_module_in_flax_order() {
    let g = Golden::load("module_api");
    let c = g.case("module_paths");
    let paths = Top::new().module_paths(key(), &c.input("x")).unwrap();
    let expected = c.dict("paths");
    let text = |i: usize, field: &str| match expected.get_path(&[i.to_string().as_str(), field]) {
        Some(Value::Scalar(flax::Scalar::Str(s))) => s.clone(),
        other => panic!("golden paths[{i}].{field}: {other:?}"),
    };
    let flax_paths: Vec<(String, String)> =
        (0..expected.len()).map(|i| (text(i, "path"), text(i, "type"))).collect();
    let ours: Vec<(String, String)> =
        paths.iter().map(|(p, m)| (p.clone(), m.type_name.to_owned())).collect();
    assert_eq!(ours, flax_paths);
    assert!(paths["Mlp_0/head"].repr.contains("features = 4"), "{}", paths["Mlp_0/head"]);
}

#[test]
fn lazy_init_from_shapes_equals_flax() {
    let g = Golden::load("module_api");
    let c = g.case("lazy_init");
    let x = ShapeDtypeStruct::new([2, 5, 5, 3], Kind::Float);
    let v = Lazy::new().lazy_init(key(), &x.placeholder()).unwrap();
    assert_same_tree("lazy_init", &v, &c.variables());
}

#[test]
fn lazy_init_refuses_variables_computed_from_placeholder_values() {
    let x = ShapeDtypeStruct::new([8, 4], Kind::Float).placeholder();
    match DependsOnValues::new().lazy_init(key(), &x) {
        Err(Error::LazyInit { path }) => assert_eq!(path, "params/kernel"),
        other => panic!("expected a LazyInit error, got {other:?}"),
    }
    // With a real input it is an ordinary init.
    let real = Tensor::ones([8, 4], (Kind::Float, Device::Cpu));
    assert!(DependsOnValues::new().lazy_init(key(), &real).is_ok());
}

#[test]
fn a_clone_is_the_same_module_and_a_copy_another() {
    #[module]
    pub struct Twice;
    #[module]
    impl Twice {
        #[compact]
        pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
            let d = nn::Dense::new(3);
            let shared = d.clone();
            let other = d.copy();
            let y = d.call(cx, x)? + shared.call(cx, x)?;
            Ok(y + other.call(cx, x)?)
        }
    }
    let x = Tensor::ones([1, 2], (Kind::Float, Device::Cpu));
    let v = Twice::new().init(key(), &x).unwrap();
    let names: Vec<&str> = v.get_dict("params").unwrap().keys().collect();
    assert_eq!(names, ["Dense_0", "Dense_1"]);
}
