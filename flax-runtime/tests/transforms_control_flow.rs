//! `nn::cond`, `nn::switch` and `nn::while_loop` against Flax 0.12.8
//! (`scripts/golden/transforms_control_flow.py`): the spec's `CondExample` and
//! `WhileLoopExample`, a three-way switch, auto-named submodules in branches, and the errors
//! for branches that create different variables and bodies that create variables.

mod layers_golden;

use flax::nn::{self, Branch, WhileLoopOptions};
use flax::prelude::*;
use flax::Error;
use layers_golden::{assert_close, assert_same_tree, key, Golden};

fn zero(cx: &mut Scope) -> Result<Tensor> {
    Ok(Tensor::zeros([], (Kind::Int, cx.device())))
}

fn count(cx: &mut Scope, name: &'static str) -> Result<()> {
    let v = cx.variable("state", name, zero)?;
    let n = v.value(cx)?;
    v.set_value(cx, n + 1)
}

/// The spec's `CondExample` (L17144-17155).
#[module]
pub struct CondExample {}

#[module]
impl CondExample {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor, pred: bool) -> Result<Tensor> {
        cx.variable("state", "true_count", zero)?;
        cx.variable("state", "false_count", zero)?;
        nn::cond(
            pred,
            |cx, x: Tensor| {
                count(cx, "true_count")?;
                nn::Dense::new(2).name("dense").call(cx, &x)
            },
            |cx, x: Tensor| {
                count(cx, "false_count")?;
                Ok(-nn::Dense::new(2).name("dense").call(cx, &x)?)
            },
            cx,
            x.shallow_clone(),
        )
    }
}

#[module]
pub struct AutoNamed {}

#[module]
impl AutoNamed {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor, pred: bool) -> Result<Tensor> {
        nn::cond(
            pred,
            |cx, x: Tensor| nn::Dense::new(3).call(cx, &x),
            |cx, x: Tensor| Ok(nn::Dense::new(3).call(cx, &x)?.tanh()),
            cx,
            x.shallow_clone(),
        )
    }
}

#[module]
pub struct SwitchExample {}

#[module]
impl SwitchExample {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor, index: i64) -> Result<Tensor> {
        let branches: Vec<Branch<'_, Tensor, Tensor>> = vec![
            Box::new(|cx, x| nn::Dense::new(2).name("dense").call(cx, &x)),
            Box::new(|cx, x| Ok(-nn::Dense::new(2).name("dense").call(cx, &x)?)),
            Box::new(|cx, x| Ok(nn::Dense::new(2).name("dense").call(cx, &x)?.relu())),
        ];
        nn::switch(index, branches, cx, x.shallow_clone())
    }
}

/// The spec's `WhileLoopExample` (L17068-17087).
#[module]
pub struct WhileLoopExample {}

#[module]
impl WhileLoopExample {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let cond_fn = |cx: &mut Scope, _c: &Tensor| -> Result<bool> {
            Ok(cx.get_variable("state", "acc").is_some_and(|acc| acc.int64_value(&[]) < 10))
        };
        let body_fn = |cx: &mut Scope, c: Tensor| -> Result<Tensor> {
            count(cx, "acc")?;
            nn::Dense::new(c.size()[1]).call(cx, &c)
        };
        if cx.is_mutable_collection("params") {
            return body_fn(cx, x.shallow_clone());
        }
        nn::while_loop(
            cond_fn,
            body_fn,
            cx,
            x.shallow_clone(),
            WhileLoopOptions::default().carry_variables("state"),
        )
    }
}

#[test]
fn spec_cond_example_creates_both_branches_variables() {
    let g = Golden::load("control_flow");
    for (name, pred) in [("cond_true", true), ("cond_false", false)] {
        let c = g.case(name);
        let (m, x) = (CondExample::new(), c.input("x"));
        assert_same_tree(&format!("{name}: init"), &m.init(key(), &x, pred).unwrap(), &c.variables());
        let (y, updated) =
            m.apply_with(&c.variables(), ApplyOptions::new().mutable("state"), &x, pred).unwrap();
        assert_close(&format!("{name}: output"), &y, &c.output());
        assert_same_tree(&format!("{name}: updated"), &updated, &c.updated());
    }
}

