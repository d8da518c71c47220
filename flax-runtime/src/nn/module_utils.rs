//! Helpers every layer shares: Flax's errors for bad inputs and attributes, with the module
//! path of the layer that raised them.

use crate::core::errors::Error;
use crate::core::scope::Scope;

/// A bad input (rank, size, dtype) to the module running in `cx`.
pub(crate) fn shape_error(cx: &Scope<'_>, message: impl Into<String>) -> Error {
    Error::Shape { scope: cx.path_text(), message: message.into() }
}

/// A bad attribute of the module running in `cx` (Flax's `ValueError` at call time).
pub(crate) fn attribute_error(cx: &Scope<'_>, message: impl Into<String>) -> Error {
    Error::InvalidAttribute { scope: cx.path_text(), message: message.into() }
}
