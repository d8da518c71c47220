//! What the golden vectors do not show: buffers reused in place, states that checkpoint,
//! move and cross threads, freezing part of a model (spec L3774–3891), optimizers chosen at
//! run time, and typed errors for bad input.

use flax::optax::{self, BoxedTransformation, Count, GradientTransformation};
use flax::serialization::{msgpack_restore, msgpack_serialize};
use flax::tch::{Device, Kind, Tensor};
use flax::tree::{self, Key, Tree};
use flax::{Error, FrozenDict, Value};

#[derive(Tree, Debug)]
struct Params {
    w: Tensor,
    b: Tensor,
}

fn params(scale: f64) -> Params {
    Params {
        w: Tensor::arange(6, (Kind::Float, Device::Cpu)).reshape([2, 3]) * scale,
        b: Tensor::from_slice(&[0.5f32, -0.25]) * scale,
    }
}

fn grads(step: i64) -> Params {
    params(0.1 + step as f64 * 0.05)
}

fn pointers(tree: &Params) -> Vec<usize> {
    tree::leaves(tree).iter().map(|t| t.data_ptr() as usize).collect()
}

/// Runs the updates of `steps` from `state`: the parameters after them, the last updates
/// and the state.
fn run<T: GradientTransformation<Params>>(
    tx: &T,
    mut state: T::State,
    mut params: Params,
    steps: std::ops::Range<i64>,
) -> (Params, Params, T::State) {
    let mut last = None;
    for step in steps {
        let (updates, new_state) = tx.update(grads(step), state, Some(&params)).unwrap();
        params = optax::apply_updates(params, &updates).unwrap();
        state = new_state;
        last = Some(updates);
    }
    (params, last.expect("no steps were run"), state)
}

fn assert_same(a: &Params, b: &Params) {
    for (x, y) in tree::leaves(a).into_iter().zip(tree::leaves(b)) {
        assert!(x.equal(y), "{x:?} != {y:?}");
    }
}

#[test]
fn updates_reuse_the_gradient_and_state_buffers() {
    let tx = optax::adamw(1e-2).weight_decay(1e-3);
    let mut p = params(1.0);
    let state = tx.init(&p).unwrap();
    let moments = [pointers(&state.0.mu), pointers(&state.0.nu)];
    let g = grads(0);
    let (g_pointers, p_pointers) = (pointers(&g), pointers(&p));
    let (updates, state) = tx.update(g, state, Some(&p)).unwrap();
    assert_eq!(pointers(&updates), g_pointers, "the updates were not computed in the gradients' buffers");
    assert_eq!([pointers(&state.0.mu), pointers(&state.0.nu)], moments, "the state was reallocated");
    p = optax::apply_updates(p, &updates).unwrap();
    assert_eq!(pointers(&p), p_pointers, "apply_updates reallocated the parameters");
    assert_eq!(state.0.count, Count(1));

    let tx = optax::sgd(0.1).momentum(0.9);
    let state = tx.init(&p).unwrap();
    let trace = pointers(state.0 .0.as_ref().map(|t| &t.trace).unwrap());
    let (_, state) = tx.update(grads(1), state, None).unwrap();
    assert_eq!(pointers(state.0 .0.as_ref().map(|t| &t.trace).unwrap()), trace);
}

