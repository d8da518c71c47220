//! `flax.training.train_state.TrainState`: the step count, the parameters, the optimizer and
//! its state in one value, updated by `apply_gradients`.
//!
//! ```
//! use flax::optax;
//! use flax::tch::{Device, Kind, Tensor};
//! use flax::training::TrainState;
//! use flax::tree::Tree;
//!
//! #[derive(Tree)]
//! struct Params {
//!     w: Tensor,
//! }
//!
//! # fn main() -> flax::Result<()> {
//! let params = Params { w: Tensor::from_slice(&[1.0f32, -2.0]) };
//! // `apply_fn` is whatever computes the model: a module value, or a function.
//! let apply_fn = |p: &Params, x: &Tensor| &p.w * x;
//! let state = TrainState::create(apply_fn, params, optax::sgd(0.1).momentum(0.9))?;
//! let x = Tensor::from_slice(&[3.0f32, 4.0]);
//! let grads = flax::grad(&state.params, |p| Ok((state.apply_fn)(p, &x).sum(Kind::Float)))?;
//! let state = state.apply_gradients(grads)?;
//! assert_eq!(state.step, 1);
//! // With momentum, the first update is `-0.1 * grads`.
//! let expected = Tensor::from_slice(&[1.0f32 - 0.1 * 3.0, -2.0 - 0.1 * 4.0]);
//! assert!(state.params.w.allclose(&expected, 1e-6, 1e-6, false));
//! # Ok(())
//! # }
//! ```
//!
//! Flax adds fields by subclassing (`class TrainState(train_state.TrainState): batch_stats:
//! Any`); here the extra fields are a `#[derive(Tree)]` struct in the last type parameter,
//! [`TrainState::extra`], given to [`TrainState::create_with`]. Their entries sit next to
//! `step`, `params` and `opt_state` at the top of the state dict, as the subclass's fields do
//! in Flax, so checkpoints keep Flax's layout:
//!
//! ```
//! use flax::optax;
//! use flax::prelude::*;
//! use flax::training::TrainState;
//! use flax::tree::{self, Tree};
//!
//! #[derive(Tree)]
//! struct Extra {
//!     batch_stats: FrozenDict,
//!     dropout_key: PRNGKey, // saved as Flax saves `key: jax.Array`, a `uint32[2]` array
//! }
//!
//! # fn main() -> flax::Result<()> {
//! let params = FrozenDict::from_iter([("w".to_owned(), Tensor::ones([2], (Kind::Float, Device::Cpu)).into())]);
//! let extra = Extra { batch_stats: FrozenDict::new(), dropout_key: PRNGKey::new(0) };
//! let state = TrainState::create_with((), params, optax::sgd(0.1), extra)?;
//! // Flax's `state.replace(batch_stats=...)` is struct update syntax:
//! let state = TrainState { extra: Extra { batch_stats: FrozenDict::new(), ..state.extra }, ..state };
//! let saved = tree::to_state_dict(&state);
//! let keys: Vec<&str> = saved.as_dict().unwrap().keys().collect();
//! assert_eq!(keys, ["step", "params", "opt_state", "batch_stats", "dropout_key"]);
//! assert_eq!(tree::num_leaves(&state), 1); // `w`: optimizers and device moves skip the key
//! # Ok(())
//! # }
//! ```

use crate::core::errors::{Error, Result};
use crate::core::frozen_dict::{DictMap, FrozenDict, Value};
use crate::optax::leafwise::unshare_leaves;
use crate::optax::GradientTransformation;
use crate::tree::{Key, KeyPath, MapFn, StateDictMismatches, Tree, VisitFn, VisitMutFn};
use std::sync::Arc;
use tch::{Device, Kind, Tensor};

/// The fields every train state has, in Flax's order; an extra field may not reuse them.
const BASE_FIELDS: [&str; 3] = ["step", "params", "opt_state"];

/// The key of the extra fields when they are not a struct or map (a lone tensor, say), so
/// that they cannot be spread over the top of the state dict.
const EXTRA_KEY: &str = "extra";

/// A training state: Flax's `TrainState(step, apply_fn, params, tx, opt_state)`, plus the
/// extra fields `E` a Flax subclass would add.
///
/// It is a [`Tree`]: its state dict is `{step, params, opt_state, <extra fields>}` (Flax's),
/// so `flax::serialization::to_bytes` and checkpoints save it and `from_bytes` restores it;
/// `apply_fn` and `tx` are static (`pytree_node=False`) and not saved. `apply_fn` is any
/// value that computes the model, typically the module itself (whose `apply` is typed by its
/// compact method), or a closure.
pub struct TrainState<A, P: Tree, T: GradientTransformation<P>, E = ()> {
    /// The number of `apply_gradients` calls so far.
    pub step: i64,
    /// How `step` is saved: `None` as a msgpack integer (what Flax writes for a step counted
    /// eagerly), `Some(dtype)` as a 0-d array of that dtype (what a `jax.jit`-ed
    /// `apply_gradients` leaves: int32). Restoring sets it from what was read, so a state read
    /// from Flax's bytes writes the same bytes back.
    pub step_dtype: Option<Kind>,
    /// What computes the model (the module, or a function).
    pub apply_fn: A,
    /// The parameters being trained.
    pub params: P,
    /// The optimizer, shared by every state derived from this one.
    pub tx: Arc<T>,
    /// The optimizer's state for `params`.
    pub opt_state: T::State,
    /// The fields a Flax subclass of `TrainState` would add (`batch_stats`, `metrics`, …).
    pub extra: E,
}

