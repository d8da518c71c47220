//! Optax's optimizers ("aliases"): each a chain of transformations ending in the learning
//! rate, with Optax's defaults, changed with builder methods.
//!
//! The learning rate (and AdamW's and LAMB's weight decay) is an `f64` or a
//! [`Schedule`](crate::optax::Schedule); its kind is a type parameter, so the state is exactly
//! Optax's for each (a schedule adds its step count). Every optimizer's state is the tuple of
//! its chain's states, as in Optax.

mod adagrad;
mod adam;
mod adamw;
mod lamb;
mod rmsprop;
mod sgd;

pub use adagrad::{adagrad, Adagrad};
pub use adam::{adam, Adam};
pub use adamw::{adamw, AdamW};
pub use lamb::{lamb, Lamb};
pub use rmsprop::{rmsprop, RmsProp};
pub use sgd::{sgd, Sgd};

/// Builder methods of an optimizer that set the same-named hyper-parameter of one of its
/// transformations (whose docs give the default).
macro_rules! delegate_setters {
    ($field:ident: $($name:ident($ty:ty)),+ $(,)?) => {
        $(
            #[doc = concat!("Sets `", stringify!($name), "` of the optimizer's `", stringify!($field),
                            "` (see that transformation for its meaning and default).")]
            pub fn $name(mut self, value: $ty) -> Self {
                self.$field = self.$field.$name(value);
                self
            }
        )+
    };
}
use delegate_setters;
