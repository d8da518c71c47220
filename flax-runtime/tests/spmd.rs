//! Partitioning metadata (Flax's `flax.linen.spmd` / `flax.core.meta`) against the pjit
//! guide's printouts, computed by real Flax in `scripts/golden/spmd_vectors.py`.

use flax::core::meta::{self, AxisMetadata};
use flax::nn::initializers::{lecun_normal, xavier_normal};
use flax::nn::spmd::{self, PartitionSpec, SpecTree};
use flax::prelude::*;
use flax::serialization::{from_bytes, to_bytes};
use flax::{Error, Value};

fn data(name: &str) -> String {
    let path = format!("{}/tests/data/spmd/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn data_bytes(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/spmd/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn ones(shape: &[i64]) -> Tensor {
    Tensor::ones(shape, (Kind::Float, Device::Cpu))
}

/// The guide's `jax.tree_map(jnp.shape, tree)`: arrays replaced by their shape tuples, boxes
/// kept around them, dict keys sorted (JAX's dict flattening order).
fn shapes(value: &Value) -> Value {
    match value {
        Value::Tensor(t) => Value::List(t.size().into_iter().map(Value::from).collect()),
        Value::Dict(d) => Value::Dict(shape_dict(d)),
        Value::Boxed(b) => Value::Boxed(Box::new(b.replace_boxed(shapes(b.unbox())))),
        other => other.clone(),
    }
}

fn shape_dict(d: &FrozenDict) -> FrozenDict {
    let mut entries: Vec<(String, Value)> = d.iter().map(|(k, v)| (k.to_owned(), shapes(v))).collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries.into_iter().collect()
}

/// The guide's `DotReluDot` (L5545-5567): two partitioned params, activations constrained.
#[module]
pub struct DotReluDot {
    pub depth: i64,
}

#[module]
impl DotReluDot {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let features = x.size()[1];
        let w1 =
            cx.param("W1", nn::with_partitioning(xavier_normal(), (None, "model")), &[features, self.depth])?;
        let y = x.matmul(&w1).relu();
        let y = spmd::with_sharding_constraint(&y, &PartitionSpec::new(("data", "model")))?;
        let w2 =
            cx.param("W2", nn::with_partitioning(xavier_normal(), ("model", None)), &[self.depth, features])?;
        let z = y.matmul(&w2);
        spmd::with_sharding_constraint(&z, &PartitionSpec::new(("data", None)))
    }
}

/// The guide's `MLP` with `use_scan=True` (L5583-5600).
#[module]
pub struct Mlp {
    pub num_layers: i64,
    pub depth: i64,
}

#[module]
impl Mlp {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let (x, ()) = nn::scan(DotReluDot::new(self.depth))
            .length(self.num_layers)
            .variable_axes([("params", 0)])
            .split_rngs([("params", true)])
            .metadata_params([(nn::PARTITION_NAME, None)])
            .call(cx, x.shallow_clone(), &(), |layer, cx, x, ()| Ok((layer.call(cx, &x)?, ())))?;
        Ok(x)
    }
}

/// The guide's `LogicalDotReluDot` (L6120-6145).
#[module]
pub struct LogicalDotReluDot {
    pub depth: i64,
}

#[module]
impl LogicalDotReluDot {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let features = x.size()[1];
        let init = nn::with_logical_partitioning(xavier_normal(), ("embed", "hidden"));
        let w1 = cx.param("W1", init, &[features, self.depth])?;
        let y = nn::with_logical_constraint(&x.matmul(&w1).relu(), ("batch", "hidden"))?;
        let init = nn::with_logical_partitioning(xavier_normal(), ("hidden", "embed"));
        let w2 = cx.param("W2", init, &[self.depth, features])?;
        nn::with_logical_constraint(&y.matmul(&w2), ("batch", "embed"))
    }
}

/// The guide's `LogicalMLP` (L6147-6163), the new axis named `layer`.
#[module]
pub struct LogicalMlp {
    pub num_layers: i64,
    pub depth: i64,
}