/// `update_and_apply` (one fused kernel for SGD, Adam and AdamW where they implement the
/// configuration, the definition otherwise) gives the parameters and state of `update` then
/// `apply_updates`, step after step, in place.
#[test]
fn update_and_apply_equals_update_then_apply_updates() {
    let schedule = || optax::warmup_cosine_decay_schedule(0.0, 0.5, 2, 6, 0.0, 1.0).unwrap();
    let optimizers: Vec<(&str, BoxedTransformation<Params>)> = vec![
        ("sgd", optax::sgd(0.1).boxed()),
        ("sgd_momentum", optax::sgd(0.1).momentum(0.9).boxed()),
        ("sgd_nesterov", optax::sgd(0.1).momentum(0.9).nesterov(true).boxed()),
        ("sgd_schedule", optax::sgd(schedule()).momentum(0.8).boxed()),
        ("sgd_nesterov_without_momentum", optax::sgd(0.1).nesterov(true).boxed()),
        ("sgd_zero_momentum", optax::sgd(0.1).momentum(0.0).boxed()),
        ("sgd_double_trace", optax::sgd(0.1).momentum(0.9).accumulator_dtype(Kind::Double).boxed()),
        ("adam", optax::adam(1e-2).boxed()),
        ("adam_schedule", optax::adam(schedule()).b1(0.8).eps(1e-6).boxed()),
        ("adam_nesterov", optax::adam(1e-2).nesterov(true).boxed()),
        ("adamw", optax::adamw(1e-2).weight_decay(1e-2).boxed()),
        (
            "adamw_masked",
            optax::adamw(1e-2).weight_decay(0.1).mask(|path, _| path.to_string() == "w").boxed(),
        ),
        ("rmsprop", optax::rmsprop(1e-2).boxed()),
    ];
    for (name, tx) in optimizers {
        let (mut fused, mut fused_state) = (params(1.0), tx.init(&params(1.0)).unwrap());
        let (mut plain, mut plain_state) = (params(1.0), tx.init(&params(1.0)).unwrap());
        let p_pointers = pointers(&fused);
        for step in 0..6 {
            (fused, fused_state) = tx.update_and_apply(grads(step), fused_state, fused).unwrap();
            let (updates, next) = tx.update(grads(step), plain_state, Some(&plain)).unwrap();
            (plain, plain_state) = (optax::apply_updates(plain, &updates).unwrap(), next);
        }
        assert_eq!(pointers(&fused), p_pointers, "{name}: the parameters were reallocated");
        // Within 1e-4 of the parameters' change: libtorch's Adam computes its bias corrections
        // in double precision where Optax rounds to float32 first (about 1e-5 of an update);
        // a wrong formula would be off by the size of an update.
        let initial = params(1.0);
        for ((a, b), p0) in
            tree::leaves(&fused).into_iter().zip(tree::leaves(&plain)).zip(tree::leaves(&initial))
        {
            let allowed = (b - p0).abs() * 1e-4 + 1e-7;
            let worst = ((a - b).abs() - allowed).max().double_value(&[]);
            assert!(worst <= 0.0, "{name}: parameters differ by {worst} more than allowed");
        }
        for ((path, x), y) in tree::leaves_with_path(&fused_state).into_iter().zip(tree::leaves(&plain_state))
        {
            assert!(x.allclose(y, 1e-5, 1e-7, false), "{name}: state {path:?}: {x:?} != {y:?}");
        }
    }
}

/// The fused kernels take gradients of any layout (a convolution kernel's gradient is a
/// permuted view), and only read them, where `update` overwrites the gradients with the
/// updates: untouched gradients show that the fused path ran.
#[test]
fn fused_kernels_read_gradients_of_any_layout() {
    let optimizers: Vec<(&str, BoxedTransformation<Params>)> = vec![
        ("sgd_momentum", optax::sgd(0.1).momentum(0.9).boxed()),
        ("adam", optax::adam(1e-2).boxed()),
        ("adamw", optax::adamw(1e-2).boxed()),
    ];
    for (name, tx) in optimizers {
        let w = (Tensor::arange(6, (Kind::Float, Device::Cpu)).reshape([3, 2]) * 0.1).tr();
        let grads = Params { w, b: Tensor::from_slice(&[0.5f32, -0.25]) };
        assert!(!grads.w.is_contiguous());
        let kept = tree::tree_map(&grads, |g| Ok(g.copy())).unwrap();
        let state = tx.init(&params(1.0)).unwrap();
        let (fused, _) =
            tx.update_and_apply(tree::shallow_clone(&grads).unwrap(), state, params(1.0)).unwrap();
        assert_same(&grads, &kept);
        let state = tx.init(&params(1.0)).unwrap();
        let (updates, _) = tx.update(kept, state, Some(&params(1.0))).unwrap();
        let plain = optax::apply_updates(params(1.0), &updates).unwrap();
        for (a, b) in tree::leaves(&fused).into_iter().zip(tree::leaves(&plain)) {
            assert!(a.allclose(b, 1e-6, 1e-6, false), "{name}: {a:?} != {b:?}");
        }
    }
}

