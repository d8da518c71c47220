//! `optax.chain`: transformations applied one after the other.

use crate::core::errors::Result;
use crate::optax::transformation::GradientTransformation;
use crate::tree::Tree;

/// Transformations applied in sequence, each to the previous one's updates (`optax.chain`).
/// Its state is the tuple of theirs, as Optax's (a state dict keyed `"0"`, `"1"`, …).
///
/// Chains hold a tuple of one to four transformations (the arities `Tree` has for the state
/// tuple); a longer chain nests a chain as one of the four.
#[derive(Debug, Clone)]
pub struct Chain<T>(pub T);

/// Applies the transformations of the tuple `transformations` in order:
/// `chain((clip_by_global_norm(1.0), scale_by_adam(), scale(-1e-3)))`.
pub fn chain<T>(transformations: T) -> Chain<T> {
    Chain(transformations)
}

/// Implements `GradientTransformation` for the chain of the given tuple positions.
macro_rules! impl_chain {
    ($($tx:ident $state:ident $idx:tt),+) => {
        impl<P: Tree, $($tx: GradientTransformation<P>),+> GradientTransformation<P> for Chain<($($tx,)+)> {
            type State = ($($tx::State,)+);

            fn init(&self, params: &P) -> Result<Self::State> {
                Ok(($(self.0.$idx.init(params)?,)+))
            }

            fn update(&self, updates: P, state: Self::State, params: Option<&P>) -> Result<(P, Self::State)> {
                $(let (updates, $state) = self.0.$idx.update(updates, state.$idx, params)?;)+
                Ok((updates, ($($state,)+)))
            }
        }
    };
}

impl_chain!(A a 0);
impl_chain!(A a 0, B b 1);
impl_chain!(A a 0, B b 1, C c 2);
impl_chain!(A a 0, B b 1, C c 2, D d 3);
