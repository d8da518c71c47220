//! The bad-input matrix: public layers and functions fed undefined tensors, wrong ranks,
//! shapes and dtypes, and empty batches. Every case must return (a typed error, or a result
//! without NaN where Flax defines one) and none may panic. All cases run; the test lists every
//! one that panicked or produced NaN.

use flax::nn::{self, Padding};
use flax::optax::losses;
use flax::prelude::*;
use std::panic::{catch_unwind, AssertUnwindSafe};

fn key() -> PRNGKey {
    PRNGKey::new(0)
}

fn f(shape: &[i64]) -> Tensor {
    Tensor::ones(shape, (Kind::Float, Device::Cpu))
}

fn long(shape: &[i64]) -> Tensor {
    Tensor::zeros(shape, (Kind::Int64, Device::Cpu))
}

/// Inputs that are wrong for a layer expecting a float tensor of rank `rank` (≥ 2) whose last
/// axis has `features` entries.
fn bad_inputs(rank: usize, features: i64) -> Vec<(String, Tensor)> {
    let good: Vec<i64> = std::iter::repeat_n(3, rank - 1).chain([features]).collect();
    let mut empty = good.clone();
    empty[0] = 0;
    let mut wrong_features = good.clone();
    wrong_features[rank - 1] = features + 1;
    vec![
        ("undefined".into(), Tensor::new()),
        ("rank 0".into(), f(&[])),
        ("rank 1".into(), f(&[features])),
        ("int64".into(), long(&good)),
        ("bool".into(), long(&good).to_kind(Kind::Bool)),
        ("empty batch".into(), f(&empty)),
        ("zero features".into(), f(&good[..rank - 1].iter().copied().chain([0]).collect::<Vec<_>>())),
        ("wrong features".into(), f(&wrong_features)),
    ]
}

type Case = Box<dyn Fn() -> flax::Result<Tensor>>;

/// What a case must not do: panic, or return NaN.
fn problem(name: &str, case: &Case) -> Option<String> {
    match catch_unwind(AssertUnwindSafe(case)) {
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            Some(format!("{name}: panicked: {}", message.lines().next().unwrap_or("")))
        }
        Ok(Ok(out))
            if out.defined() && out.is_floating_point() && out.isnan().any().int64_value(&[]) != 0 =>
        {
            Some(format!("{name}: NaN in the output"))
        }
        Ok(_) => None,
    }
}

/// Init with a good input, then init and apply with each bad one.
fn layer_cases<M>(cases: &mut Vec<(String, Case)>, name: &str, rank: usize, features: i64, run: M)
where
    M: Fn(Option<&Variables>, &Tensor) -> flax::Result<Tensor> + Clone + 'static,
{
    let good: Vec<i64> = std::iter::repeat_n(3, rank - 1).chain([features]).collect();
    for (what, x) in bad_inputs(rank, features) {
        let (run_init, x_init) = (run.clone(), x.shallow_clone());
        cases.push((format!("{name} init, {what}"), Box::new(move || run_init(None, &x_init))));
        let run_apply = run.clone();
        let good = f(&good);
        cases.push((
            format!("{name} apply, {what}"),
            Box::new(move || {
                let variables = match run_apply(None, &good) {
                    Ok(_) => init_variables(&run_apply, &good)?,
                    Err(e) => return Err(e),
                };
                run_apply(Some(&variables), &x)
            }),
        ));
    }
}

/// The variables `run` makes when initialising on `x` (it stores them in a thread local).
fn init_variables<M>(_run: &M, _x: &Tensor) -> flax::Result<Variables>
where
    M: Fn(Option<&Variables>, &Tensor) -> flax::Result<Tensor>,
{
    LAST_INIT.with(|last| last.borrow().clone().ok_or_else(|| flax::Error::Value("no variables".into())))
}

thread_local! {
    static LAST_INIT: std::cell::RefCell<Option<Variables>> = const { std::cell::RefCell::new(None) };
}