#[module]
impl LogicalMlp {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let (x, ()) = nn::scan(LogicalDotReluDot::new(self.depth))
            .length(self.num_layers)
            .variable_axes([("params", 0)])
            .split_rngs([("params", true)])
            .metadata_params([(nn::PARTITION_NAME, "layer")])
            .call(cx, x.shallow_clone(), &(), |layer, cx, x, ()| Ok((layer.call(cx, &x)?, ())))?;
        Ok(x)
    }
}

/// A scan that forgets `metadata_params` around partitioned params.
#[module]
pub struct Unnamed {}

#[module]
impl Unnamed {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let (x, ()) = nn::scan(DotReluDot::new(3))
            .length(2)
            .variable_axes([("params", 0)])
            .split_rngs([("params", true)])
            .call(cx, x.shallow_clone(), &(), |layer, cx, x, ()| Ok((layer.call(cx, &x)?, ())))?;
        Ok(x)
    }
}

// The guide's sizes: BATCH, LAYERS, DEPTH = 8, 4, 1024.
fn guide_params(logical: bool) -> (FrozenDict, Tensor) {
    let x = ones(&[8, 1024]);
    let variables = if logical {
        LogicalMlp::new(4, 1024).init(PRNGKey::new(0), &x).unwrap()
    } else {
        Mlp::new(4, 1024).init(PRNGKey::new(0), &x).unwrap()
    };
    (variables.get_dict("params").unwrap().clone(), x)
}

/// The guide's non-logical model, initialized once for all its printouts (at the guide's sizes
/// an init draws 8M normals).
#[test]
fn mlp_printouts_are_the_guides() {
    let (params, x) = guide_params(false);

    // L5827-5847 (`state_spec`: `params` and Adam's `mu`/`nu`).
    assert_eq!(format!("{:?}\n", nn::get_partition_spec(&params)), data("mlp_params_spec.txt"));
    let (adam, _) = flax::optax::GradientTransformation::init(&flax::optax::adam(1e-3), &params).unwrap();
    assert_eq!(format!("{:?}\n", nn::get_partition_spec(&adam.mu)), data("mlp_mu_spec.txt"));
    assert_eq!(format!("{:?}\n", nn::get_partition_spec(&adam.nu)), data("mlp_mu_spec.txt"));
    // The guide's own text, L5833-5836.
    assert!(format!("{:?}", nn::get_partition_spec(&params)).contains(
        "    ScanDotReluDot_0: {\n        W1: PartitionSpec(None, None, 'model'),\n        W2: PartitionSpec(None, 'model', None),\n    },"
    ));

    // L5886-5906: the shapes of the initialized state's boxes.
    assert_eq!(format!("{:?}\n", shape_dict(&params)), data("mlp_params_shapes.txt"));

    // L5938-5940: the stored variable is a `Partitioned` box; its value is the raw array.
    let w1 = params.get_path(&["ScanDotReluDot_0", "W1"]).unwrap();
    let Some(AxisMetadata::Partitioned(boxed)) = w1.as_boxed() else {
        panic!("not a Partitioned box: {w1:?}")
    };
    assert_eq!(boxed.value.as_tensor().unwrap().size(), [4, 1024, 1024]);
    assert_eq!(boxed.names, [None, None, Some("model".to_owned())]);

    // L5985-5995: a tree map over boxed params keeps the boxes.
    let layers = params.get_dict("ScanDotReluDot_0").unwrap();
    let diff = flax::tree::tree_zip_map(layers, layers, |a, b| Ok(a - b)).unwrap();
    assert_eq!(format!("{:?}\n", shape_dict(&diff)), data("diff_shapes.txt"));
    let diff_w1 = diff.get("W1").unwrap().as_boxed().unwrap().unbox().as_tensor().unwrap();
    assert_eq!(diff_w1.size(), [4, 1024, 1024]);

    // `apply` takes the boxed variables init returned, and the unboxed ones, alike.
    let boxed_vars = FrozenDict::new().copy([("params", Value::Dict(params))]);
    let unboxed_vars = meta::unbox(&boxed_vars);
    assert!(unboxed_vars.get_path(&["params", "ScanDotReluDot_0", "W1"]).unwrap().as_boxed().is_none());
    let model = Mlp::new(4, 1024);
    let y = model.apply(&boxed_vars, &x).unwrap();
    assert_eq!(y.size(), [8, 1024]);
    assert!(y.equal(&model.apply(&unboxed_vars, &x).unwrap()));
}