#[test]
fn accumulators_keep_their_dtypes() {
    let p = params(1.0);
    let plain = optax::chain((optax::adam(0.1), optax::sgd(1.0).momentum(0.9)));
    let wide = optax::chain((
        optax::adam(0.1).mu_dtype(Kind::Double),
        optax::sgd(1.0).momentum(0.9).accumulator_dtype(Kind::Double),
    ));
    let (_, expected, _) = run(&plain, plain.init(&p).unwrap(), params(1.0), 0..3);
    let (_, updates, state) = run(&wide, wide.init(&p).unwrap(), p, 0..3);
    assert_eq!((state.0 .0.mu.w.kind(), state.0 .0.nu.w.kind()), (Kind::Double, Kind::Float));
    assert_eq!(state.1 .0 .0.as_ref().map(|t| t.trace.b.kind()), Some(Kind::Double));
    assert_eq!(updates.w.kind(), Kind::Float);
    assert!(updates.w.allclose(&expected.w, 1e-6, 1e-6, false));
}

#[test]
fn states_checkpoint_and_resume() {
    let schedule = optax::exponential_decay(0.1, 2, 0.5, 0, false, None);
    let tx = optax::chain((optax::clip_by_global_norm(10.0), optax::adam(schedule)));
    let p = params(1.0);
    let (p, _, state) = run(&tx, tx.init(&p).unwrap(), p, 0..3);

    let bytes = msgpack_serialize(&tree::to_state_dict(&state)).unwrap();
    let restored = tree::from_state_dict(&tx.init(&p).unwrap(), &msgpack_restore(&bytes).unwrap()).unwrap();
    assert_eq!((restored.1 .0.count, restored.1 .1.count), (Count(3), Count(3)));

    let q = tree::tree_map(&p, |t| Ok(t.copy())).unwrap();
    let (p, from_original, _) = run(&tx, state, p, 3..5);
    let (q, from_restored, _) = run(&tx, restored, q, 3..5);
    assert_same(&from_original, &from_restored);
    assert_same(&p, &q);
}

/// The spec's freezing example: a backbone labelled `frozen` (set_to_zero), the rest trained
/// with Adam, over Flax-style variables.
fn spec_params() -> FrozenDict {
    let leaf = |v: f32| Value::Tensor(Tensor::from_slice(&[v, v]));
    let dict = |entries: Vec<(&str, Value)>| {
        Value::Dict(entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect::<FrozenDict>())
    };
    let backbone = dict(vec![(
        "embeddings",
        dict(vec![("class_embedding", leaf(1.0)), ("patch_embedding", dict(vec![("kernel", leaf(2.0))]))]),
    )]);
    let head = dict(vec![("bias", leaf(3.0)), ("kernel", leaf(4.0))]);
    [("backbone".to_owned(), backbone), ("head".to_owned(), head)].into_iter().collect()
}

fn freezing_tx() -> optax::MultiTransform {
    optax::multi_transform(
        [("trainable", optax::adam(5e-3).boxed()), ("frozen", optax::set_to_zero().boxed())],
        |path, _| if path.keys().contains(&Key::Name("backbone")) { "frozen" } else { "trainable" },
    )
}

