//! The sharded mode (`Fsdp`) on 2 and 4 processes on loopback Gloo, gathering the whole model
//! or unit by unit (`fully_shard`): the same per-step losses and final parameters as unsharded
//! data-parallel training and as one process, each rank holding about `1/N` of the parameters
//! and optimizer state, per-unit gathering holding one unit's full parameters at a time
//! (measured), with and without prefetch, checkpoints in one process's format, a spec that
//! differs across ranks refused with a typed error, and a killed or hung rank stopping the
//! others' prefetching steps with a typed error within the timeout.

mod workers;

use flax::distributed::{fully_shard, Fsdp, Gathering, ProcessGroup, ProcessGroupOptions, ShardingSpec};
use flax::nn::{self, initializers::lecun_normal, spmd::SpecTree};
use flax::optax::{self, losses::softmax_cross_entropy_with_integer_labels, Adam};
use flax::prelude::*;
use flax::training::checkpoints::{
    restore_checkpoint, save_checkpoint, RestoreCheckpointOptions, SaveCheckpointOptions,
};
use flax::training::TrainState;
use flax::tree::{self, Tree};
use flax::Error;
use std::time::Duration;
use workers::{free_port, join_or_spawn, sigstop, spawn_and_disrupt, until_error};

/// A small MLP: 16 features, 64 hidden, 10 classes; with `annotated`, its kernels are
/// `with_partitioning` boxes naming the mesh axis "data" (the hidden axis of both); with
/// `units`, each layer is a `fully_shard` unit (the same parameters and names).
#[module]
struct Mlp {
    #[module(default = false)]
    annotated: bool,
    #[module(default = false)]
    units: bool,
}

#[module]
impl Mlp {
    #[compact]
    fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let (hidden, out) = match self.annotated {
            true => (
                nn::Dense::new(64).kernel_init(nn::with_partitioning(lecun_normal(), (None, "data"))),
                nn::Dense::new(10).kernel_init(nn::with_partitioning(lecun_normal(), ("data", None))),
            ),
            false => (nn::Dense::new(64), nn::Dense::new(10)),
        };
        if !self.units {
            let x = hidden.call(cx, x)?.relu();
            return out.call(cx, &x);
        }
        let x = fully_shard(hidden).call(cx, x, |dense, cx, x: Tensor| Ok(dense.call(cx, &x)?.relu()))?;
        fully_shard(out).call(cx, &x, |dense, cx, x: Tensor| dense.call(cx, &x))
    }
}

/// The model a run applies: the plain MLP, or its layers as `fully_shard` units for
/// per-unit gathering (every run of one comparison applies the same one).
fn model(gathering: Gathering) -> Mlp {
    Mlp { units: gathering == Gathering::PerUnit, ..Mlp::new() }
}

type State = TrainState<Mlp, FrozenDict, Adam>;

const STEPS: usize = 30;
const GLOBAL_BATCH: i64 = 64;
const TOLERANCE: f64 = 1e-5;

/// 30 global batches of 64 examples, the same on every rank (a seeded generator).
fn global_batches() -> Vec<(Tensor, Tensor)> {
    tch::manual_seed(11);
    (0..STEPS)
        .map(|_| {
            let x = Tensor::randn([GLOBAL_BATCH, 16], (Kind::Float, Device::Cpu));
            (x, Tensor::randint(10, [GLOBAL_BATCH], (Kind::Int64, Device::Cpu)))
        })
        .collect()
}

/// The MLP's parameters from `seed`.
fn init_params(seed: u64) -> FrozenDict {
    init_mlp(Mlp::new(), seed)
}

/// The annotated MLP's parameters from `seed` (boxed kernels).
fn init_annotated(seed: u64) -> FrozenDict {
    init_mlp(Mlp { annotated: true, ..Mlp::new() }, seed)
}

