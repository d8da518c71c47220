//! `remat_scan` (Flax's `nn.remat_scan`): a module applied `l₁ · l₂ · …` times as nested
//! scans with `remat` at every level but the innermost, so the backward pass of `N` layers
//! keeps `O(√N)` activations (for two levels) instead of `N`.
//!
//! ```
//! use flax::prelude::*;
//!
//! /// Flax's `BigResnet` example, smaller: 6 `Dense` layers as 2 x 3 nested scans.
//! #[module]
//! pub struct DenseStack {}
//!
//! #[module]
//! impl DenseStack {
//!     #[compact]
//!     pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
//!         nn::remat_scan(nn::Dense::new(4), [2, 3]).name("dense_stack").call(cx, x.shallow_clone(), |dense, cx, x| dense.call(cx, &x))
//!     }
//! }
//!
//! # fn main() -> flax::Result<()> {
//! let x = Tensor::ones([1, 4], (Kind::Float, Device::Cpu));
//! let v = DenseStack::new().init(PRNGKey::new(0), &x)?;
//! assert_eq!(v.tensor(&["params", "dense_stack", "kernel"]).unwrap().size(), [2, 3, 4, 4]);
//! # Ok(())
//! # }
//! ```
//!
//! Every collection is stacked (on axis 0 at each level) and every RNG stream split, unless
//! `variable_broadcast`/`variable_carry` say otherwise (Flax's defaults). The body maps the
//! carry to the next carry; it and the module are run again in the backward pass (see
//! [`remat`](mod@super::remat)), so they must be `Clone + Send + 'static`.

use crate::core::errors::Result;
use crate::core::filter::CollectionFilter;
use crate::core::module::Module;
use crate::core::naming::Name;
use crate::core::scope::Scope;
use crate::transforms::lifted::LiftedModule;
use crate::transforms::remat::{remat_frame, RematPolicy};
use crate::transforms::scan::ScanOptions;
use crate::tree::Tree;

/// A module lifted by [`remat_scan`]: Flax's `nn.remat_scan(Module, lengths)` class
/// (`Remat_scan{Type}`), instantiated.
#[derive(Clone, Debug)]
pub struct RematScan<M: Module> {
    lifted: LiftedModule<M>,
    lengths: Vec<i64>,
    policy: RematPolicy,
    variable_broadcast: CollectionFilter,
    variable_carry: CollectionFilter,
}

/// Lifts `module` into nested scans of `lengths` with remat between the levels (Flax's
/// `nn.remat_scan`, named `Remat_scan{Type}_{n}` as Flax names it).
pub fn remat_scan<M: Module>(module: M, lengths: impl Into<Vec<i64>>) -> RematScan<M> {
    RematScan {
        lifted: LiftedModule::new("Remat_scan", module),
        lengths: lengths.into(),
        policy: RematPolicy::default(),
        variable_broadcast: CollectionFilter::Nothing,
        variable_carry: CollectionFilter::Nothing,
    }
}

impl<M: Module + Send + 'static> RematScan<M> {
    /// Which intermediates the remat levels keep (default: none).
    pub fn policy(mut self, policy: RematPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Collections shared by every layer instead of stacked.
    pub fn variable_broadcast(mut self, filter: impl Into<CollectionFilter>) -> Self {
        self.variable_broadcast = filter.into();
        self
    }

    /// Collections carried from one layer to the next instead of stacked.
    pub fn variable_carry(mut self, filter: impl Into<CollectionFilter>) -> Self {
        self.variable_carry = filter.into();
        self
    }

    /// Names the lifted module explicitly (Flax's `name=`).
    pub fn name(mut self, name: impl Into<Name>) -> Self {
        self.lifted.set_name(name.into());
        self
    }

    /// Applies `body(module, scope, carry) -> carry` `l₁ · l₂ · …` times.
    pub fn call<C: Tree + Send + 'static>(
        &self,
        cx: &mut Scope<'_>,
        carry: C,
        body: impl FnMut(&M, &mut Scope<'_>, C) -> Result<C> + Clone + Send + 'static,
    ) -> Result<C> {
        let (owner, module) = (self.lifted.owner(), self.lifted.module.clone());
        let base = ScanOptions::default()
            .variable_axes_all(0)
            .split_rngs_all()
            .variable_broadcast(self.variable_broadcast.clone())
            .variable_carry(self.variable_carry.clone());
        let mut body = body;
        let step = move |cx: &mut Scope<'_>, c: C| body(&module, cx, c);
        self.lifted.enter(cx, |cx| level(cx, owner, &base, &self.lengths, self.policy, carry, step))
    }
}

/// One level of the nested scans: the innermost scans `body`, the others scan a remat'd
/// inner level.
fn level<C, B>(
    cx: &mut Scope<'_>,
    owner: u64,
    base: &ScanOptions,
    lengths: &[i64],
    policy: RematPolicy,
    carry: C,
    body: B,
) -> Result<C>
where
    C: Tree + Send + 'static,
    B: FnMut(&mut Scope<'_>, C) -> Result<C> + Clone + Send + 'static,
{
    let Some((&length, rest)) = lengths.split_first() else {
        return Err(crate::Error::Value("remat_scan needs at least one length".into()));
    };
    let options = base.clone().length(length);
    if rest.is_empty() {
        let mut body = body;
        let (c, ()) = options.run(cx, owner, carry, &(), |cx, c, ()| Ok((body(cx, c)?, ())))?;
        return Ok(c);
    }
    let rest = rest.to_vec();
    let (c, ()) = options.run(cx, owner, carry, &(), |cx, c, ()| {
        let (rest, base, body) = (rest.clone(), base.clone(), body.clone());
        let inner = move |cx: &mut Scope<'_>, c: C| level(cx, owner, &base, &rest, policy, c, body.clone());
        Ok((remat_frame(cx, owner, policy, &c, inner)?, ()))
    })?;
    Ok(c)
}