/// Runs `module` as `init` (keeping the variables for the apply cases) or `apply`.
macro_rules! runner {
    ($module:expr, |$m:ident, $v:ident, $x:ident| $init:expr, $apply:expr) => {{
        move |variables: Option<&Variables>, $x: &Tensor| -> flax::Result<Tensor> {
            let $m = $module;
            match variables {
                None => {
                    let (out, $v): (Tensor, Variables) = $init?;
                    LAST_INIT.with(|last| *last.borrow_mut() = Some($v));
                    Ok(out)
                }
                Some($v) => $apply,
            }
        }
    }};
}

fn all_cases() -> Vec<(String, Case)> {
    let mut cases: Vec<(String, Case)> = Vec::new();
    let c = &mut cases;
    layer_cases(
        c,
        "Dense",
        2,
        4,
        runner!(nn::Dense::new(5), |m, v, x| m.init_with_output(key(), x), m.apply(v, x)),
    );
    layer_cases(
        c,
        "DenseGeneral",
        3,
        4,
        runner!(nn::DenseGeneral::new([2, 3]), |m, v, x| m.init_with_output(key(), x), m.apply(v, x)),
    );
    layer_cases(
        c,
        "Conv",
        4,
        2,
        runner!(nn::Conv::new(3, vec![2, 2]), |m, v, x| m.init_with_output(key(), x), m.apply(v, x)),
    );
    layer_cases(
        c,
        "Conv VALID",
        4,
        2,
        runner!(
            nn::Conv::new(3, vec![2, 2]).padding(Padding::Valid),
            |m, v, x| m.init_with_output(key(), x),
            m.apply(v, x)
        ),
    );
    layer_cases(
        c,
        "ConvLocal",
        4,
        2,
        runner!(nn::ConvLocal::new(3, vec![2, 2]), |m, v, x| m.init_with_output(key(), x), m.apply(v, x)),
    );
    layer_cases(
        c,
        "ConvTranspose",
        4,
        2,
        runner!(nn::ConvTranspose::new(3, vec![2, 2]), |m, v, x| m.init_with_output(key(), x), m.apply(v, x)),
    );
    layer_cases(
        c,
        "LayerNorm",
        2,
        4,
        runner!(nn::LayerNorm::new(), |m, v, x| m.init_with_output(key(), x), m.apply(v, x)),
    );
    layer_cases(
        c,
        "RMSNorm",
        2,
        4,
        runner!(nn::RMSNorm::new(), |m, v, x| m.init_with_output(key(), x), m.apply(v, x)),
    );
    layer_cases(
        c,
        "GroupNorm",
        2,
        4,
        runner!(
            nn::GroupNorm::new().num_groups(Some(2)),
            |m, v, x| m.init_with_output(key(), x),
            m.apply(v, x)
        ),
    );
    layer_cases(
        c,
        "BatchNorm eval",
        2,
        4,
        runner!(
            nn::BatchNorm::new(),
            |m, v, x| m.init_with_output(key(), x, Some(true)),
            m.apply(v, x, Some(true))
        ),
    );
    layer_cases(
        c,
        "BatchNorm train",
        2,
        4,
        runner!(
            nn::BatchNorm::new(),
            |m, v, x| m.init_with_output(key(), x, Some(false)),
            m.apply_with(v, ApplyOptions::new().mutable(["batch_stats"]), x, Some(false)).map(|(y, _)| y)
        ),
    );
    layer_cases(
        c,
        "PReLU",
        2,
        4,
        runner!(nn::PReLU::new(), |m, v, x| m.init_with_output(key(), x), m.apply(v, x)),
    );
    layer_cases(
        c,
        "SelfAttention",
        3,
        4,
        runner!(
            nn::SelfAttention::new(2),
            |m, v, x| m.init_with_output(key(), x, None, Some(true)),
            m.apply(v, x, None, Some(true))
        ),
    );
    layer_cases(
        c,
        "MultiHeadDotProductAttention",
        3,
        4,
        runner!(
            nn::MultiHeadDotProductAttention::new(2),
            |m, v, x| m.init_with_output(key(), x, x, None, Some(true)),
            m.apply(v, x, x, None, Some(true))
        ),
    );
    // Embed takes integer ids.
    for (what, ids) in [("undefined", Tensor::new()), ("float ids", f(&[3])), ("empty", long(&[0]))] {
        c.push((
            format!("Embed, {what}"),
            Box::new(move || nn::Embed::new(5, 3).init_with_output(key(), &ids).map(|(y, _)| y)),
        ));
    }
    function_cases(c);
    scalar_argument_cases(c);
    cases
}

