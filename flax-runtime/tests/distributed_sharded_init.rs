//! Sharded initialisation on 2 processes on loopback Gloo: `eval_shape` gives the
//! parameters' shapes (placeholders that own no memory) and the same spec as the full
//! parameters, plain or annotated with `with_partitioning`; `Fsdp::init` gives each rank the
//! same bytes as `Fsdp::shard` of the full init (units, a unit called twice, a layer outside
//! any unit, a whole `TrainState`), and training from it gives one process's losses.

// This test uses only some of the helpers.
#[allow(dead_code)]
mod workers;

use flax::distributed::{eval_shape, fully_shard, Fsdp, Gathering, ProcessGroup, ShardingSpec};
use flax::nn::{self, initializers::lecun_normal};
use flax::optax;
use flax::prelude::*;
use flax::training::TrainState;
use flax::tree::{self, Tree};
use std::time::Duration;
use workers::join_or_spawn;

/// Three layers as `fully_shard` units (the second called twice: one set of parameters,
/// shared) and a head outside any unit; with `annotated`, the units' kernels are
/// `with_partitioning` boxes naming the mesh axis "data" on their output axis.
#[module]
struct Tower {
    #[module(default = false)]
    annotated: bool,
}

#[module]
impl Tower {
    #[compact]
    fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let dense = |features| match self.annotated {
            true => {
                nn::Dense::new(features).kernel_init(nn::with_partitioning(lecun_normal(), (None, "data")))
            }
            false => nn::Dense::new(features),
        };
        let first = fully_shard(dense(32));
        let shared = fully_shard(dense(32));
        let x = first.call(cx, x, |dense, cx, x: Tensor| Ok(dense.call(cx, &x)?.tanh()))?;
        let x = shared.call(cx, &x, |dense, cx, x: Tensor| Ok(dense.call(cx, &x)?.tanh()))?;
        let x = shared.call(cx, &x, |dense, cx, x: Tensor| Ok(dense.call(cx, &x)?.tanh()))?;
        nn::Dense::new(6).call(cx, &x)
    }
}

fn input() -> Tensor {
    Tensor::ones([2, 12], (Kind::Float, Device::Cpu))
}

fn init(tower: &Tower) -> Result<Variables> {
    tower.init(PRNGKey::new(3), &input())
}

fn params(variables: &Variables) -> FrozenDict {
    variables.get_dict("params").cloned().expect("init creates params")
}

/// Whether two trees have the same structure and the same bytes, leaf by leaf.
fn same_bytes<T: Tree>(a: &T, b: &T) -> bool {
    let (a, b) = (tree::leaves_with_path(a), tree::leaves_with_path(b));
    a.len() == b.len()
        && a.iter().zip(&b).all(|((pa, ta), (pb, tb))| {
            pa == pb && ta.size() == tb.size() && ta.kind() == tb.kind() && ta.equal(tb)
        })
}

#[test]
fn eval_shape_gives_the_shapes_and_the_spec_of_the_full_init() -> Result<()> {
    for annotated in [false, true] {
        let tower = Tower { annotated, ..Tower::new() };
        let full = params(&init(&tower)?);
        let shapes = params(&eval_shape(|| init(&tower))?);
        let leaves = tree::leaves_with_path(&shapes);
        assert_eq!(leaves.len(), tree::num_leaves(&full));
        for ((path, shape), (full_path, leaf)) in leaves.iter().zip(tree::leaves_with_path(&full)) {
            assert_eq!((path, shape.size(), shape.kind()), (&full_path, leaf.size(), leaf.kind()));
            // A broadcast zero: no memory of the leaf's size.
            assert!(shape.stride().iter().all(|&s| s == 0), "{path:?} owns memory");
        }
        let spec = |p: &FrozenDict| match annotated {
            true => ShardingSpec::from_partition_spec(p, &nn::get_partition_spec(p), "data"),
            false => ShardingSpec::largest_divisible_axis(p, 2),
        };
        assert_eq!(spec(&shapes)?, spec(&full)?);
    }
    Ok(())
}

/// `fsdp.init` and `fsdp.shard` of the full init, for the tower's variables and for a whole
/// train state, must agree byte for byte on every rank.
fn sharded_init_equals_sharding_the_full_init(group: &ProcessGroup, annotated: bool) -> Result<()> {
    let tower = Tower { annotated, ..Tower::new() };
    let shapes = params(&eval_shape(|| init(&tower))?);
    let spec = match annotated {
        true => ShardingSpec::from_partition_spec(&shapes, &nn::get_partition_spec(&shapes), "data")?,
        false => ShardingSpec::largest_divisible_axis(&shapes, group.world_size())?,
    };
    let split = spec.leaves().iter().filter(|leaf| leaf.axis.is_some()).count();
    assert!(split >= 2, "the test needs split leaves inside the units, got {split}");
    let fsdp = Fsdp::new(group, spec)?;
    let full = init(&tower)?;
    let pieces = fsdp.init(|| init(&tower))?;
    assert!(same_bytes(&pieces, &fsdp.shard(&full)?), "variables, annotated: {annotated}");
    assert!(!same_bytes(&pieces, &full), "nothing was cut");

    let state = |variables: Variables| TrainState::create((), params(&variables), optax::adam(1e-3));
    let sharded_state = fsdp.init(|| state(init(&tower)?))?;
    assert!(same_bytes(&sharded_state, &fsdp.shard(&state(full)?)?), "train state, annotated: {annotated}");
    Ok(())
}

