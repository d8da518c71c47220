//! `jit` (Flax's `nn.jit`): on libtorch's eager execution there is no program to compile, so
//! `jit` runs the module as it is. It exists so that Flax code ports unchanged and names the
//! module as Flax does (`JitDense_0`), which keeps checkpoints compatible. (Capturing CUDA
//! graphs, the nearest thing libtorch has to a compiled program, is not done here.)
//!
//! ```
//! use flax::prelude::*;
//!
//! #[module]
//! pub struct Model {}
//!
//! #[module]
//! impl Model {
//!     #[compact]
//!     pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
//!         nn::jit(nn::Dense::new(3)).call(cx, |dense, cx| dense.call(cx, x))
//!     }
//! }
//!
//! # fn main() -> flax::Result<()> {
//! let x = Tensor::ones([2, 4], (Kind::Float, Device::Cpu));
//! let variables = Model::new().init(PRNGKey::new(0), &x)?;
//! assert_eq!(variables.tensor(&["params", "JitDense_0", "kernel"]).unwrap().size(), [4, 3]);
//! # Ok(())
//! # }
//! ```

use crate::core::apply::Rngs;
use crate::core::errors::Result;
use crate::core::filter::CollectionFilter;
use crate::core::module::Module;
use crate::core::naming::Name;
use crate::core::scope::Scope;
use crate::transforms::lifted::{run_lifted, LiftedModule};

/// A module lifted by [`jit`]: Flax's `nn.jit(Module)` class, instantiated.
#[derive(Clone, Debug)]
pub struct Jit<M: Module> {
    lifted: LiftedModule<M>,
}

/// Lifts `module` as Flax's `nn.jit(Module)` (named `Jit{Type}_{n}`); runs it eagerly.
pub fn jit<M: Module>(module: M) -> Jit<M> {
    Jit { lifted: LiftedModule::new("Jit", module) }
}

impl<M: Module> Jit<M> {
    /// Names the lifted module explicitly (Flax's `name=`).
    pub fn name(mut self, name: impl Into<Name>) -> Self {
        self.lifted.set_name(name.into());
        self
    }

    /// Runs `body(module, scope)`: the module's method calls, in the lifted module's scope.
    ///
    /// As Flax's `jit` does, every RNG stream is forked first (one `make_rng` in the lifted
    /// module's scope), and the body draws its keys from the forked keys without the module
    /// path, so `init` gives Flax's values.
    pub fn call<R>(
        &self,
        cx: &mut Scope<'_>,
        body: impl FnOnce(&M, &mut Scope<'_>) -> Result<R>,
    ) -> Result<R> {
        let (module, owner) = (&self.lifted.module, self.lifted.owner());
        self.lifted.enter(cx, |cx| {
            let mut rngs = Rngs::new();
            for name in cx.rng_streams().names() {
                let key = cx.make_rng(&name)?;
                rngs = rngs.with(name, key);
            }
            let run =
                run_lifted(cx, cx.frame_variables(), rngs, CollectionFilter::Everything, owner, |inner| {
                    inner.clear_rng_suffix();
                    body(module, inner)
                })?;
            cx.set_rng_counters(run.counters);
            cx.publish(run.state);
            Ok(run.out)
        })
    }
}