/// Free functions: the masks and axes users get wrong, and undefined tensors.
fn function_cases(c: &mut Vec<(String, Case)>) {
    let q = || f(&[2, 5, 2, 3]);
    let push = |c: &mut Vec<(String, Case)>, name: &str, case: Case| c.push((name.to_owned(), case));
    push(
        c,
        "dot_product_attention, mask [2,1,4,4] for length 5",
        Box::new(move || {
            nn::dot_product_attention_with(
                &q(),
                &q(),
                &q(),
                nn::AttentionOptions::new().mask(&f(&[2, 1, 4, 4])),
            )
        }),
    );
    push(
        c,
        "dot_product_attention, bias of the wrong shape",
        Box::new(move || {
            nn::dot_product_attention_with(&q(), &q(), &q(), nn::AttentionOptions::new().bias(&f(&[3, 7])))
        }),
    );
    push(
        c,
        "dot_product_attention, undefined query",
        Box::new(move || nn::dot_product_attention(&Tensor::new(), &q(), &q())),
    );
    push(
        c,
        "MultiHeadDotProductAttention, mask [2,1,4,4] for length 5",
        Box::new(move || {
            let x = f(&[2, 5, 4]);
            let mask = f(&[2, 1, 4, 4]).to_kind(Kind::Bool);
            nn::MultiHeadDotProductAttention::new(2)
                .init_with_output(key(), &x, &x, Some(&mask), Some(true))
                .map(|(y, _)| y)
        }),
    );
    push(
        c,
        "MultiHeadDotProductAttention, causal mask of another length",
        Box::new(move || {
            let x = f(&[2, 5, 4]);
            let mask =
                nn::make_causal_mask_with(&f(&[2, 4]), nn::AttentionMaskOptions::new().kind(Kind::Bool))?;
            nn::MultiHeadDotProductAttention::new(2)
                .init_with_output(key(), &x, &x, Some(&mask), Some(true))
                .map(|(y, _)| y)
        }),
    );
    push(
        c,
        "logsumexp, b of the wrong shape",
        Box::new(|| nn::logsumexp_with(&f(&[2, 3]), nn::LogsumexpOptions::new().b(&f(&[4])))),
    );
    push(c, "logsumexp, undefined", Box::new(|| nn::logsumexp(&Tensor::new())));
    push(
        c,
        "one_hot, axis -3 on rank 1",
        Box::new(|| nn::one_hot_with(&long(&[3]), 4, nn::OneHotOptions::new().axis(-3))),
    );
    push(c, "one_hot, undefined", Box::new(|| nn::one_hot(&Tensor::new(), 4)));
    push(c, "softmax, undefined", Box::new(|| nn::softmax(&Tensor::new())));
    push(c, "avg_pool, undefined", Box::new(|| nn::avg_pool(&Tensor::new(), [2, 2])));
    push(c, "max_pool, rank 1", Box::new(|| nn::max_pool(&f(&[4]), [2, 2])));
    push(
        c,
        "avg_pool, window larger than the input (VALID)",
        Box::new(|| nn::avg_pool(&f(&[2, 3, 3, 4]), [5, 5])),
    );
    push(
        c,
        "max_pool, window larger than the input (VALID)",
        Box::new(|| nn::max_pool(&f(&[2, 3, 3, 4]), [5, 5])),
    );
    push(
        c,
        "softmax_cross_entropy, shapes differ",
        Box::new(|| losses::softmax_cross_entropy(&f(&[2, 3]), &f(&[2, 4]))),
    );
    push(
        c,
        "softmax_cross_entropy, undefined",
        Box::new(|| losses::softmax_cross_entropy(&Tensor::new(), &f(&[2, 4]))),
    );
    push(
        c,
        "softmax_cross_entropy_with_integer_labels, labels of another batch",
        Box::new(|| losses::softmax_cross_entropy_with_integer_labels(&f(&[2, 3]), &long(&[5]))),
    );
    push(
        c,
        "softmax_cross_entropy_with_integer_labels, float labels",
        Box::new(|| losses::softmax_cross_entropy_with_integer_labels(&f(&[2, 3]), &f(&[2]))),
    );
    push(
        c,
        "softmax_cross_entropy_with_integer_labels, empty batch",
        Box::new(|| losses::softmax_cross_entropy_with_integer_labels(&f(&[0, 3]), &long(&[0]))),
    );
    push(
        c,
        "sigmoid_binary_cross_entropy, shapes differ",
        Box::new(|| losses::sigmoid_binary_cross_entropy(&f(&[2, 3]), &f(&[3, 2]))),
    );
    push(c, "l2_loss, undefined", Box::new(|| losses::l2_loss(&Tensor::new(), None)));
    push(c, "huber_loss, shapes differ", Box::new(|| losses::huber_loss(&f(&[2, 3]), Some(&f(&[4])), 1.0)));
}