/// L6193-6202 (logical specs), L6243-6252 (mapped to the mesh by the guide's rules), L6300
/// (the same as the non-logical model's), L6316-6324 (the logical boxes).
#[test]
fn logical_mlp_printouts_are_the_guides() {
    let (params, _) = guide_params(true);
    let logical = nn::get_partition_spec(&params);
    assert_eq!(format!("{logical:?}\n"), data("logical_mlp_params_spec.txt"));
    assert_eq!(format!("{:?}\n", shape_dict(&params)), data("logical_mlp_params_shapes.txt"));
    let (adam, _) = flax::optax::GradientTransformation::init(&flax::optax::adam(1e-3), &params).unwrap();
    assert_eq!(format!("{:?}\n", nn::get_partition_spec(&adam.mu)), data("logical_mlp_mu_spec.txt"));

    let rules = [("batch", "data"), ("hidden", "model")];
    let mesh = nn::logical_to_mesh_with(&logical, rules).unwrap();
    assert_eq!(format!("{mesh:?}\n"), data("logical_mlp_mesh_spec.txt"));
    // The same through scoped rules (Flax's `with nn.logical_axis_rules(rules):`).
    let scoped = nn::logical_axis_rules(rules, || nn::logical_to_mesh(&logical)).unwrap();
    assert!(scoped == mesh);
    assert!(nn::get_logical_axis_rules().is_empty(), "the scope restores the rules");

    // L6300: `state_spec.params['ScanDotReluDot_0'] == logical_state_spec.params['ScanLogicalDotReluDot_0']`,
    // the former being L5833-5836.
    let plain = SpecTree::Dict(
        [
            ("W1".to_owned(), SpecTree::Spec(PartitionSpec::new((None, None, "model")))),
            ("W2".to_owned(), SpecTree::Spec(PartitionSpec::new((None, "model", None)))),
        ]
        .into_iter()
        .collect(),
    );
    assert!(mesh.get_path(&["ScanLogicalDotReluDot_0"]) == Some(&plain));

    // `apply` reads the logical boxes through the scan ('layer' removed and checked).
    let variables = FrozenDict::new().copy([("params", Value::Dict(params))]);
    assert_eq!(LogicalMlp::new(4, 1024).apply(&variables, &ones(&[8, 1024])).unwrap().size(), [8, 1024]);
}

/// The worked example of `logical_to_mesh_axes` (L17600-17640).
#[test]
fn logical_to_mesh_axes_is_flaxs_worked_example() {
    let rules = [("batch", "X"), ("features", "X"), ("heads", "Y"), ("batch", "Z")];
    let spec = nn::logical_to_mesh_axes_with(("batch", "length", "heads", "features"), rules).unwrap();
    assert_eq!(format!("{spec:?}\n"), data("logical_to_mesh_axes.txt"));
    let twice = nn::logical_to_mesh_axes_with(("batch", "batch"), rules);
    assert!(matches!(twice, Err(Error::Value(m)) if m.contains("occur more than once")));
}

