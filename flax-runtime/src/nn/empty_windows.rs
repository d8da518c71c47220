//! Windows that do not fit their input: zero-size results, as XLA gives them.
//!
//! XLA's shape rule for `ReduceWindow` and convolutions counts `max(0, (padded - window) /
//! stride + 1)` windows per spatial dimension, so a `VALID` window larger than its input (or
//! negative pads that crop it below the window) gives a zero-size result, e.g. `(2, 0, 0, 4)`,
//! and Flax returns it. libtorch's pooling and convolution kernels refuse such shapes ("Output
//! size is too small"), so the layers build the empty result here instead of calling them.
//!
//! The result stays on the autograd graph of the inputs (and of the kernel and bias): the
//! gradient of anything computed from it is zero, as in JAX, not an undefined tensor.

use crate::core::errors::Result;
use tch::Tensor;

/// Whether an output spatial shape has no window in some dimension.
pub(crate) fn has_no_windows(out_spatial: &[i64]) -> bool {
    out_spatial.contains(&0)
}

/// `(N, out_spatial…, C)`: the zero-size pooling of a channels-last `x` `(N, spatial…, C)`,
/// with `x`'s dtype, as a view of (zero elements of) `x`.
pub(crate) fn empty_pool(x: &Tensor, out_spatial: &[i64]) -> Result<Tensor> {
    let size = x.size();
    let mut shape = vec![size[0]];
    shape.extend_from_slice(out_spatial);
    shape.push(size[size.len() - 1]);
    // Any zero-element tensor reshapes to any zero-element shape.
    Ok(x.f_narrow(1, 0, 0)?.f_reshape(shape)?)
}

/// `(N, out_spatial…, O)`: the zero-size convolution of a channels-last `x` `(N, spatial…, C)`
/// with an HWIO `kernel` `(window…, I, O)` and an optional `(O,)` bias. It is the product of
/// zero-length rows of `x` with zero rows of the kernel, so the dtype is the convolution's and
/// both operands (and the bias) get zero gradients.
pub(crate) fn empty_conv(
    x: &Tensor,
    kernel: &Tensor,
    out_spatial: &[i64],
    bias: Option<&Tensor>,
) -> Result<Tensor> {
    let mut rows_shape = vec![x.size()[0]];
    rows_shape.extend_from_slice(out_spatial);
    rows_shape.push(0);
    let rows = x.f_narrow(1, 0, 0)?.f_reshape(rows_shape)?;
    let k = kernel.size();
    let columns = kernel.f_flatten(0, k.len() as i64 - 2)?.f_narrow(0, 0, 0)?;
    let y = rows.f_matmul(&columns)?;
    Ok(match bias {
        Some(b) => y.f_add(b)?,
        None => y,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn empty_results_have_zero_gradients() {
        let x = Tensor::ones([2, 2, 2, 4], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let kernel = Tensor::ones([3, 3, 4, 5], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let bias = Tensor::ones([5], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let y = empty_conv(&x, &kernel, &[0, 1], Some(&bias)).unwrap();
        assert_eq!(y.size(), [2, 0, 1, 5]);
        let p = empty_pool(&x, &[0, 0]).unwrap();
        assert_eq!(p.size(), [2, 0, 0, 4]);
        (y.sum(Kind::Float) + p.sum(Kind::Float)).backward();
        for t in [&x, &kernel, &bias] {
            let g = t.grad();
            assert_eq!(g.size(), t.size());
            assert_eq!(g.abs().sum(Kind::Float).double_value(&[]), 0.0);
        }
        assert!(has_no_windows(&[3, 0]) && !has_no_windows(&[3, 1]));
    }
}
