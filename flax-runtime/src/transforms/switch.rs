//! `switch` (Flax's `nn.switch`): one of several branches runs on the module's variables,
//! chosen by an index; every branch's variables exist after `init`.
//!
//! Flax's branches are traced in order, sharing the module's `make_rng` counters, and `init`
//! returns the chosen branch's variables, which must have the same structure in every
//! branch. Here `init` runs every branch in that order (so the variables of the chosen
//! branch are the ones Flax creates, keys included) and checks that all branches create the
//! same variables; `apply` runs the chosen branch alone. A branch other than the first that
//! draws keys in `apply` (dropout) therefore draws other keys than Flax, whose counters have
//! gone through the earlier branches' traces.

use crate::core::errors::Result;
use crate::core::filter::CollectionFilter;
use crate::core::frozen_dict::FrozenDict;
use crate::core::scope::Scope;
use crate::transforms::axes::Lifting;
use crate::transforms::lifted::{run_lifted, signature};
use crate::tree::{self, Tree};

/// A branch of [`switch`]: the scope of the module it runs in, and the operands.
pub type Branch<'f, X, Y> = Box<dyn FnOnce(&mut Scope<'_>, X) -> Result<Y> + 'f>;

/// Runs `branches[index]` (clamped into range, as `jax.lax.switch` does) on the running
/// module's variables with `operands` (Flax's `nn.switch(index, branches, mdl, *operands)`,
/// where `cx` plays `mdl`). Modules constructed in a branch are the module's children,
/// auto-named afresh in each branch.
pub fn switch<X: Tree, Y>(
    index: i64,
    branches: Vec<Branch<'_, X, Y>>,
    cx: &mut Scope<'_>,
    operands: X,
) -> Result<Y> {
    run_branches("switch", index, branches, cx, operands)
}

/// [`switch`] as `cond` and `switch` share it, named after the transform for errors.
pub(crate) fn run_branches<X: Tree, Y>(
    transform: &'static str,
    index: i64,
    branches: Vec<Branch<'_, X, Y>>,
    cx: &mut Scope<'_>,
    operands: X,
) -> Result<Y> {
    let lifting = Lifting::new(transform, cx);
    if branches.is_empty() {
        return Err(lifting.error("needs at least one branch"));
    }
    let chosen = index.clamp(0, branches.len() as i64 - 1) as usize;
    let variables = cx.frame_variables();
    let owner = cx.owner();
    let initializing = cx.is_initializing();
    let rngs = cx.rng_streams().clone();
    let mut chosen_run = None;
    let mut first_state: Option<FrozenDict> = None;
    for (i, branch) in branches.into_iter().enumerate() {
        if i != chosen && !initializing {
            continue;
        }
        let x = tree::shallow_clone(&operands)?;
        let run =
            run_lifted(cx, variables.clone(), rngs.clone(), CollectionFilter::Everything, owner, |inner| {
                branch(inner, x)
            })?;
        cx.set_rng_counters(run.counters.clone());
        match &first_state {
            None => first_state = Some(run.state.clone()),
            Some(first) => same_variables(&lifting, first, &run.state, i)?,
        }
        if i == chosen {
            chosen_run = Some(run);
        }
    }
    let run = chosen_run.expect("the chosen branch ran");
    cx.publish(run.state);
    Ok(run.out)
}

/// Fails unless the variables branch `i` left have the paths, shapes and dtypes the first
/// branch's have (Flax's branches must create the same variables).
fn same_variables(lifting: &Lifting, first: &FrozenDict, other: &FrozenDict, i: usize) -> Result<()> {
    let (a, b) = (signature(first), signature(other));
    if a == b {
        return Ok(());
    }
    let only_first: Vec<&String> = a.iter().filter(|e| !b.contains(e)).collect();
    let only_other: Vec<&String> = b.iter().filter(|e| !a.contains(e)).collect();
    Err(lifting.error(format!(
        "branches must create the same variables, but branch 0 has {only_first:?} and branch {i} has {only_other:?}; \
         create a variable used by one branch in every branch, or before the transform"
    )))
}
