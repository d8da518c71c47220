//! Every runtime error of the module system, triggered and checked for the facts it carries.

use flax::prelude::*;
use flax::{Error, NameKind, Variable};

fn x() -> Tensor {
    Tensor::ones([2, 3], (Kind::Float, Device::Cpu))
}

#[module]
pub struct Clashing {
    pub case: i64,
}

#[module]
impl Clashing {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let name = String::from("bar");
        match self.case {
            0 => {
                let _ = cx.param("bar", nn::initializers::zeros(), &[1])?;
                cx.variable("stats", name, |_| Ok(Tensor::zeros([1], (Kind::Float, Device::Cpu))))?;
            }
            1 => {
                let _ = cx.param("bar", nn::initializers::zeros(), &[1])?;
                let _ = nn::Dense::new(2).name(name).call(cx, x)?;
            }
            _ => {
                let _ = cx.param("bar", nn::initializers::zeros(), &[1])?;
                let _ = cx.param(name, nn::initializers::zeros(), &[1])?;
            }
        }
        Ok(x.shallow_clone())
    }
}

#[test]
fn one_namespace_for_params_variables_and_submodules() {
    for (case, kind) in [(0, NameKind::Variable), (1, NameKind::Submodule), (2, NameKind::Param)] {
        match Clashing::new(case).init(PRNGKey::new(0), &x()) {
            Err(Error::NameInUse { kind: k, name, module }) => {
                assert_eq!((k, name.as_str(), module.as_str()), (kind, "bar", "Clashing"));
            }
            other => panic!("case {case}: expected NameInUse, got {other:?}"),
        }
    }
    let err = Clashing::new(2).init(PRNGKey::new(0), &x()).unwrap_err();
    assert_eq!(err.to_string(), "Could not create param \"bar\" in Module Clashing: Name in use.");
}

#[module]
pub struct Reader {
    pub what: i64,
}

#[module]
impl Reader {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        match self.what {
            0 => {
                cx.variable("stats", "count", |_| Ok(Tensor::zeros([1], (Kind::Float, Device::Cpu))))?;
            }
            1 => {
                cx.make_rng("dropout")?;
            }
            _ => {
                let _ = cx.param("w", nn::initializers::zeros(), &[1])?;
            }
        }
        Ok(x.shallow_clone())
    }
}

#[test]
fn missing_collections_variables_params_and_rngs() {
    let stats = Reader::new(0);
    let v = stats.init(PRNGKey::new(0), &x()).unwrap();
    match stats.apply(&FrozenDict::new(), &x()) {
        Err(Error::ScopeCollectionNotFound { collection, name, scope }) => {
            assert_eq!((collection.as_str(), name.as_str(), scope.as_str()), ("stats", "count", "/"));
        }
        other => panic!("expected ScopeCollectionNotFound, got {other:?}"),
    }
    let other_var = v.copy([(
        "stats",
        flax::Value::Dict(
            FrozenDict::new()
                .copy([("other", flax::Value::Tensor(Tensor::zeros([1], (Kind::Float, Device::Cpu))))]),
        ),
    )]);
    match stats.apply(&other_var, &x()) {
        Err(Error::ScopeVariableNotFound { name, collection, scope }) => {
            assert_eq!((name.as_str(), collection.as_str(), scope.as_str()), ("count", "stats", "/"));
        }
        other => panic!("expected ScopeVariableNotFound, got {other:?}"),
    }
    match Reader::new(1).init(PRNGKey::new(0), &x()) {
        Err(Error::InvalidRng { module, scope, stream }) => {
            assert_eq!((module.as_str(), scope.as_str(), stream.as_str()), ("Reader", "/", "dropout"))
        }
        other => panic!("expected InvalidRng, got {other:?}"),
    }
    let rngs = flax::Rngs::from([("params", PRNGKey::new(0)), ("dropout", PRNGKey::new(1))]);
    assert!(Reader::new(1).init(rngs, &x()).is_ok());
    let params = Reader::new(2);
    let v = params.init(PRNGKey::new(0), &x()).unwrap();
    let (_, p) = v.pop("params").unwrap();
    let wrong = FrozenDict::new().copy([("params", flax::Value::Dict(FrozenDict::new().copy([("v", p)])))]);
    match params.apply(&wrong, &x()) {
        Err(Error::ScopeParamNotFound { name, scope }) => {
            assert_eq!((name.as_str(), scope.as_str()), ("w", "/"))
        }
        other => panic!("expected ScopeParamNotFound, got {other:?}"),
    }
}

#[module]
pub struct Leaky {}

#[module]
impl Leaky {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let count = cx.variable("stats", "count", |_| Ok(Tensor::zeros([1], (Kind::Float, Device::Cpu))))?;
        Inner::new(count).call(cx, x)
    }
}

#[module]
pub struct Inner {
    pub handle: Variable,
}

#[module]
impl Inner {
    #[compact]
    pub fn call(&self, cx: &mut Scope, _x: &Tensor) -> Result<Tensor> {
        self.handle.value(cx)
    }
}

#[test]
fn a_variable_handle_is_valid_only_in_its_module() {
    match Leaky::new().init(PRNGKey::new(0), &x()) {
        Err(Error::InvalidScope { scope }) => assert_eq!(scope, "/Inner_0"),
        other => panic!("expected InvalidScope, got {other:?}"),
    }
}

// Setup-style module: submodules live in fields; a submodule made in a plain method is an error.
#[module]
pub struct Setup {
    #[submodule]
    pub encoder: nn::Dense,
}