#[test]
fn multi_transform_freezes_the_backbone() {
    let tx = freezing_tx();
    let mut params = spec_params();
    let mut state = tx.init(&params).unwrap();
    for _ in 0..3 {
        let grads = tree::tree_map(&params, |p| Ok(p.ones_like())).unwrap();
        let (updates, new_state) = tx.update(grads, state, Some(&params)).unwrap();
        params = optax::apply_updates(params, &updates).unwrap();
        state = new_state;
    }
    let value = |path: &[&str]| params.tensor(path).unwrap().double_value(&[0]);
    assert_eq!(value(&["backbone", "embeddings", "class_embedding"]), 1.0);
    assert_eq!(value(&["backbone", "embeddings", "patch_embedding", "kernel"]), 2.0);
    assert!((value(&["head", "bias"]) - (3.0 - 3.0 * 5e-3)).abs() < 1e-5);

    // The state is a tree: its labels are Optax's, it moves devices, saves and restores.
    let saved = tree::to_state_dict(&state);
    let Value::Dict(saved) = &saved else { panic!("not a dict") };
    let inner = saved.get_dict("inner_states").unwrap();
    assert_eq!(inner.keys().collect::<Vec<_>>(), ["trainable", "frozen"]);
    assert!(matches!(inner.get_path(&["frozen", "inner_state"]), Some(Value::Dict(d)) if d.is_empty()));
    let adam_state =
        state.inner_states["trainable"].inner_state.downcast_ref::<(optax::ScaleByAdamState<Value>, ())>();
    assert_eq!(adam_state.map(|s| s.0.count), Some(Count(3)));
    let moved = tree::to_device(&state, Device::Cpu).unwrap();
    assert_eq!(tree::num_leaves(&moved), tree::num_leaves(&state));
    let template = tx.init(&params).unwrap();
    let restored = tree::from_state_dict(&template, &Value::Dict(saved.clone())).unwrap();
    assert_eq!(tree::num_leaves(&restored), 4, "Adam's mu and nu of the two head leaves");
}

#[test]
fn states_cross_threads() {
    let tx = freezing_tx();
    let params = spec_params();
    let state = tx.init(&params).unwrap();
    let grads = tree::tree_map(&params, |p| Ok(p.ones_like())).unwrap();
    let (updates, _) =
        std::thread::spawn(move || tx.update(grads, state, Some(&params)).unwrap()).join().unwrap();
    assert_eq!(
        updates.tensor(&["backbone", "embeddings", "class_embedding"]).unwrap().double_value(&[0]),
        0.0
    );
}

#[test]
fn an_optimizer_can_be_chosen_at_run_time() {
    for name in ["sgd", "adam"] {
        let tx: BoxedTransformation<Params> = match name {
            "sgd" => optax::sgd(0.1).boxed(),
            _ => optax::adam(0.1).boxed(),
        };
        let p = params(1.0);
        let state = tx.init(&p).unwrap();
        let (_, updates, _) = run(&tx, state, p, 0..2);
        assert!(updates.w.double_value(&[1, 1]) < 0.0, "{name}");
    }
    // A state from another optimizer is refused, not misread.
    let adam = optax::adam(0.1).boxed();
    let sgd_state = optax::sgd(0.1).boxed().init(&params(1.0)).unwrap();
    let refused = adam.update(grads(0), sgd_state, None);
    assert!(matches!(refused, Err(Error::Value(m)) if m.contains("optimizer state of type")));
}

#[test]
fn bad_input_is_a_typed_error() {
    let p = params(1.0);
    // Weight decay and trust ratios need the parameters.
    let tx = optax::adamw(0.1);
    let missing = tx.update(grads(0), tx.init(&p).unwrap(), None);
    assert!(
        matches!(missing, Err(Error::Value(m)) if m.contains("requires the current value of parameters"))
    );
    // A state for another tree structure.
    let tx = optax::adam(0.1);
    let state = tx.init(&vec![Tensor::zeros([2], (Kind::Float, Device::Cpu))]).unwrap();
    let two = (0..2).map(|_| Tensor::zeros([2], (Kind::Float, Device::Cpu))).collect();
    let other = tx.update(two, state, None);
    assert!(matches!(other, Err(Error::TreeStructureMismatch { .. })));
    // A leaf with a label that has no transformation.
    let tx = optax::multi_transform([("a", optax::sgd(0.1).boxed())], |_, _| "b");
    assert!(matches!(tx.init(&p), Err(Error::Value(m)) if m.contains("no corresponding transformation")));
    // Shapes that do not match.
    let tx = optax::sgd(0.1).momentum(0.9);
    let state = tx.init(&p).unwrap();
    assert!(matches!(tx.update(ones([3]), state, None), Err(Error::TorchAtLeaf { .. })));
    // An RMSProp state without the count its bias correction needs.
    let state = optax::rmsprop(0.1).init(&p).unwrap();
    let corrected = optax::rmsprop(0.1).bias_correction(true);
    assert!(matches!(corrected.update(grads(0), state, None), Err(Error::Value(_))));
}