/// The Axis Metadata FLIP's `Dense` (L28266-28275), and its bytes: `to_bytes` of the boxed
/// variables equals `flax.serialization.to_bytes`, and restores into a boxed target.
#[test]
fn partitioned_dense_is_the_flips_and_serializes_as_flax() {
    let dense = nn::Dense::new(8).kernel_init(nn::with_partitioning(lecun_normal(), (None, "data")));
    let variables = dense.init(PRNGKey::new(0), &ones(&[4])).unwrap();
    assert_eq!(format!("{:?}\n", shape_dict(&variables)), data("dense_shapes.txt"));
    let bytes = to_bytes(&variables).unwrap();
    assert_eq!(bytes, data_bytes("dense_partitioned.msgpack"));
    let restored = from_bytes(&variables, &data_bytes("dense_partitioned.msgpack")).unwrap();
    let kernel = restored.get_path(&["params", "kernel"]).unwrap();
    assert_eq!(kernel.as_boxed().unwrap().names(), [None, Some("data".to_owned())]);
    assert!(kernel.as_tensor().unwrap().equal(variables.tensor(&["params", "kernel"]).unwrap()));
    // An unboxed target does not take the boxed state dict ({kernel: {value: …}}).
    assert!(from_bytes(&meta::unbox(&variables), &bytes).is_err());
}

/// `tabulate` shows a box as Flax 0.12.8 does: `float32[4,8] P(None, data)`.
#[test]
fn tabulate_shows_the_partition_names() {
    let dense = nn::Dense::new(8).kernel_init(nn::with_partitioning(lecun_normal(), (None, "data")));
    assert_eq!(dense.tabulate(PRNGKey::new(0), &ones(&[4])).unwrap(), data("dense_tabulate.txt"));
}

/// A small scanned model with values: Flax's init (stacked by scan, split RNGs) and bytes, and
/// its output.
#[test]
fn scanned_partitioned_params_have_flaxs_values_and_bytes() {
    let model = Mlp::new(3, 4);
    let x = ones(&[2, 5]);
    let variables = model.init(PRNGKey::new(1), &x).unwrap();
    assert_eq!(to_bytes(&variables).unwrap(), data_bytes("small_mlp.msgpack"));
    let y = model.apply(&variables, &x).unwrap();
    let expected = from_bytes(&y, &data_bytes("small_mlp_output.msgpack")).unwrap();
    assert!(y.allclose(&expected, 1e-5, 1e-5, false));
}

/// `PartitioningUnspecifiedError` when a scan stacks boxes without a `partition_name`.
#[test]
fn scan_without_partition_name_is_flaxs_error() {
    let err = Unnamed::new().init(PRNGKey::new(0), &ones(&[2, 3])).unwrap_err();
    assert!(matches!(err, Error::PartitioningUnspecified { .. }), "{err}");
    assert!(err.to_string().starts_with(
        "Trying to transform a Partitioned variable but \"partition_name\" is not specified in metadata_params: Partitioned(value=Array("
    ));
}

/// `add_axis` pads the names with `None` up to the index, `remove_axis` undoes it and checks
/// the name (Flax's `Partitioned.add_axis`/`remove_axis`).
#[test]
fn add_and_remove_axis_are_flaxs() {
    let boxed: Value =
        meta::Partitioned { value: ones(&[2]).into(), names: vec![None, Some("data".into())], mesh: None }
            .into();
    let params: meta::MetadataParams = [(nn::PARTITION_NAME.to_owned(), Some("layers".to_owned()))].into();
    let added = meta::add_axis(&boxed, 3, &params).unwrap();
    assert_eq!(added.as_boxed().unwrap().names(), [None, Some("data".into()), None, Some("layers".into())]);
    let removed = meta::remove_axis(&meta::add_axis(&boxed, 1, &params).unwrap(), 1, &params).unwrap();
    assert_eq!(removed.as_boxed().unwrap().names(), boxed.as_boxed().unwrap().names());
    assert!(meta::remove_axis(&boxed, 0, &params).is_err());
}