impl<A, P: Tree, T: GradientTransformation<P>> TrainState<A, P, T> {
    /// A state at step 0 with the optimizer's initial state for `params`
    /// (`TrainState.create(apply_fn=..., params=..., tx=...)`).
    ///
    /// # Errors
    /// The optimizer's `init` error (libtorch's, when its state cannot be allocated).
    pub fn create(apply_fn: A, params: P, tx: T) -> Result<Self> {
        Self::create_with(apply_fn, params, tx, ())
    }
}

impl<A, P: Tree, T: GradientTransformation<P>, E: Tree> TrainState<A, P, T, E> {
    /// [`TrainState::create`] with extra fields (`TrainState.create(..., batch_stats=...)`
    /// on a subclass).
    ///
    /// # Errors
    /// [`Error::Value`] when an extra field is named `step`, `params` or `opt_state` (the
    /// state dict would have two entries with that key); the optimizer's `init` error.
    pub fn create_with(apply_fn: A, params: P, tx: T, extra: E) -> Result<Self> {
        if let Value::Dict(fields) = extra.state_dict() {
            if let Some(clash) = BASE_FIELDS.iter().find(|name| fields.contains_key(name)) {
                return Err(Error::Value(format!(
                    "an extra field of a TrainState may not be named \"{clash}\": TrainState has that field"
                )));
            }
        }
        let opt_state = tx.init(&params)?;
        Ok(TrainState { step: 0, step_dtype: None, apply_fn, params, tx: Arc::new(tx), opt_state, extra })
    }

    /// One optimizer step: the updates for `grads`, added to the parameters, and `step + 1`
    /// (`state.apply_gradients(grads=grads)`).
    ///
    /// The state is consumed, so the optimizer updates its state and the parameters in place
    /// (Rust ownership is the buffer donation `jax.jit` asks for), with libtorch's fused
    /// kernel where the optimizer has one
    /// ([`GradientTransformation::update_and_apply`]). A parameter that something else still
    /// shares (params kept aside as `best = state.params.clone()`, a tree handed to another
    /// thread) is copied first, so that holder keeps its values, as Flax's immutable state does;
    /// in the usual loop nothing else holds them and nothing is copied. The optimizer state and
    /// `grads` are consumed and written in place: a clone of them changes with them (copy one
    /// with `tree::tree_map(&s, |t| Ok(t.copy()))` to keep it); the all-reduced gradients of
    /// data parallelism are views of one buffer, which a check would copy at every step. Other
    /// fields are replaced
    /// afterwards with struct update syntax, as Flax's `**kwargs` would:
    /// `TrainState { extra: new_extra, ..state.apply_gradients(grads)? }`.
    ///
    /// # Errors
    /// The optimizer's: [`Error::TreeStructureMismatch`] when `grads` does not have the
    /// parameters' structure, libtorch's on mismatched shapes or devices.
    pub fn apply_gradients(mut self, grads: P) -> Result<Self> {
        unshare_leaves(&mut self.params)?;
        let (params, opt_state) = self.tx.update_and_apply(grads, self.opt_state, self.params)?;
        Ok(TrainState { step: self.step + 1, params, opt_state, ..self })
    }
}