fn init_mlp(mlp: Mlp, seed: u64) -> FrozenDict {
    let variables = mlp.init(PRNGKey::new(seed), &Tensor::ones([1, 16], (Kind::Float, Device::Cpu))).unwrap();
    variables.get_dict("params").cloned().unwrap()
}

/// How a test initialises the parameters from a seed.
type Init = fn(u64) -> FrozenDict;

/// The mean cross-entropy of `model` on a batch.
fn loss(model: &Mlp, params: &FrozenDict, x: &Tensor, y: &Tensor) -> Result<Tensor> {
    let variables = flax::frozen_dict! { "params": params };
    let logits = model.apply(&variables, x)?;
    Ok(softmax_cross_entropy_with_integer_labels(&logits, y)?.mean(Kind::Float))
}

fn create_state(params: FrozenDict) -> State {
    TrainState::create(Mlp::new(), params, optax::adam(1e-3)).unwrap()
}

/// One process, the whole batch: the per-step losses and the final state.
fn one_process(model: &Mlp, init: Init, batches: &[(Tensor, Tensor)]) -> (Vec<f64>, State) {
    let mut state = create_state(init(0));
    let mut losses = Vec::new();
    for (x, y) in batches {
        let (value, grads) = flax::value_and_grad(&state.params, |p| loss(model, p, x, y)).unwrap();
        losses.push(value.double_value(&[]));
        state = state.apply_gradients(grads).unwrap();
    }
    (losses, state)
}

/// Unsharded data parallel: each rank its slice, gradients and losses `pmean`ed.
fn data_parallel(
    group: &ProcessGroup,
    model: &Mlp,
    init: Init,
    batches: &[(Tensor, Tensor)],
) -> (Vec<f64>, State) {
    let mut state = group.replicate(&create_state(init(group.rank() as u64))).unwrap();
    let mut losses = Vec::new();
    for batch in batches {
        let (x, y) = group.shard(&(batch.0.shallow_clone(), batch.1.shallow_clone())).unwrap();
        let (value, grads) = flax::value_and_grad(&state.params, |p| loss(model, p, &x, &y)).unwrap();
        losses.push(group.pmean(&value).unwrap().double_value(&[]));
        state = state.apply_gradients(group.pmean(&grads).unwrap()).unwrap();
    }
    (losses, state)
}

/// The sharded mode: the data-parallel loop with `fsdp.value_and_grad`; the state holds this
/// rank's pieces.
fn sharded(fsdp: &Fsdp<'_>, model: &Mlp, init: Init, batches: &[(Tensor, Tensor)]) -> (Vec<f64>, State) {
    let group = fsdp.group();
    // Each rank initialises with its own seed: `train_state` starts every rank from rank 0's.
    let mut state = fsdp.train_state(Mlp::new(), &init(group.rank() as u64), optax::adam(1e-3)).unwrap();
    let mut losses = Vec::new();
    for batch in batches {
        let (x, y) = group.shard(&(batch.0.shallow_clone(), batch.1.shallow_clone())).unwrap();
        let (value, grads) = fsdp.value_and_grad(&state.params, |p| loss(model, p, &x, &y)).unwrap();
        losses.push(group.pmean(&value).unwrap().double_value(&[]));
        state = state.apply_gradients(grads).unwrap();
    }
    (losses, state)
}

fn max_difference<T: Tree>(a: &T, b: &T) -> f64 {
    let diffs = tree::tree_zip_map(a, b, |x, y| Ok((x - y).abs().max())).unwrap();
    tree::leaves(&diffs).iter().map(|d| d.double_value(&[])).fold(0.0, f64::max)
}

