//! Flax's `setup`, run lazily once per bound module: the scope keeps what a module's `setup`
//! built in the module's frame, so every method of the module (and a method calling another)
//! sees the same submodules and params without declaring them again.
//!
//! Flax runs `setup` the first time a method of a bound module runs and keeps the attributes
//! on that bound instance. Here the instance is the frame a module runs in: the root frame of
//! `init`/`apply`/`bind`, or the child frame a parent's call enters. A frame entered again (a
//! parent calling `encoder.encode` and then `encoder.decode`) runs `setup` again, which
//! creates nothing new: its params already exist and are read back, so the variables, names and
//! RNG keys are those Flax gives.

use crate::core::errors::Result;
use crate::core::naming::NamingGuard;
use crate::core::scope::Scope;
use std::rc::Rc;

impl<'v> Scope<'v> {
    /// What `init` builds for the running module, built at most once per frame (generated
    /// code calls this at the start of every method of a module with a `setup`).
    ///
    /// `init` runs in the module's frame with a naming frame of its own that is not compact,
    /// so the modules it constructs have no parent and take the names of the fields that
    /// hold them.
    #[doc(hidden)]
    pub fn setup_once<S: 'static>(
        &mut self,
        init: impl FnOnce(&mut Scope<'v>) -> Result<S>,
    ) -> Result<Rc<S>> {
        if let Some(done) = self.top().setup.clone().and_then(|any| any.downcast::<S>().ok()) {
            return Ok(done);
        }
        let built = {
            let _naming = NamingGuard::push(false);
            Rc::new(init(self)?)
        };
        self.top_mut().setup = Some(built.clone());
        Ok(built)
    }
}
