//! `Mask`, the constant array Flax's `Conv`, `ConvLocal` and `ConvTranspose` multiply into
//! their kernel (masked convolutions).
//!
//! The mask is held as host bytes rather than as a `Tensor`: a module is `Send + Sync` (a
//! `Sequential` layer, a model shared by threads), and a `Tensor` is not `Sync`. It becomes a
//! tensor on the kernel's device when the layer runs — a copy of a kernel-sized array, small
//! beside the convolution it masks.

use crate::core::errors::{Error, Result};
use crate::core::repr::FlaxRepr;
use crate::core::scope::Scope;
use crate::nn::module_utils::attribute_error;
use std::fmt;
use std::sync::Arc;
use tch::{Device, Kind, Tensor};

/// A constant array multiplied into a kernel before it is used (Flax's `mask`); it must have
/// the kernel's shape. Clones share the bytes.
#[derive(Clone)]
pub struct Mask {
    bytes: Arc<[u8]>,
    shape: Vec<i64>,
    kind: Kind,
}

impl fmt::Debug for Mask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.flax_repr())
    }
}

impl FlaxRepr for Mask {
    fn flax_repr(&self) -> String {
        let dtype = crate::core::frozen_dict::dtype_name(self.kind);
        format!("Array(shape={}, dtype={dtype})", self.shape.flax_repr())
    }
}

impl Mask {
    /// Copies `mask` (any device and dtype) into a mask; an undefined tensor is an error.
    pub fn new(mask: &Tensor) -> Result<Self> {
        if !mask.defined() {
            return Err(Error::Value("a convolution mask must be a defined tensor".into()));
        }
        let host = mask.f_to_device(Device::Cpu)?.f_contiguous()?;
        let mut bytes = vec![0u8; host.numel() * host.kind().elt_size_in_bytes()];
        host.f_copy_data_u8(&mut bytes, host.numel())?;
        Ok(Mask { bytes: bytes.into(), shape: host.size(), kind: host.kind() })
    }

    /// The mask as a tensor on `device`.
    pub fn to_tensor(&self, device: Device) -> Result<Tensor> {
        Ok(Tensor::f_from_data_size(&self.bytes, &self.shape, self.kind)?.f_to_device(device)?)
    }

    /// Checks the mask against the kernel shape (Flax's `ValueError`) before the kernel exists.
    pub(crate) fn check(mask: Option<&Mask>, cx: &Scope<'_>, kernel_shape: &[i64]) -> Result<()> {
        match mask {
            Some(m) if m.shape != kernel_shape => Err(attribute_error(
                cx,
                format!(
                    "Mask needs to have the same shape as weights. Shapes are: {}, {}",
                    m.shape.flax_repr(),
                    kernel_shape.flax_repr()
                ),
            )),
            _ => Ok(()),
        }
    }

    /// `kernel * mask` (`kernel` unchanged without a mask).
    pub(crate) fn apply(mask: Option<&Mask>, kernel: Tensor) -> Result<Tensor> {
        match mask {
            Some(m) => Ok(kernel.f_mul(&m.to_tensor(kernel.device())?)?),
            None => Ok(kernel),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mask_keeps_its_values_shape_and_dtype() {
        let t = Tensor::from_slice(&[1.0f64, 0.0, 1.0, 1.0]).reshape([2, 2]);
        let m = Mask::new(&t).unwrap();
        let back = m.to_tensor(Device::Cpu).unwrap();
        assert_eq!(back.kind(), Kind::Double);
        assert_eq!(back.size(), [2, 2]);
        assert!(back.equal(&t));
        assert!(Mask::new(&Tensor::new()).is_err());
    }
}