fn kernel<'v>(variables: &'v Variables, unit: &str) -> &'v Tensor {
    variables.tensor(&["params", unit, "kernel"]).expect("a kernel")
}

/// While `init` runs, the units' parameters are already pieces (or placeholders), and the
/// head, outside any unit, is whole until `init` returns.
fn units_cut_their_parameters_as_they_return(fsdp: &Fsdp<'_>, tower: &Tower) -> Result<()> {
    let world = fsdp.group().world_size();
    let seen = |v: &Variables| -> (Vec<i64>, Vec<i64>, Vec<i64>) {
        (kernel(v, "Dense_0").size(), kernel(v, "Dense_1").size(), kernel(v, "Dense_2").size())
    };
    let mut inside = None;
    fsdp.init(|| init(tower).inspect(|v| inside = Some(seen(v))))?;
    let shard = |path: &str| {
        let leaf = fsdp.spec().leaves().iter().find(|l| l.path.join("/") == path).expect("a leaf");
        leaf.shard_shape(world)
    };
    assert_eq!(inside, Some((shard("Dense_0/kernel"), shard("Dense_1/kernel"), vec![32, 6])));
    let mut inside = None;
    eval_shape(|| init(tower).inspect(|v| inside = Some(v.clone())))?;
    let inside = inside.expect("init ran");
    assert!(kernel(&inside, "Dense_1").stride().iter().all(|&s| s == 0), "a unit's kernel owns memory");
    assert!(
        kernel(&inside, "Dense_2").stride().iter().any(|&s| s != 0),
        "the head is cut before init returns"
    );
    Ok(())
}

#[test]
fn sharded_init_equals_sharding_the_full_init_on_two_processes() -> Result<()> {
    let test = "sharded_init_equals_sharding_the_full_init_on_two_processes";
    let Some(group) = join_or_spawn(test, 2, Duration::from_secs(120)) else {
        return Ok(());
    };
    let tower = Tower::new();
    let shapes = params(&eval_shape(|| init(&tower))?);
    units_cut_their_parameters_as_they_return(
        &Fsdp::new(&group, ShardingSpec::largest_divisible_axis(&shapes, 2)?)?,
        &tower,
    )?;
    sharded_init_equals_sharding_the_full_init(&group, false)?;
    sharded_init_equals_sharding_the_full_init(&group, true)
}

#[test]
fn a_group_of_one_inits_the_full_parameters() -> Result<()> {
    let test = "a_group_of_one_inits_the_full_parameters";
    let Some(group) = join_or_spawn(test, 1, Duration::from_secs(60)) else {
        return Ok(());
    };
    let tower = Tower::new();
    let shapes = params(&eval_shape(|| init(&tower))?);
    let fsdp = Fsdp::new(&group, ShardingSpec::largest_divisible_axis(&shapes, 1)?)?;
    assert!(same_bytes(&fsdp.init(|| init(&tower))?, &init(&tower)?));
    Ok(())
}

/// The mean squared output of the tower on `x`.
fn loss(tower: &Tower, params: &FrozenDict, x: &Tensor) -> Result<Tensor> {
    let variables = flax::frozen_dict! { "params": params };
    Ok(tower.apply(&variables, x)?.square().mean(Kind::Float))
}

#[test]
fn training_from_a_sharded_init_gives_one_process_losses() -> Result<()> {
    let test = "training_from_a_sharded_init_gives_one_process_losses";
    let Some(group) = join_or_spawn(test, 2, Duration::from_secs(120)) else {
        return Ok(());
    };
    let tower = Tower::new();
    tch::manual_seed(5);
    let batches: Vec<Tensor> = (0..5).map(|_| Tensor::randn([8, 12], (Kind::Float, Device::Cpu))).collect();

    let mut state = TrainState::create((), params(&init(&tower)?), optax::adam(1e-2))?;
    let mut expected = Vec::new();
    for x in &batches {
        let (value, grads) = flax::value_and_grad(&state.params, |p| loss(&tower, p, x))?;
        expected.push(value.double_value(&[]));
        state = state.apply_gradients(grads)?;
    }

    let shapes = params(&eval_shape(|| init(&tower))?);
    // The units' leaves split along their last axis (32 features); the head, outside any
    // unit, replicated, as per-unit gathering requires.
    let spec = ShardingSpec::from_fn(&shapes, |path, leaf| {
        (path.to_strings()[0] != "Dense_2").then(|| leaf.dim() - 1)
    })?;
    let fsdp = Fsdp::new(&group, spec)?.gathering(Gathering::PerUnit);
    let pieces = params(&fsdp.init(|| init(&tower))?);
    let mut sharded = fsdp.train_state_from_pieces((), pieces, optax::adam(1e-2))?;
    for (x, expected) in batches.iter().zip(&expected) {
        let local = group.shard(x)?;
        let (value, grads) = fsdp.value_and_grad(&sharded.params, |p| loss(&tower, p, &local))?;
        let value = group.pmean(&value)?.double_value(&[]);
        assert!((value - expected).abs() < 1e-5, "loss {value} against one process's {expected}");
        sharded = sharded.apply_gradients(grads)?;
    }
    Ok(())
}