/// The libtorch calls with a scalar argument (which panic in tch 0.26 when they fail) that
/// user input reaches: dtypes they do not support, values the dtype cannot hold, shapes and
/// ranges they refuse, and the Rust `clamp`s whose bounds come from input shapes.
fn scalar_argument_cases(c: &mut Vec<(String, Case)>) {
    use flax::core::initializer::Initializer;
    use flax::optax;
    let push = |c: &mut Vec<(String, Case)>, name: &str, case: Case| c.push((name.to_owned(), case));
    // A case that must be a typed error: a result is reported as a problem (a panic here).
    let err = |case: Case| -> Case {
        Box::new(move || match case() {
            Ok(_) => panic!("expected a typed error, got a result"),
            Err(e) => Err(e),
        })
    };
    let cpu = |kind| (kind, Device::Cpu);
    // Initializers: `full` with a shape or a value the dtype refuses.
    push(
        c,
        "constant init, negative shape",
        err(Box::new(move || nn::initializers::constant(1.0).init(key(), &[-1, 2], cpu(Kind::Float)))),
    );
    push(
        c,
        "constant init, NaN into int",
        err(Box::new(move || nn::initializers::constant(f64::NAN).init(key(), &[2], cpu(Kind::Int)))),
    );
    push(
        c,
        "constant init, 1e40 into int",
        err(Box::new(move || nn::initializers::constant(1e40).init(key(), &[2], cpu(Kind::Int)))),
    );
    push(
        c,
        "constant init, -1 into uint8",
        err(Box::new(move || nn::initializers::constant(-1.0).init(key(), &[2], cpu(Kind::Uint8)))),
    );
    push(
        c,
        "ones init, negative shape",
        err(Box::new(move || nn::initializers::ones().init(key(), &[-3], cpu(Kind::Float)))),
    );
    // Activations on the dtypes their scalar clamps and comparisons refuse.
    type Act = fn(&Tensor) -> flax::Result<Tensor>;
    let acts: [(&str, Act); 14] = [
        ("softplus", nn::softplus),
        ("soft_sign", nn::soft_sign),
        ("selu", nn::selu),
        ("elu", |x| nn::elu(x)),
        ("celu", |x| nn::celu(x)),
        ("leaky_relu", |x| nn::leaky_relu(x)),
        ("relu6", nn::relu6),
        ("hard_tanh", nn::hard_tanh),
        ("hard_sigmoid", nn::hard_sigmoid),
        ("log_sigmoid", nn::log_sigmoid),
        ("gelu", |x| nn::gelu(x)),
        ("standardize", |x| nn::standardize_with(x, nn::StandardizeOptions::new().epsilon(1e-6))),
        ("logsumexp with b", |x| nn::logsumexp_with(&f(&[2, 3]), nn::LogsumexpOptions::new().b(x))),
        ("softmax where", |x| nn::softmax_with(&f(&[2, 3]), nn::SoftmaxOptions::new().where_(x))),
    ];
    for (name, act) in acts {
        for kind in [Kind::Bool, Kind::ComplexFloat, Kind::Int64, Kind::Half] {
            let case: Case = Box::new(move || act(&f(&[2, 3]).to_kind(kind)));
            let refuses_complex =
                ["softplus", "selu", "elu", "celu", "leaky_relu", "log_sigmoid"].contains(&name);
            push(
                c,
                &format!("{name}, {kind:?}"),
                if kind == Kind::ComplexFloat && refuses_complex { err(case) } else { case },
            );
        }
        push(c, &format!("{name}, undefined"), err(Box::new(move || act(&Tensor::new()))));
    }
    push(c, "one_hot, negative num_classes", err(Box::new(|| nn::one_hot(&long(&[3]), -2))));
    push(c, "one_hot, complex ids", Box::new(|| nn::one_hot(&f(&[3]).to_kind(Kind::ComplexFloat), 4)));
    // Attention masks and biases of dtypes and definedness the comparisons refuse.
    let q = || f(&[2, 5, 2, 3]);
    for (what, mask) in
        [("undefined", Tensor::new()), ("complex", f(&[2, 2, 5, 5]).to_kind(Kind::ComplexFloat))]
    {
        let (m1, m2) = (mask.shallow_clone(), mask.shallow_clone());
        let must_fail = what == "undefined";
        let maybe = move |case: Case| if must_fail { err(case) } else { case };
        push(
            c,
            &format!("dot_product_attention, {what} mask"),
            maybe(Box::new(move || {
                nn::dot_product_attention_with(&q(), &q(), &q(), nn::AttentionOptions::new().mask(&m1))
            })),
        );
        push(
            c,
            &format!("dot_product_attention, {what} bias"),
            maybe(Box::new(move || {
                nn::dot_product_attention_with(&q(), &q(), &q(), nn::AttentionOptions::new().bias(&m2))
            })),
        );
        let m3 = mask.shallow_clone();
        push(
            c,
            &format!("combine_masks, {what}"),
            maybe(Box::new(move || {
                Ok(nn::combine_masks(&[Some(&m3), Some(&f(&[2, 2, 5, 5]))])?.unwrap_or_else(Tensor::new))
            })),
        );
    }
    push(
        c,
        "make_causal_mask, undefined",
        err(Box::new(|| {
            nn::make_causal_mask_with(&Tensor::new(), nn::AttentionMaskOptions::new().kind(Kind::Bool))
        })),
    );
    // Sequence lengths of other dtypes.
    for (what, lengths) in [
        ("bool", f(&[2]).to_kind(Kind::Bool)),
        ("float", f(&[2])),
        ("undefined", Tensor::new()),
        ("complex", f(&[2]).to_kind(Kind::ComplexFloat)),
    ] {
        push(
            c,
            &format!("flip_sequences, {what} lengths"),
            if what == "undefined" {
                err(Box::new(move || nn::flip_sequences(&f(&[2, 4, 3]), Some(&lengths), 1, false)))
            } else {
                Box::new(move || nn::flip_sequences(&f(&[2, 4, 3]), Some(&lengths), 1, false))
            },
        );
    }
    // Circular padding of an empty spatial dimension (a remainder by zero).
    push(
        c,
        "Conv CIRCULAR, empty spatial dimension",
        err(Box::new(|| {
            nn::Conv::new(3, vec![3, 3])
                .padding(Padding::Circular)
                .init_with_output(key(), &f(&[2, 0, 4, 2]))
                .map(|(y, _)| y)
        })),
    );
    // Optimizers on integer and boolean leaves (in-place scalar updates cannot cast back).
    for kind in [Kind::Int64, Kind::Bool, Kind::ComplexFloat] {
        let p = move || f(&[3]).to_kind(kind);
        type Tx = Box<dyn Fn(Tensor, Tensor) -> flax::Result<Tensor>>;
        let txs: Vec<(&str, Tx)> = vec![
            ("sgd", Box::new(|g, p| step(optax::sgd(0.1), g, p))),
            ("sgd momentum", Box::new(|g, p| step(optax::sgd(0.1).momentum(0.9), g, p))),
            ("adam", Box::new(|g, p| step(optax::adam(0.1), g, p))),
            ("adamw", Box::new(|g, p| step(optax::adamw(0.1), g, p))),
            ("lamb", Box::new(|g, p| step(optax::lamb(0.1), g, p))),
            ("rmsprop", Box::new(|g, p| step(optax::rmsprop(0.1), g, p))),
            ("adagrad", Box::new(|g, p| step(optax::adagrad(0.1), g, p))),
            ("clip", Box::new(|g, p| step(optax::clip(1.0), g, p))),
            ("clip_by_global_norm", Box::new(|g, p| step(optax::clip_by_global_norm(1.0), g, p))),
            ("scale", Box::new(|g, p| step(optax::scale(0.5), g, p))),
        ];
        for (name, tx) in txs {
            push(c, &format!("{name} update, {kind:?} leaves"), err(Box::new(move || tx(p(), p()))));
        }
    }
    // Losses on other dtypes (their scalar clamps and subtractions).
    for kind in [Kind::Int64, Kind::Bool, Kind::ComplexFloat, Kind::Half] {
        let x = move || f(&[2, 3]).to_kind(kind);
        push(c, &format!("huber_loss, {kind:?}"), Box::new(move || losses::huber_loss(&x(), None, 1.0)));
        push(c, &format!("l2_loss, {kind:?}"), Box::new(move || losses::l2_loss(&x(), None)));
        push(
            c,
            &format!("sigmoid_binary_cross_entropy, {kind:?} labels"),
            Box::new(move || losses::sigmoid_binary_cross_entropy(&f(&[2, 3]), &x())),
        );
        push(
            c,
            &format!("sigmoid_binary_cross_entropy, {kind:?} logits"),
            Box::new(move || losses::sigmoid_binary_cross_entropy(&x(), &f(&[2, 3]))),
        );
    }
    push(
        c,
        "MultiHeadDotProductAttention decode, cache of length 0",
        err(Box::new(|| {
            let m = nn::MultiHeadDotProductAttention::new(2).decode(true);
            let variables = m.init(key(), &f(&[2, 0, 4]), &f(&[2, 0, 4]), None, None)?;
            let step = f(&[2, 1, 4]);
            m.apply_with(&variables, ApplyOptions::new().mutable(["cache"]), &step, &step, None, None)
                .map(|(y, _)| y)
        })),
    );
    push(
        c,
        "Average, undefined values",
        err(Box::new(|| {
            Ok(flax::training::metrics::Average::<flax::training::metrics::Values>::from_values(
                &Tensor::new(),
                None,
            )?
            .total)
        })),
    );
    // libtorch failing inside an op with a scalar argument (`full`, `arange`, `scalar_tensor`,
    // `clamp_`), where tch's `f_*` ops panic and `flax::core::scalar_ops` returns the error:
    // allocations no machine can give (2^60 bytes, beyond any address space whatever the
    // overcommit policy: elements of 4 and 8 bytes) and values the dtype cannot hold.
    let (floats, longs) = (1_i64 << 58, 1_i64 << 57);
    push(
        c,
        "constant init, a shape too large to allocate",
        err(Box::new(move || nn::initializers::ones().init(key(), &[floats], cpu(Kind::Float)))),
    );
    push(
        c,
        "Dense init with a constant kernel, features too large to allocate",
        err(Box::new(move || {
            let dense = nn::Dense::new(floats).kernel_init(nn::initializers::zeros());
            dense.init(key(), &f(&[1, 1])).map(|_| Tensor::new())
        })),
    );
    // The random initializers draw on the host (JAX's Threefry), where a buffer that cannot
    // be allocated would abort the process: `Dense`'s default `lecun_normal` (truncated normal)
    // and `Embed`'s default normal initializer.
    push(
        c,
        "Dense init with its default kernel init, features too large to allocate",
        err(Box::new(move || nn::Dense::new(floats).init(key(), &f(&[1, 1])).map(|_| Tensor::new()))),
    );
    push(
        c,
        "Embed init, a table too large to allocate",
        err(Box::new(move || nn::Embed::new(floats, 4).init(key(), &long(&[3])).map(|_| Tensor::new()))),
    );
    push(
        c,
        "one_hot, num_classes too large to allocate",
        err(Box::new(move || nn::one_hot(&long(&[3]), longs))),
    );
    // clu's `int32` count of 2^32 values (a broadcast view: nothing allocated).
    push(
        c,
        "Average over 2^32 values",
        err(Box::new(|| {
            let values = f(&[1]).f_expand([1_i64 << 32], false)?;
            Ok(flax::training::metrics::Average::<flax::training::metrics::Values>::from_values(
                &values, None,
            )?
            .total)
        })),
    );
    // `clamp_` refuses a bound its dtype cannot hold (float16 has no 1e6); `clip` converts the
    // bound first, as JAX does (to infinity: no clipping), so this is `Ok` (checked in
    // `optax::transforms::clip`'s tests).
    push(
        c,
        "clip update, float16 leaves and a bound float16 cannot hold",
        Box::new(|| step(optax::clip(1e6), f(&[3]).to_kind(Kind::Half), f(&[3]).to_kind(Kind::Half))),
    );
}