#[module]
impl Setup {
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        self.encoder.call(cx, x)
    }

    pub fn sneaky(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let dense = nn::Dense::new(2);
        dense.call(cx, x)
    }
}

#[test]
fn submodules_outside_compact_methods_are_rejected() {
    let model = Setup::new(nn::Dense::new(4));
    let v = model.init(PRNGKey::new(0), &x()).unwrap();
    assert!(v.tensor(&["params", "encoder", "kernel"]).is_some());
    match model.apply_method(&v, flax::ApplyOptions::new(), |m, cx| m.sneaky(cx, &x())) {
        Err(Error::AssignSubModule { module }) => assert_eq!(module, "Dense"),
        other => panic!("expected AssignSubModule, got {other:?}"),
    }
    assert!(Error::AssignSubModule { module: "Dense".into() }
        .to_string()
        .starts_with("Submodule Dense must be defined"));
}

#[test]
fn bind_and_unbind() {
    let model = Setup::new(nn::Dense::new(4));
    let v = model.init(PRNGKey::new(0), &x()).unwrap();
    let mut bound = model.bind(v.clone(), flax::ApplyOptions::new());
    let y = bound.run(|m, cx| m.encoder.call(cx, &x())).unwrap();
    assert!(y.equal(&model.apply(&v, &x()).unwrap()));
    let again = bound.run(|m, cx| m.call(cx, &x())).unwrap();
    assert!(
        again.equal(&bound.run(|m, cx| m.call(cx, &x())).unwrap()),
        "a bound module can be called repeatedly"
    );
    let (module, variables) = bound.unbind();
    assert_eq!(module.encoder.features, 4);
    assert!(variables
        .tensor(&["params", "encoder", "kernel"])
        .unwrap()
        .equal(v.tensor(&["params", "encoder", "kernel"]).unwrap()));
}

#[module]
pub struct BadMatmul {}

#[module]
impl BadMatmul {
    #[compact]
    pub fn call(&self, _cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_matmul(&Tensor::ones([7, 2], (Kind::Float, Device::Cpu)))?)
    }
}

/// Runs `BadMatmul` and a dropout that asks for a stream nobody gave, one level down.
#[module]
pub struct Outer {}

#[module]
impl Outer {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor, drop: bool) -> Result<Tensor> {
        if drop {
            return nn::Dropout::new(0.5).call(cx, x, Some(false));
        }
        BadMatmul::new().call(cx, x)
    }
}

#[test]
fn errors_inside_a_submodule_name_its_path() {
    let v = Variables::new();
    match Outer::new().apply(&v, &x(), false) {
        Err(e @ Error::TorchIn { .. }) => {
            let text = e.to_string();
            assert!(text.starts_with("/BadMatmul_0: libtorch: mat1 and mat2"), "{text}");
        }
        other => panic!("expected a libtorch error at /BadMatmul_0, got {other:?}"),
    }
    match Outer::new().apply(&v, &x(), true) {
        Err(e @ Error::InvalidRng { .. }) => assert_eq!(
            e.to_string(),
            "Dropout at /Dropout_0 needs PRNG for \"dropout\": pass an RNG stream named \"dropout\" in `rngs`"
        ),
        other => panic!("expected InvalidRng, got {other:?}"),
    }
}

#[test]
fn bad_shapes_are_typed_errors_not_panics() {
    let scalar = Tensor::from(1.0f32);
    match nn::Dense::new(3).init(PRNGKey::new(0), &scalar) {
        Err(Error::Shape { scope, message }) => {
            assert_eq!(scope, "/");
            assert!(message.contains("scalar"), "{message}");
        }
        other => panic!("expected Shape, got {other:?}"),
    }
    match BadMatmul::new().init(PRNGKey::new(0), &x()) {
        Err(e @ Error::TorchIn { .. }) => {
            // One line naming the module: libtorch's message, none of its C++ backtrace.
            let text = e.to_string();
            assert!(text.starts_with("/: libtorch: mat1 and mat2 shapes cannot be multiplied ("), "{text}");
            assert!(!text.contains('\n') && !text.contains("Exception raised"), "{text}");
            // The `Debug` form too, which a `main` returning `flax::Result` prints.
            let debug = format!("{e:?}");
            assert!(!debug.contains("Exception raised") && debug.len() < 300, "{debug}");
        }
        other => panic!("expected a libtorch error, got {other:?}"),
    }
    // Outside any module alike, naming the leaf (an optimizer given updates of the wrong shape).
    let params = flax::frozen_dict! { "w": Tensor::zeros([3], (Kind::Float, Device::Cpu)) };
    let updates = flax::frozen_dict! { "w": Tensor::zeros([10], (Kind::Float, Device::Cpu)) };
    match flax::optax::apply_updates(params, &updates) {
        Err(e @ Error::TorchAtLeaf { .. }) => {
            assert!(
                e.to_string().starts_with("at leaf 'w': libtorch: The size of tensor a (3) must match"),
                "{e}"
            );
            let debug = format!("{e:?}");
            assert!(!debug.contains("Exception raised") && debug.len() < 400, "{debug}");
        }
        other => panic!("expected a libtorch error, got {other:?}"),
    }
}

#[test]
fn a_bound_compact_module_can_be_called_repeatedly() {
    let model = Reader::new(2);
    let v = model.init(PRNGKey::new(0), &x()).unwrap();
    let mut bound = model.bind(v, flax::ApplyOptions::new());
    for _ in 0..3 {
        assert!(bound.run(|m, cx| m.call(cx, &x())).unwrap().equal(&x()));
    }
}