/// On one process the constraints change nothing: they check and return their input.
#[test]
fn constraints_check_and_return_the_input() {
    let x = ones(&[2, 3]);
    let y = spmd::with_sharding_constraint(&x, &PartitionSpec::new(("data", None))).unwrap();
    assert_eq!(y.data_ptr(), x.data_ptr());
    assert!(spmd::with_sharding_constraint(&x, &PartitionSpec::new(("a", "b", "c"))).is_err());
    // No rules: returned as is, whatever the names (Flax's early return).
    assert!(nn::with_logical_constraint(&x, ("batch", "batch", "x")).is_ok());
    let rules = [("batch", "data")];
    nn::logical_axis_rules(rules, || {
        assert_eq!(nn::with_logical_constraint(&x, ("batch", "embed")).unwrap().data_ptr(), x.data_ptr());
        assert!(nn::with_logical_constraint(&x, ("batch", "batch")).is_err());
        let raise = spmd::LogicalConstraintOptions {
            fallback: spmd::RulesFallback::RaiseError,
            ..Default::default()
        };
        let err = spmd::with_logical_constraint_with(&x, ("batch", "embed"), &raise).unwrap_err();
        assert_eq!(err.to_string(), "Axis names ('batch', 'embed') did not match a rule");
    });
}

/// The typed params view gives the raw arrays of boxed params.
#[test]
fn typed_params_see_the_raw_arrays() {
    let x = ones(&[2, 3]);
    let variables = DotReluDot::new(4).init(PRNGKey::new(0), &x).unwrap();
    let params = DotReluDot::params(&variables).unwrap();
    assert_eq!(params.w1.size(), [3, 4]);
    assert!(params.w1.equal(variables.tensor(&["params", "W1"]).unwrap()));
    assert!(variables.get_path(&["params", "W1"]).unwrap().as_boxed().is_some());
}

/// `set_logical_axis_rules` sets this thread's rules (Flax keeps them thread-local).
#[test]
fn set_and_get_logical_axis_rules() {
    nn::set_logical_axis_rules([("embed", None), ("hidden", Some("model"))]);
    assert_eq!(
        nn::get_logical_axis_rules(),
        [("embed".to_owned(), None), ("hidden".to_owned(), Some("model".to_owned()))]
    );
    assert_eq!(nn::logical_to_mesh_axes(("embed", "hidden")).unwrap(), PartitionSpec::new((None, "model")));
    std::thread::spawn(|| assert!(nn::get_logical_axis_rules().is_empty())).join().unwrap();
    let saved = nn::get_logical_axis_rules();
    nn::set_logical_axis_rules(spmd::LogicalRules::new());
    assert!(nn::get_logical_axis_rules().is_empty());
    nn::set_logical_axis_rules(saved.clone());
    assert_eq!(nn::get_logical_axis_rules(), saved);
    nn::set_logical_axis_rules(spmd::LogicalRules::new());
}

/// A model without annotations has no box anywhere.
#[test]
fn unannotated_models_have_no_boxes() {
    let variables = nn::Dense::new(3).init(PRNGKey::new(0), &ones(&[2])).unwrap();
    assert!(!meta::has_axis_metadata(&Value::Dict(variables.clone())));
    assert_eq!(
        format!("{:?}", nn::get_partition_spec(&variables)),
        "FrozenDict({\n    params: {\n        kernel: PartitionSpec(),\n        bias: PartitionSpec(),\n    },\n})"
    );
}

/// An ensemble of partitioned `Dense` layers under `nn::vmap`.
#[module]
pub struct Ensemble {}

#[module]
impl Ensemble {
    #[compact]
    pub fn call(&self, cx: &mut Scope, xs: &Tensor) -> Result<Tensor> {
        let dense = nn::Dense::new(3).kernel_init(nn::with_partitioning(lecun_normal(), (None, "data")));
        nn::vmap(dense)
            .variable_axes([("params", 0)])
            .split_rngs([("params", true)])
            .in_axes(0)
            .metadata_params([(nn::PARTITION_NAME, "members")])
            .call(cx, xs, |dense, cx, x: Tensor| dense.call(cx, &x))
    }
}