/// One update of `tx` from its initial state on `params`.
fn step<T: flax::optax::GradientTransformation<Tensor>>(
    tx: T,
    grads: Tensor,
    params: Tensor,
) -> flax::Result<Tensor> {
    let state = tx.init(&params)?;
    Ok(tx.update(grads, state, Some(&params))?.0)
}

#[test]
fn batch_norm_refuses_to_train_on_an_empty_batch() {
    let m = nn::BatchNorm::new();
    let variables = m.init(key(), &f(&[3, 4]), Some(false)).unwrap();
    let empty = f(&[0, 4]);
    let err = m.apply_with(&variables, ApplyOptions::new().mutable(["batch_stats"]), &empty, Some(false));
    assert!(matches!(err, Err(flax::Error::Shape { .. })), "{err:?}");
    // Evaluation on an empty batch is an empty result, as in Flax.
    assert_eq!(m.apply(&variables, &empty, Some(true)).unwrap().size(), [0, 4]);
}

#[test]
fn no_public_layer_or_function_panics_or_returns_nan_on_bad_input() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {})); // the panics are reported below, all at once
    let cases = all_cases();
    let problems: Vec<String> = cases.iter().filter_map(|(name, case)| problem(name, case)).collect();
    std::panic::set_hook(default_hook);
    assert!(
        problems.is_empty(),
        "{} of {} cases failed:\n{}",
        problems.len(),
        cases.len(),
        problems.join("\n")
    );
}