fn ones(shape: [i64; 1]) -> Params {
    Params {
        w: Tensor::ones(shape, (Kind::Float, Device::Cpu)),
        b: Tensor::ones(shape, (Kind::Float, Device::Cpu)),
    }
}

#[test]
fn bad_schedules_and_loss_inputs_are_typed_errors() {
    use optax::losses;
    assert!(matches!(optax::cosine_decay_schedule(1.0, 0, 0.0, 1.0), Err(Error::Value(_))));
    assert!(matches!(optax::warmup_cosine_decay_schedule(0.0, 1.0, 10, 10, 0.0, 1.0), Err(Error::Value(_))));
    assert!(matches!(optax::piecewise_constant_schedule(1.0, [(5, -0.5)]), Err(Error::Value(_))));
    assert!(matches!(optax::join_schedules(vec![], vec![]), Err(Error::Value(_))));

    let logits = Tensor::zeros([2, 3], (Kind::Float, Device::Cpu));
    let int_logits = Tensor::zeros([2, 3], (Kind::Int64, Device::Cpu));
    let labels = Tensor::from_slice(&[0i64, 2]);
    assert!(matches!(
        losses::softmax_cross_entropy_with_integer_labels(&int_logits, &labels),
        Err(Error::Value(_))
    ));
    let float_labels = Tensor::from_slice(&[0.0f32, 2.0]);
    assert!(matches!(
        losses::softmax_cross_entropy_with_integer_labels(&logits, &float_labels),
        Err(Error::Value(_))
    ));
    for out_of_range in [[0i64, 7], [0, -1]] {
        assert!(matches!(
            losses::softmax_cross_entropy_with_integer_labels(&logits, &Tensor::from_slice(&out_of_range)),
            Err(Error::Torch(_))
        ));
    }
    // A single label for a batch of two: libtorch's gather and broadcasting would accept it.
    for wrong_shape in [Tensor::from_slice(&[0i64, 1, 2]), Tensor::from_slice(&[1i64]), Tensor::from(1i64)] {
        assert!(matches!(
            losses::softmax_cross_entropy_with_integer_labels(&logits, &wrong_shape),
            Err(Error::Value(_))
        ));
    }
    assert!(matches!(losses::l2_loss(&logits, Some(&labels)), Err(Error::Value(_))));
    assert!(matches!(losses::huber_loss(&int_logits, None, 1.0), Err(Error::Value(_))));
    assert!(matches!(
        losses::softmax_cross_entropy(&logits, &Tensor::zeros([4], (Kind::Float, Device::Cpu))),
        Err(Error::Torch(_))
    ));
}

/// Integer-label cross-entropy keeps any batch shape, a scalar label included, and is
/// Optax's `logsumexp(logits) - logits[label]` for each example.
#[test]
fn integer_label_cross_entropy_keeps_the_batch_shape() -> flax::Result<()> {
    use optax::losses::softmax_cross_entropy_with_integer_labels as loss;
    let logits = Tensor::arange(30, (Kind::Float, Device::Cpu)).sin().reshape([2, 3, 5]) * 4.0;
    let labels = Tensor::from_slice(&[0i32, 4, 2, 1, 3, 0]).reshape([2, 3]);
    let got = loss(&logits, &labels)?;
    assert_eq!(got.size(), [2, 3]);
    let index = labels.to_kind(Kind::Int64).unsqueeze(-1);
    let expected =
        logits.logsumexp([-1i64].as_slice(), false) - logits.gather(-1, &index, false).squeeze_dim(-1);
    assert!(got.allclose(&expected, 1e-6, 1e-6, false), "{got} vs {expected}");
    let scalar = loss(&logits.get(0).get(0), &Tensor::from(0i64))?;
    assert_eq!(scalar.dim(), 0);
    assert!(scalar.allclose(&expected.get(0).get(0), 1e-6, 1e-6, false));
    Ok(())
}