fn max_loss_difference(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// The bytes of a tree's tensors: what a rank holds.
fn bytes<T: Tree>(tree: &T) -> i64 {
    tree::leaves(tree).iter().map(|t| t.numel() as i64 * t.kind().elt_size_in_bytes() as i64).sum()
}

/// How a sharded run gathers: the whole model, or unit by unit with or without prefetch.
const MODES: [(Gathering, bool); 3] =
    [(Gathering::WholeModel, false), (Gathering::PerUnit, false), (Gathering::PerUnit, true)];

/// Trains with `spec` on every rank, gathering as `mode` says (with prefetch or not), and
/// checks the sharded run against one process's and unsharded data parallel's, its memory per
/// rank, and a checkpoint round trip.
fn sharded_equals_unsharded(
    group: &ProcessGroup,
    name: &str,
    init: Init,
    spec: ShardingSpec,
    (gathering, prefetch): (Gathering, bool),
) {
    let (rank, world) = (group.rank(), group.world_size());
    let name = format!("{name}, {gathering:?}, prefetch {prefetch}");
    let model = model(gathering);
    let batches = global_batches();
    let (one_losses, one) = one_process(&model, init, &batches);
    let before = group.comm_stats();
    let (dp_losses, dp) = data_parallel(group, &model, init, &batches);
    let dp_bytes = (group.comm_stats() - before).bytes / STEPS as u64;
    let fsdp = Fsdp::new(group, spec).unwrap().gathering(gathering).prefetch(prefetch);
    let before = group.comm_stats();
    let (losses, state) = sharded(&fsdp, &model, init, &batches);
    // After the first step, every unit gather but the step's first was prefetched: the two
    // units' forward gathers and their backward ones.
    let prefetched = if prefetch && gathering == Gathering::PerUnit { 3 } else { 0 };
    assert_eq!(fsdp.prefetched_gathers(), prefetched, "{name}");
    let fsdp_bytes = (group.comm_stats() - before).bytes / STEPS as u64;
    eprintln!(
        "{name}, rank {rank} of {world}: bytes sent per step: data parallel {dp_bytes}, sharded {fsdp_bytes}"
    );

    let full = fsdp.gather(&state).unwrap();
    let vs_dp = (max_loss_difference(&losses, &dp_losses), max_difference(&full.params, &dp.params));
    let vs_one = (max_loss_difference(&losses, &one_losses), max_difference(&full.params, &one.params));
    let opt_vs_dp = max_difference(&full.opt_state, &dp.opt_state);
    eprintln!(
        "{name}, rank {rank} of {world}: max |loss - data parallel's| {:e}, |params - dp| {:e}, |opt_state - dp| {opt_vs_dp:e}; \
         vs one process: loss {:e}, params {:e}",
        vs_dp.0, vs_dp.1, vs_one.0, vs_one.1
    );
    for (what, d) in [("loss vs dp", vs_dp.0), ("params vs dp", vs_dp.1), ("opt_state vs dp", opt_vs_dp)] {
        assert!(d <= TOLERANCE, "{name}: {what}: {d}");
    }
    for (what, d) in [("loss vs one process", vs_one.0), ("params vs one process", vs_one.1)] {
        assert!(d <= TOLERANCE, "{name}: {what}: {d}");
    }

    // What this rank holds: its pieces of the parameters and of Adam's mu and nu, exactly
    // the shard shapes the spec gives (float32, three copies), which is total/N plus the
    // replicated and padded leaves' share.
    let owned = bytes(&state.params) + bytes(&state.opt_state);
    let pieces: i64 =
        fsdp.spec().leaves().iter().map(|leaf| leaf.shard_shape(world).iter().product::<i64>()).sum();
    assert_eq!(owned, 3 * 4 * pieces, "{name}: rank {rank} holds what the spec says");
    let total = bytes(&dp.params) + bytes(&dp.opt_state);
    let share = owned as f64 / (total as f64 / world as f64);
    eprintln!("{name}, rank {rank} of {world}: owns {owned} of {total} bytes: {share:.4} of total/{world}");
    assert!(share <= 1.08, "{name}: rank {rank} owns {owned} of {total} bytes");

    checkpoint_round_trip(&fsdp, init, &state, &dp);
}

/// Rank 0 writes the gathered state as one process's checkpoint; it restores unsharded (into
/// a data-parallel state) and, sharded again, into every rank's pieces.
fn checkpoint_round_trip(fsdp: &Fsdp<'_>, init: Init, state: &State, unsharded: &State) {
    let group = fsdp.group();
    let dir = std::env::temp_dir().join(format!("flax-fsdp-{}", std::env::var("MASTER_PORT").unwrap()));
    let full = fsdp.gather(state).unwrap();
    if group.rank() == 0 {
        save_checkpoint(&dir, &full, full.step, &SaveCheckpointOptions::default().overwrite(true)).unwrap();
    }
    group.barrier().unwrap();
    let options = RestoreCheckpointOptions::default();
    let restored = restore_checkpoint(&dir, create_state(init(99)), &options).unwrap();
    assert_eq!(restored.step, STEPS as i64);
    assert!(max_difference(&restored, unsharded) <= TOLERANCE);
    let pieces = fsdp.shard(&restore_checkpoint(&dir, create_state(init(98)), &options).unwrap()).unwrap();
    assert_eq!(max_difference(&pieces, state), 0.0);
    group.barrier().unwrap();
    if group.rank() == 0 {
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn sharded_training_on_two_processes_equals_unsharded() {
    let test = "sharded_training_on_two_processes_equals_unsharded";
    let Some(group) = join_or_spawn(test, 2, Duration::from_secs(120)) else {
        return;
    };
    let spec = ShardingSpec::largest_divisible_axis(&init_params(0), 2).unwrap();
    // Every leaf splits: 64 and 10 are even.
    assert!(spec.leaves().iter().all(|leaf| leaf.axis.is_some()));
    for mode in MODES {
        sharded_equals_unsharded(&group, "largest divisible axis", init_params, spec.clone(), mode);
    }
}

#[test]
fn sharded_training_on_four_processes_equals_unsharded() {
    let test = "sharded_training_on_four_processes_equals_unsharded";
    let Some(group) = join_or_spawn(test, 4, Duration::from_secs(120)) else {
        return;
    };
    let params = init_params(0);
    // The default rule keeps Dense_1's 10-element bias whole (4 does not divide 10).
    let spec = ShardingSpec::largest_divisible_axis(&params, 4).unwrap();
    let axes: Vec<_> = spec.leaves().iter().map(|leaf| (leaf.path.join("/"), leaf.axis)).collect();
    // Leaves in JAX's order: dict keys sorted.
    let expected = [
        ("Dense_0/bias", Some(0)),
        ("Dense_0/kernel", Some(1)),
        ("Dense_1/bias", None),
        ("Dense_1/kernel", Some(0)),
    ];
    assert_eq!(axes, expected.map(|(p, a)| (p.to_owned(), a)));
    for mode in MODES {
        sharded_equals_unsharded(&group, "largest divisible axis", init_params, spec.clone(), mode);
    }
    // Every leaf split along its last axis: Dense_1's 10 outputs padded to 12, 3 per rank.
    let last = ShardingSpec::from_fn(&params, |_, leaf| Some(leaf.dim() - 1)).unwrap();
    assert_eq!(last.leaves()[3].shard_shape(4), [64, 3]);
    for mode in MODES {
        sharded_equals_unsharded(&group, "last axis, padded", init_params, last.clone(), mode);
    }
}

#[test]
fn annotated_params_shard_as_their_partition_specs_say() {
    let test = "annotated_params_shard_as_their_partition_specs_say";
    let Some(group) = join_or_spawn(test, 2, Duration::from_secs(120)) else {
        return;
    };
    let params = init_annotated(0);
    let spec = ShardingSpec::from_partition_spec(&params, &nn::get_partition_spec(&params), "data").unwrap();
    let axes: Vec<_> = spec.leaves().iter().map(|leaf| (leaf.path.join("/"), leaf.axis)).collect();
    let expected = [
        ("Dense_0/bias", None),
        ("Dense_0/kernel/value", Some(1)),
        ("Dense_1/bias", None),
        ("Dense_1/kernel/value", Some(0)),
    ];
    assert_eq!(axes, expected.map(|(p, a)| (p.to_owned(), a)));
    for mode in MODES {
        sharded_equals_unsharded(&group, "partition specs", init_annotated, spec.clone(), mode);
    }
    // A spec tree without the boxed leaves' specs, and a mesh axis named twice, are refused.
    let plain = init_params(0);
    let (no_spec, twice) = (SpecTree::Dict(Default::default()), kernel_named(("data", "data")));
    for (params, specs, message) in [
        (&plain, &no_spec, "no spec for the leaf at Dense_0/bias"),
        (&twice, &nn::get_partition_spec(&twice), "names \"data\" twice"),
    ] {
        match ShardingSpec::from_partition_spec(params, specs, "data") {
            Err(Error::Value(m)) => assert!(m.contains(message), "{m}"),
            other => panic!("expected an error, got {other:?}"),
        }
    }
}

/// A `Dense` layer's parameters with its kernel's partition names `names`.
fn kernel_named(names: (&'static str, &'static str)) -> FrozenDict {
    let dense = nn::Dense::new(4).kernel_init(nn::with_partitioning(lecun_normal(), names));
    let variables = dense.init(PRNGKey::new(0), &Tensor::ones([1, 16], (Kind::Float, Device::Cpu))).unwrap();
    variables.get_dict("params").cloned().unwrap()
}

/// Six `Dense(256)` layers with `tanh`, each a `fully_shard` unit: the parameters are 98% kernels,
/// six equal units.
#[module]
struct Deep {}

/// The layers of [`Deep`] and their width.
const DEEP_LAYERS: usize = 6;
const DEEP_WIDTH: i64 = 256;

#[module]
impl Deep {
    #[compact]
    fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let mut x = x.shallow_clone();
        for _ in 0..DEEP_LAYERS {
            let dense = nn::Dense::new(DEEP_WIDTH);
            x = fully_shard(dense).call(cx, &x, |dense, cx, x: Tensor| Ok(dense.call(cx, &x)?.tanh()))?;
        }
        Ok(x)
    }
}

#[test]
fn per_unit_gathering_holds_one_units_parameters_at_a_time() {
    let test = "per_unit_gathering_holds_one_units_parameters_at_a_time";
    let Some(group) = join_or_spawn(test, 2, Duration::from_secs(120)) else {
        return;
    };
    let (rank, world) = (group.rank(), group.world_size());
    tch::manual_seed(5);
    let x = Tensor::randn([16, DEEP_WIDTH], (Kind::Float, Device::Cpu));
    let target = Tensor::randn([16, DEEP_WIDTH], (Kind::Float, Device::Cpu));
    let variables = Deep::new().init(PRNGKey::new(rank as u64), &x).unwrap();
    let params = variables.get_dict("params").cloned().unwrap();
    let spec = ShardingSpec::largest_divisible_axis(&params, world).unwrap();
    assert!(spec.leaves().iter().all(|leaf| leaf.axis.is_some()), "every leaf splits");
    let (x, target) = group.shard(&(x, target)).unwrap();
    let loss = |p: &FrozenDict| -> Result<Tensor> {
        let variables = flax::frozen_dict! { "params": p };
        Ok((Deep::new().apply(&variables, &x)? - &target).square().mean(Kind::Float))
    };
    let run = |gathering: Gathering, prefetch: bool| {
        let fsdp = Fsdp::new(&group, spec.clone()).unwrap().gathering(gathering).prefetch(prefetch);
        let mut state = fsdp.train_state((), &params, optax::adam(1e-3)).unwrap();
        let (mut losses, mut peaks, mut prefetched) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..3 {
            let (value, grads) = fsdp.value_and_grad(&state.params, loss).unwrap();
            losses.push(group.pmean(&value).unwrap().double_value(&[]));
            peaks.push(fsdp.peak_gathered_bytes());
            prefetched.push(fsdp.prefetched_gathers());
            state = state.apply_gradients(grads).unwrap();
        }
        (losses, peaks, prefetched, fsdp.gather(&state.params).unwrap())
    };
    let (whole_losses, whole_peaks, _, whole) = run(Gathering::WholeModel, false);
    let (unit_losses, unit_peaks, unprefetched, per_unit) = run(Gathering::PerUnit, false);
    let (pre_losses, pre_peaks, prefetched, pre) = run(Gathering::PerUnit, true);
    let unit = 4 * (DEEP_WIDTH * DEEP_WIDTH + DEEP_WIDTH) as u64; // one layer's float32 parameters
    let model = DEEP_LAYERS as u64 * unit;
    eprintln!(
        "rank {rank}: peak gathered bytes per step: whole model {whole_peaks:?}, per unit {unit_peaks:?}, \
         per unit with prefetch {pre_peaks:?} (one unit {unit}, the model {model}); gathers prefetched \
         {prefetched:?}; losses {whole_losses:?} vs {unit_losses:?} vs {pre_losses:?}"
    );
    assert!(max_loss_difference(&whole_losses, &unit_losses) <= TOLERANCE);
    assert!(max_difference(&whole, &per_unit) <= TOLERANCE);
    assert!(max_loss_difference(&unit_losses, &pre_losses) <= TOLERANCE);
    assert!(max_difference(&per_unit, &pre) <= TOLERANCE);
    // The first step records the order of the gathers; the next ones prefetch all of them
    // but the first (each unit's forward gather, then its backward one, in reverse).
    assert_eq!(unprefetched, [0, 0, 0]);
    assert_eq!(prefetched, [0, 2 * DEEP_LAYERS - 1, 2 * DEEP_LAYERS - 1]);
    // The gathered buffer and the joined leaves: twice what is gathered at once, freed
    // before the next gather.
    assert!(whole_peaks.iter().all(|&peak| peak == 2 * model), "{whole_peaks:?}");
    assert!(unit_peaks.iter().all(|&peak| peak == 2 * unit), "{unit_peaks:?}");
    // With prefetch, a unit's full parameters and the next unit's gathered buffer in flight
    // (two units), and, for the moment Gloo's thread takes to release a completed gather's
    // buffer, that buffer too: never more than three units.
    assert!(pre_peaks.iter().all(|&peak| (2 * unit..=3 * unit).contains(&peak)), "{pre_peaks:?}");
}

#[test]
fn a_sharding_spec_that_differs_across_ranks_is_a_typed_error() {
    let test = "a_sharding_spec_that_differs_across_ranks_is_a_typed_error";
    let Some(group) = join_or_spawn(test, 2, Duration::from_secs(60)) else {
        return;
    };
    let params = init_params(0);
    let spec = match group.rank() {
        0 => ShardingSpec::largest_divisible_axis(&params, 2).unwrap(),
        _ => ShardingSpec::from_fn(&params, |_, _| Some(0)).unwrap(),
    };
    let err = Fsdp::new(&group, spec).expect_err("the ranks' specs differ");
    let Error::TreeStructureMismatch { path, message } = &err else { panic!("{err:?}") };
    assert_eq!(path, "Dense_0/kernel split along axis 1");
    assert!(message.contains("rank 1 has `Dense_0/kernel split along axis 0: Float[16, 64]`"), "{message}");
    // The group is still usable: the check ran before any piece was exchanged.
    let same = Fsdp::new(&group, ShardingSpec::largest_divisible_axis(&params, 2).unwrap()).unwrap();
    assert_eq!(max_difference(&same.gather(&same.shard(&params).unwrap()).unwrap(), &params), 0.0);
}

#[test]
fn a_sharding_spec_refuses_an_axis_the_leaf_lacks() {
    let params = init_params(0);
    let err = ShardingSpec::from_fn(&params, |_, leaf| Some(leaf.dim())).expect_err("axis 2 of a matrix");
    assert!(matches!(err, Error::Value(_)), "{err:?}");
    assert!(err.to_string().contains("Dense_0/bias"), "{err}");
    assert!(matches!(ShardingSpec::largest_divisible_axis(&params, 0), Err(Error::Value(_))));
}

#[test]
fn a_group_of_one_trains_as_one_process() {
    let options =
        ProcessGroupOptions::new("127.0.0.1", free_port(), 0, 1).with_timeout(Duration::from_secs(30));
    let group = ProcessGroup::new(&options).unwrap();
    let fsdp = Fsdp::new(&group, ShardingSpec::largest_divisible_axis(&init_params(0), 1).unwrap()).unwrap();
    let batches = global_batches();
    let model = Mlp::new();
    let (losses, state) = sharded(&fsdp, &model, init_params, &batches);
    let (one_losses, one) = one_process(&model, init_params, &batches);
    assert!(max_loss_difference(&losses, &one_losses) <= TOLERANCE);
    assert!(max_difference(&fsdp.gather(&state).unwrap(), &one) <= TOLERANCE);
}

/// Per-unit steps of [`Deep`] with prefetch, from rank 0, until one fails, rank 1 printing
/// `ready` once its steps prefetch; checks that the failure came within `timeout` (plus
/// slack) and returns it.
fn prefetching_steps_until_error(group: &ProcessGroup, timeout: Duration) -> Error {
    tch::manual_seed(5);
    let x = group.shard(&Tensor::randn([16, DEEP_WIDTH], (Kind::Float, Device::Cpu))).unwrap();
    let params = Deep::new().init(PRNGKey::new(0), &x).unwrap().get_dict("params").cloned().unwrap();
    let spec = ShardingSpec::largest_divisible_axis(&params, group.world_size()).unwrap();
    let fsdp = Fsdp::new(group, spec).unwrap().gathering(Gathering::PerUnit);
    let pieces = fsdp.shard(&group.replicate(&params).unwrap()).unwrap();
    let step = || {
        fsdp.value_and_grad(&pieces, |p| {
            Ok(Deep::new().apply(&flax::frozen_dict! { "params": p }, &x)?.square().mean(Kind::Float))
        })
    };
    for _ in 0..2 {
        let _ = step().unwrap();
    }
    assert_eq!(fsdp.prefetched_gathers(), 2 * DEEP_LAYERS - 1, "the second step prefetched");
    until_error(group, timeout, step)
}

#[test]
fn a_killed_worker_stops_a_prefetching_step_with_a_typed_error() {
    let test = "a_killed_worker_stops_a_prefetching_step_with_a_typed_error";
    let timeout = Duration::from_secs(20);
    let Some(group) = spawn_and_disrupt(test, timeout, |rank1| rank1.kill().expect("killing rank 1")) else {
        return;
    };
    let err = prefetching_steps_until_error(&group, timeout);
    // libtorch's error, from inside a unit (`TorchIn`, naming it) or between units.
    assert!(matches!(err, Error::Torch(_) | Error::TorchIn { .. }), "{err:?}");
}

#[test]
fn a_hung_worker_stops_a_prefetching_step_at_the_timeout() {
    let test = "a_hung_worker_stops_a_prefetching_step_at_the_timeout";
    let timeout = Duration::from_secs(4);
    let Some(group) = spawn_and_disrupt(test, timeout, sigstop) else {
        return;
    };
    let err = prefetching_steps_until_error(&group, timeout);
    // libtorch's error, from inside a unit (`TorchIn`, naming it) or between units.
    assert!(matches!(err, Error::Torch(_) | Error::TorchIn { .. }), "{err:?}");
}