#[test]
fn auto_names_restart_in_each_branch() {
    let g = Golden::load("control_flow");
    for (name, pred) in [("auto_named_true", true), ("auto_named_false", false)] {
        let c = g.case(name);
        let (m, x) = (AutoNamed::new(), c.input("x"));
        c.check(|| m.init(key(), &x, pred), |v| m.apply(v, &x, pred));
    }
}

#[test]
fn switch_runs_the_indexed_branch() {
    let g = Golden::load("control_flow");
    for index in 0..3 {
        let c = g.case(&format!("switch_{index}"));
        let (m, x) = (SwitchExample::new(), c.input("x"));
        c.check(|| m.init(key(), &x, index), |v| m.apply(v, &x, index));
    }
    // Out-of-range indices are clamped, as jax.lax.switch does.
    let c = g.case("switch_2");
    let (m, x) = (SwitchExample::new(), c.input("x"));
    assert_close("switch: clamped", &m.apply(&c.variables(), &x, 7).unwrap(), &c.output());
}

#[test]
fn spec_while_loop_example_carries_state() {
    let g = Golden::load("control_flow");
    let c = g.case("while_loop");
    let (m, x) = (WhileLoopExample::new(), c.input("x"));
    assert_same_tree("while_loop: init", &m.init(key(), &x).unwrap(), &c.variables());
    let (y, updated) = m.apply_with(&c.variables(), ApplyOptions::new().mutable("state"), &x).unwrap();
    assert_close("while_loop: output", &y, &c.output());
    assert_same_tree("while_loop: updated", &updated, &c.updated());
}

#[test]
fn every_golden_case_has_a_test() {
    let g = Golden::load("control_flow");
    let cases = ["cond_true", "cond_false", "auto_named_true", "auto_named_false", "while_loop"];
    for name in cases.into_iter().map(String::from).chain((0..3).map(|i| format!("switch_{i}"))) {
        g.case(&name);
    }
    g.assert_all_seen();
}

#[module]
pub struct Uneven {}

#[module]
impl Uneven {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor, pred: bool) -> Result<Tensor> {
        nn::cond(
            pred,
            |cx, x: Tensor| nn::Dense::new(3).call(cx, &x),
            |_cx, x: Tensor| Ok(x),
            cx,
            x.shallow_clone(),
        )
    }
}

#[module]
pub struct CreatesInLoop {}

#[module]
impl CreatesInLoop {
    #[compact]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        nn::while_loop(
            |cx: &mut Scope, _c: &Tensor| Ok(cx.get_variable("state", "n").is_none()),
            |cx: &mut Scope, c: Tensor| {
                count(cx, "n")?;
                Ok(c)
            },
            cx,
            x.shallow_clone(),
            WhileLoopOptions::default().carry_variables("state"),
        )
    }
}

#[test]
fn branches_with_different_variables_and_loops_creating_them_are_errors() {
    let x = Tensor::ones([1, 3], (Kind::Float, Device::Cpu));
    match Uneven::new().init(key(), &x, true) {
        Err(Error::Transform { transform: "cond", message, .. }) => {
            assert!(message.contains("branches must create the same variables"), "{message}");
            assert!(message.contains("params/Dense_0/kernel"), "{message}");
        }
        other => panic!("expected a cond error, got {other:?}"),
    }
    match CreatesInLoop::new().apply_with(&Variables::new(), ApplyOptions::new().mutable("state"), &x) {
        Err(Error::Transform { transform: "while_loop", message, .. }) => {
            assert!(message.contains("cannot create variables"), "{message}")
        }
        other => panic!("expected a while_loop error, got {other:?}"),
    }
}