/// The optax guide's masks as trees of booleans (spec L7985–7999): `ModelParamTraversal`
/// marks the kernels and the biases in an all-`false` tree, and `masked_tree` scales each by
/// its learning rate, as the same masks written as predicates do. A parameter the mask lacks
/// and a leaf that is not a boolean are errors.
#[test]
fn masked_takes_optax_s_boolean_mask_trees() {
    use flax::traverse_util::ModelParamTraversal;
    let dense = |scale: f64| {
        let kernel = Tensor::arange(6, (Kind::Float, Device::Cpu)).reshape([3, 2]) * scale;
        flax::frozen_dict! { "Dense_0": flax::frozen_dict! { "kernel": kernel, "bias": Tensor::from_slice(&[0.5f32, -0.25]) * scale } }
    };
    let (params, grads) = (dense(1.0), dense(0.1));
    let all_false =
        ModelParamTraversal::new(|_: &str, _: &Value| true).update(|_| Ok(false.into()), &params).unwrap();
    let marked = |word: &'static str| {
        ModelParamTraversal::new(move |path: &str, _: &Value| path.contains(word))
            .update(|_| Ok(true.into()), &all_false)
            .unwrap()
    };
    let (kernels_mask, biases_mask) = (marked("kernel"), marked("bias"));
    let by_tree = optax::chain((
        optax::trace(0.9),
        optax::masked_tree(optax::scale(-0.1), &kernels_mask).unwrap(),
        optax::masked_tree(optax::scale(-0.01), &biases_mask).unwrap(),
    ));
    let by_path =
        |word: &'static str| move |path: &tree::KeyPath<'_>, _: &Tensor| path.to_string().contains(word);
    let by_predicate = optax::chain((
        optax::trace(0.9),
        optax::masked(optax::scale(-0.1), by_path("kernel")),
        optax::masked(optax::scale(-0.01), by_path("bias")),
    ));
    let copy = |t: &FrozenDict| tree::tree_map(t, |x| Ok(x.copy())).unwrap();
    let (a, _) = by_tree.update(copy(&grads), by_tree.init(&params).unwrap(), Some(&params)).unwrap();
    let (b, _) =
        by_predicate.update(copy(&grads), by_predicate.init(&params).unwrap(), Some(&params)).unwrap();
    for (x, y) in tree::leaves(&a).iter().zip(tree::leaves(&b)) {
        assert!(x.equal(y));
    }
    let kernel_update = a.tensor(&["Dense_0", "kernel"]).unwrap();
    assert!(kernel_update.allclose(
        &(grads.tensor(&["Dense_0", "kernel"]).unwrap() * -0.1),
        1e-7,
        1e-7,
        false
    ));

    let partial = flax::frozen_dict! { "Dense_0": flax::frozen_dict! { "kernel": true } };
    let tx = optax::masked_tree(optax::scale(-0.1), &partial).unwrap();
    match tx.init(&params) {
        Err(Error::TreeStructureMismatch { path, .. }) => assert!(path.contains("bias"), "{path}"),
        other => panic!("expected the missing mask leaf, got {other:?}"),
    }
    let not_bool = flax::frozen_dict! { "Dense_0": flax::frozen_dict! { "kernel": 1i64, "bias": true } };
    match optax::masked_tree(optax::scale(-0.1), &not_bool) {
        Err(Error::Value(message)) => assert!(message.contains("Dense_0/kernel"), "{message}"),
        other => panic!("expected a non-boolean leaf error, got {other:?}"),
    }
}