impl<A, P, T, E> Tree for TrainState<A, P, T, E>
where
    A: Clone,
    P: Tree,
    T: GradientTransformation<P>,
    E: Tree,
{
    fn visit_leaves<'t, const N: usize>(
        &'t self,
        others: [&'t Self; N],
        path: &mut KeyPath<'t>,
        f: &mut VisitFn<'_, 't, N>,
    ) -> Result<()> {
        path.scoped(Key::Name("params"), |path| {
            self.params.visit_leaves(others.map(|o| &o.params), path, f)
        })?;
        path.scoped(Key::Name("opt_state"), |path| {
            self.opt_state.visit_leaves(others.map(|o| &o.opt_state), path, f)
        })?;
        self.extra.visit_leaves(others.map(|o| &o.extra), path, f)
    }

    fn visit_leaves_mut<'t, const N: usize>(
        &'t mut self,
        others: [&'t Self; N],
        path: &mut KeyPath<'t>,
        f: &mut VisitMutFn<'_, 't, N>,
    ) -> Result<()> {
        path.scoped(Key::Name("params"), |path| {
            self.params.visit_leaves_mut(others.map(|o| &o.params), path, f)
        })?;
        path.scoped(Key::Name("opt_state"), |path| {
            self.opt_state.visit_leaves_mut(others.map(|o| &o.opt_state), path, f)
        })?;
        self.extra.visit_leaves_mut(others.map(|o| &o.extra), path, f)
    }

    fn map_leaves<'t, const N: usize>(
        &'t self,
        others: [&'t Self; N],
        path: &mut KeyPath<'t>,
        f: &mut MapFn<'_, 't, N>,
    ) -> Result<Self> {
        Ok(TrainState {
            step: self.step,
            step_dtype: self.step_dtype,
            apply_fn: self.apply_fn.clone(),
            params: path.scoped(Key::Name("params"), |path| {
                self.params.map_leaves(others.map(|o| &o.params), path, f)
            })?,
            tx: Arc::clone(&self.tx),
            opt_state: path.scoped(Key::Name("opt_state"), |path| {
                self.opt_state.map_leaves(others.map(|o| &o.opt_state), path, f)
            })?,
            extra: self.extra.map_leaves(others.map(|o| &o.extra), path, f)?,
        })
    }

    fn state_dict(&self) -> Value {
        let mut entries = DictMap::default();
        let base = [
            ("step", self.step_state()),
            ("params", self.params.state_dict_entry()),
            ("opt_state", self.opt_state.state_dict_entry()),
        ];
        for (key, value) in base {
            entries.extend(value.map(|value| (key.to_owned(), value)));
        }
        let extra = match self.extra.state_dict() {
            Value::Dict(fields) => fields.into_inner(),
            other => [(EXTRA_KEY.to_owned(), other)].into_iter().collect(),
        };
        // The base fields win a clash (refused by `create_with`), so `step` is the step.
        for (key, value) in extra {
            entries.entry(key).or_insert(value);
        }
        Value::Dict(FrozenDict::freeze(entries))
    }

    fn restore_state_dict<'t>(
        &'t self,
        state: &Value,
        path: &mut KeyPath<'t>,
        report: &mut StateDictMismatches,
    ) -> Option<Self> {
        let Value::Dict(dict) = state else {
            report.mismatched(path, "a dict", state);
            return None;
        };
        let step = path.scoped(Key::Name("step"), |path| {
            self.step.restore_state_dict_entry(dict.get("step"), path, report)
        });
        let params = path.scoped(Key::Name("params"), |path| {
            self.params.restore_state_dict_entry(dict.get("params"), path, report)
        });
        let opt_state = path.scoped(Key::Name("opt_state"), |path| {
            self.opt_state.restore_state_dict_entry(dict.get("opt_state"), path, report)
        });
        let extra = self.restore_extra(dict, path, report);
        let step_dtype = match dict.get("step") {
            Some(Value::Tensor(t)) => Some(t.kind()),
            _ => None,
        };
        Some(TrainState {
            step: step?,
            step_dtype,
            apply_fn: self.apply_fn.clone(),
            params: params?,
            tx: Arc::clone(&self.tx),
            opt_state: opt_state?,
            extra: extra?,
        })
    }
}

impl<A, P, T, E> TrainState<A, P, T, E>
where
    P: Tree,
    T: GradientTransformation<P>,
    E: Tree,
{
    /// The state-dict entry of `step`, in the layout `step_dtype` says.
    fn step_state(&self) -> Option<Value> {
        match self.step_dtype {
            Some(kind) => Some(Value::Tensor(Tensor::scalar_tensor(self.step as f64, (kind, Device::Cpu)))),
            None => self.step.state_dict_entry(),
        }
    }

    /// Restores the extra fields from their entries of the state dict `dict`: the
    /// top-level entries that are not base fields (the extra fields' own restore reports
    /// stray keys), or the `extra` entry when the fields are not a struct or map.
    fn restore_extra<'t>(
        &'t self,
        dict: &FrozenDict,
        path: &mut KeyPath<'t>,
        report: &mut StateDictMismatches,
    ) -> Option<E> {
        if matches!(self.extra.state_dict(), Value::Dict(_)) {
            let rest = dict.iter().filter(|(key, _)| !BASE_FIELDS.contains(key));
            let rest = Value::Dict(rest.map(|(key, value)| (key.to_owned(), value.clone())).collect());
            return self.extra.restore_state_dict(&rest, path, report);
        }
        for key in dict.keys().filter(|key| !BASE_FIELDS.contains(key) && *key != EXTRA_KEY) {
            report.unexpected_child(path, key);
        }
        path.scoped(Key::Name(EXTRA_KEY), |path| {
            self.extra.restore_state_dict_entry(dict.get(EXTRA_KEY), path, report)
        })
    }
}