/// `nn::vmap` inserts the mapped axis' name (`members`) as Flax's does, with Flax's values; the
/// batched `apply` reads the boxed stack.
#[test]
fn vmap_names_the_mapped_axis() {
    let xs = ones(&[2, 4]);
    let variables = Ensemble::new().init(PRNGKey::new(2), &xs).unwrap();
    assert_eq!(format!("{:?}\n", shape_dict(&variables)), data("ensemble_shapes.txt"));
    assert_eq!(to_bytes(&variables).unwrap(), data_bytes("ensemble.msgpack"));
    assert_eq!(Ensemble::new().apply(&variables, &xs).unwrap().size(), [2, 3]);
}

/// The boxes print as Flax's (`Partitioned(value=Array(…), names=…, mesh=None)`), and an
/// initializer wrapped with rules boxes its values with them.
#[test]
fn boxes_print_as_flaxs() {
    use flax::core::initializer::Initializer;
    let expected = data("box_reprs.txt");
    let expected: Vec<&str> = expected.lines().collect();
    let plain = nn::with_partitioning(nn::initializers::ones(), (None::<&str>,)).box_value(ones(&[2]).into());
    assert_eq!(format!("{plain:?}"), expected[0]);
    let logical = nn::with_logical_partitioning(nn::initializers::ones(), ("a",)).rules([("a", "data")]);
    assert_eq!(format!("{:?}", logical.box_value(ones(&[2]).into())), expected[1]);
    let rules: Vec<(String, Option<String>)> = vec![("a".into(), Some("data".into())), ("b".into(), None)];
    let boxed: Value = meta::LogicallyPartitioned {
        value: ones(&[1, 2]).into(),
        names: vec![Some("a".into()), None],
        mesh: None,
        rules: Some(rules),
    }
    .into();
    assert_eq!(format!("{boxed:?}"), expected[2]);
}

/// The guide's `train_step` on boxed params (L6030-6045): gradients come back boxed, Adam's
/// states are boxed, and the step equals the same step on the unboxed params.
#[test]
fn training_on_boxed_params_equals_training_on_raw_ones() {
    use flax::training::TrainState;
    let model = Mlp::new(3, 4);
    let x = ones(&[2, 5]);
    let variables = model.init(PRNGKey::new(1), &x).unwrap();
    let boxed = variables.get_dict("params").unwrap().clone();
    let raw = meta::unbox(&boxed);
    let loss = |p: &FrozenDict| -> Result<Tensor> {
        let vars = FrozenDict::new().copy([("params", Value::Dict(p.clone()))]);
        Ok(model.apply(&vars, &x)?.sum(Kind::Float))
    };
    let mut boxed_state = TrainState::create((), boxed, flax::optax::adam(1e-3)).unwrap();
    let mut raw_state = TrainState::create((), raw, flax::optax::adam(1e-3)).unwrap();
    for _ in 0..3 {
        let grads = flax::grad(&boxed_state.params, |p| loss(p)).unwrap();
        assert!(grads.get_path(&["ScanDotReluDot_0", "W1"]).unwrap().as_boxed().is_some());
        boxed_state = boxed_state.apply_gradients(grads).unwrap();
        let grads = flax::grad(&raw_state.params, |p| loss(p)).unwrap();
        raw_state = raw_state.apply_gradients(grads).unwrap();
    }
    let boxed_params = meta::unbox(&boxed_state.params);
    for (path, leaf) in flax::tree::leaves_with_path(&raw_state.params) {
        assert!(leaf.equal(boxed_params.tensor(&path).unwrap()), "{path:?}");
    }
    assert_eq!(format!("{:?}\n", nn::get_partition_spec(&boxed_state.params)).lines().count(), 6);
    assert!(boxed_state.params.get_path(&["ScanDotReluDot_0", "W2"]).unwrap().as_boxed().is_some());
}
