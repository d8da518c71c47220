//! [`BoxedTransformation`]: a transformation whose type (and state type) is erased.

use crate::core::errors::Result;
use crate::optax::dyn_state::DynState;
use crate::optax::transformation::GradientTransformation;
use crate::tree::Tree;
use std::fmt;

/// Any transformation behind a pointer, with a [`DynState`] for state (made by
/// [`GradientTransformation::boxed`]).
///
/// Optax's transformations are values of one Python type, so a dict of them or a choice made
/// at run time needs nothing special; in Rust each transformation is its own type, and this is
/// the common one: [`multi_transform`](crate::optax::multi_transform) takes a table of them,
/// and a program that picks its optimizer from a flag can hold one. The cost is one dynamic
/// call and one small allocation (the boxed state) per step.
pub struct BoxedTransformation<P>(Box<dyn ErasedTransformation<P> + Send + Sync>);

/// The object-safe form of `GradientTransformation`, with the state as a [`DynState`].
trait ErasedTransformation<P> {
    fn init(&self, params: &P) -> Result<DynState>;
    fn update(&self, updates: P, state: DynState, params: Option<&P>) -> Result<(P, DynState)>;
    fn update_and_apply(&self, grads: P, state: DynState, params: P) -> Result<(P, DynState)>;
    fn type_name(&self) -> &'static str;
}

impl<P: Tree, T: GradientTransformation<P>> ErasedTransformation<P> for T
where
    T::State: Send + 'static,
{
    fn init(&self, params: &P) -> Result<DynState> {
        GradientTransformation::init(self, params).map(DynState::new)
    }

    fn update(&self, updates: P, state: DynState, params: Option<&P>) -> Result<(P, DynState)> {
        let (updates, state) = GradientTransformation::update(self, updates, state.downcast()?, params)?;
        Ok((updates, DynState::new(state)))
    }

    fn update_and_apply(&self, grads: P, state: DynState, params: P) -> Result<(P, DynState)> {
        let (params, state) =
            GradientTransformation::update_and_apply(self, grads, state.downcast()?, params)?;
        Ok((params, DynState::new(state)))
    }

    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }
}

impl<P: Tree> BoxedTransformation<P> {
    /// Boxes `transformation`.
    pub fn new<T>(transformation: T) -> Self
    where
        T: GradientTransformation<P> + Send + Sync + 'static,
        T::State: Send + 'static,
    {
        BoxedTransformation(Box::new(transformation))
    }
}

impl<P> fmt::Debug for BoxedTransformation<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BoxedTransformation<{}>", self.0.type_name())
    }
}

impl<P: Tree> GradientTransformation<P> for BoxedTransformation<P> {
    type State = DynState;

    fn init(&self, params: &P) -> Result<DynState> {
        self.0.init(params)
    }

    fn update(&self, updates: P, state: DynState, params: Option<&P>) -> Result<(P, DynState)> {
        self.0.update(updates, state, params)
    }

    fn update_and_apply(&self, grads: P, state: DynState, params: P) -> Result<(P, DynState)> {
        self.0.update_and_apply(grads, state, params)
    }

    /// Already boxed: returned as is rather than boxed twice.
    fn boxed(self) -> BoxedTransformation<P> {
        self
    }
}
