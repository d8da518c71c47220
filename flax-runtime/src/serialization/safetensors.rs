//! Variable trees to and from [safetensors](https://huggingface.co/docs/safetensors) files, in
//! Flax's layout: one tensor per leaf, named by its path.
//!
//! Flax has no safetensors API of its own; the convention followed here is the one the files
//! that exist in Flax's layout use: transformers' `FlaxPreTrainedModel.save_pretrained(
//! safe_serialization=True)` writes `flatten_dict(params, sep=".")` with the metadata
//! `{"format": "flax"}`, and its loader unflattens on `"."`. So by default a leaf
//! `params["Dense_0"]["kernel"]` is the tensor `Dense_0.kernel`, and such a file loads in Python
//! with `unflatten_dict(safetensors.flax.load_file(path), sep=".")`. Flax's own flattened paths
//! (`flatten_dict(params, sep="/")`, the model-surgery guide's `Dense_0/kernel`) are one option
//! away: [`SafetensorsOptions::separator`]. The golden test proves byte identity with a file
//! written by `safetensors.flax.save_file` (`scripts/golden/pytorch_vectors.py`).
//!
//! - Lists (`sow`'s tuples) are stored through their state dict: `acts.0`, `acts.1`.
//! - Only tensors can be stored: a scalar leaf is an [`Error::Value`], and empty dicts are
//!   left out, as `flatten_dict` leaves them out. A key holding the separator is refused, since
//!   it would not read back as the same path.
//! - Restoring into a target ([`from_safetensors`]) is strict, like
//!   [`from_bytes`](super::from_bytes): every missing, unexpected and mis-shaped (or
//!   mis-typed) tensor is reported in one [`Error::StateDictMismatch`].
//! - Every dtype both libtorch and safetensors have is supported (bool, uint8, the signed
//!   integers, float16/32/64, bfloat16, the four float8 types, complex64); a file holding
//!   another (uint16/32/64, F8_E8M0, F4, F6) is an [`Error::Format`], as is a corrupt file.
//!   `complex128` has no safetensors dtype and cannot be written.

use super::{from_state_dict_with, to_state_dict, RestoreOptions};
use crate::core::errors::{Error, Result};
use crate::core::frozen_dict::{FrozenDict, Value};
use safetensors::tensor::{Dtype, SafeTensors, TensorView, View};
use std::borrow::Cow;
use std::collections::HashMap;
use tch::{Kind, Tensor};

/// How tree paths become tensor names, and how strictly a restore matches the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafetensorsOptions {
    /// Joins the keys of a path into a tensor name: `"."` (transformers' convention, the
    /// default) or `"/"` (Flax's `flatten_dict(sep="/")`).
    pub separator: String,
    /// How strictly [`from_safetensors_with`] matches the stored tensors to the target's.
    pub restore: RestoreOptions,
}

impl Default for SafetensorsOptions {
    fn default() -> Self {
        Self { separator: ".".to_owned(), restore: RestoreOptions::default() }
    }
}

impl SafetensorsOptions {
    /// Sets [`separator`](Self::separator).
    pub fn separator(mut self, separator: impl Into<String>) -> Self {
        self.separator = separator.into();
        self
    }

    /// Sets [`restore`](Self::restore).
    pub fn restore(mut self, restore: RestoreOptions) -> Self {
        self.restore = restore;
        self
    }
}

/// The safetensors bytes of `tree` (e.g. a model's `params`), names joined with `"."` and the
/// metadata `{"format": "flax"}`. Write them with `std::fs::write`.
pub fn to_safetensors(tree: &FrozenDict) -> Result<Vec<u8>> {
    to_safetensors_with(tree, &SafetensorsOptions::default())
}

/// [`to_safetensors`] with a choice of separator.
///
/// # Errors
/// [`Error::Value`] for a scalar leaf, a key holding the separator, or a dtype safetensors
/// lacks (complex128, quantized).
pub fn to_safetensors_with(tree: &FrozenDict, options: &SafetensorsOptions) -> Result<Vec<u8>> {
    let mut tensors = Vec::new();
    flatten(&Value::Dict(to_state_dict(tree)), &options.separator, None, &mut tensors)?;
    let metadata = HashMap::from([("format".to_owned(), "flax".to_owned())]);
    write_tensors(&tensors, Some(metadata))
}

/// The tree stored in safetensors bytes, names split on `"."`, dicts ordered by name.
///
/// # Errors
/// [`Error::Format`] for a corrupt file, an unsupported dtype, or names that clash as paths
/// (`a` and `a.b`).
pub fn safetensors_restore(bytes: &[u8]) -> Result<FrozenDict> {
    safetensors_restore_with(bytes, &SafetensorsOptions::default())
}

/// [`safetensors_restore`] with a choice of separator.
pub fn safetensors_restore_with(bytes: &[u8], options: &SafetensorsOptions) -> Result<FrozenDict> {
    let mut root = FrozenDict::new();
    for (name, tensor) in read_tensors(bytes)? {
        let path: Vec<&str> = name.split(options.separator.as_str()).collect();
        insert_path(&mut root, &path, tensor)
            .map_err(|clash| malformed(format!("tensor names {name:?} and {clash:?} clash as paths")))?;
    }
    Ok(root)
}

/// Restores safetensors bytes into `target`'s structure, strictly (see the module docs), as
/// [`from_bytes`](super::from_bytes) does for msgpack: tensors are moved to the device of the
/// target's.
pub fn from_safetensors(target: &FrozenDict, bytes: &[u8]) -> Result<FrozenDict> {
    from_safetensors_with(target, bytes, &SafetensorsOptions::default())
}

/// [`from_safetensors`] with a choice of separator and strictness.
pub fn from_safetensors_with(
    target: &FrozenDict,
    bytes: &[u8],
    options: &SafetensorsOptions,
) -> Result<FrozenDict> {
    from_state_dict_with(target, &safetensors_restore_with(bytes, options)?, options.restore)
}

/// Every tensor in safetensors bytes, on the CPU, sorted by name.
pub(crate) fn read_tensors(bytes: &[u8]) -> Result<Vec<(String, Tensor)>> {
    let file = SafeTensors::deserialize(bytes).map_err(|e| malformed(e.to_string()))?;
    let mut tensors = file
        .iter()
        .map(|(name, view)| Ok((name.to_owned(), tensor_from_view(name, &view)?)))
        .collect::<Result<Vec<_>>>()?;
    tensors.sort_by(|(a, _), (b, _)| a.cmp(b));
    Ok(tensors)
}

/// The safetensors bytes of named tensors (any device, any strides).
pub(crate) fn write_tensors(
    tensors: &[(String, Tensor)],
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>> {
    let views = tensors
        .iter()
        .map(|(name, tensor)| Ok((name.as_str(), OwnedView::of(name, tensor)?)))
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize(views, metadata).map_err(|e| Error::Value(format!("safetensors: {e}")))
}

/// Collects the tensors of a state dict with their joined names; `name` is `None` at the root
/// (an empty key is a name too).
fn flatten(
    value: &Value,
    separator: &str,
    name: Option<&str>,
    out: &mut Vec<(String, Tensor)>,
) -> Result<()> {
    match (value, name) {
        (Value::Dict(dict), _) => dict.iter().try_for_each(|(key, child)| {
            if key.contains(separator) {
                return Err(Error::Value(format!(
                    "key {key:?} under {name:?} holds the separator {separator:?}, so it would not read back as one key"
                )));
            }
            let child_name = match name {
                Some(name) => format!("{name}{separator}{key}"),
                None => key.to_owned(),
            };
            flatten(child, separator, Some(&child_name), out)
        }),
        (Value::Tensor(tensor), Some(name)) => {
            out.push((name.to_owned(), tensor.shallow_clone()));
            Ok(())
        }
        // `to_state_dict` has turned every list into a dict, and the root is a dict.
        _ => Err(Error::Value(format!("safetensors files hold only tensors, but {name:?} is {value:?}"))),
    }
}

/// Inserts `tensor` at `path` under `root`, creating dicts on the way; on a clash, returns the
/// path of what is already there.
pub(crate) fn insert_path(
    root: &mut FrozenDict,
    path: &[&str],
    tensor: Tensor,
) -> std::result::Result<(), String> {
    let (last, parents) = path.split_last().ok_or_else(String::new)?;
    let mut dict = root;
    for (depth, key) in parents.iter().enumerate() {
        if matches!(dict.get(key), Some(Value::Tensor(_))) {
            return Err(path[..=depth].join("/"));
        }
        dict = dict.dict_mut(key);
    }
    if dict.contains_key(last) {
        return Err(path.join("/"));
    }
    dict.insert(*last, Value::Tensor(tensor));
    Ok(())
}

fn malformed(message: impl Into<String>) -> Error {
    Error::Format { format: "safetensors", message: message.into() }
}

/// The libtorch kind of each safetensors dtype that has one.
const DTYPES: [(Dtype, Kind); 15] = [
    (Dtype::BOOL, Kind::Bool),
    (Dtype::U8, Kind::Uint8),
    (Dtype::I8, Kind::Int8),
    (Dtype::I16, Kind::Int16),
    (Dtype::I32, Kind::Int),
    (Dtype::I64, Kind::Int64),
    (Dtype::F16, Kind::Half),
    (Dtype::BF16, Kind::BFloat16),
    (Dtype::F32, Kind::Float),
    (Dtype::F64, Kind::Double),
    (Dtype::C64, Kind::ComplexFloat),
    (Dtype::F8_E4M3, Kind::Float8e4m3fn),
    (Dtype::F8_E5M2, Kind::Float8e5m2),
    (Dtype::F8_E4M3FNUZ, Kind::Float8e4m3fnuz),
    (Dtype::F8_E5M2FNUZ, Kind::Float8e5m2fnuz),
];

fn tensor_from_view(name: &str, view: &TensorView) -> Result<Tensor> {
    let dtype = view.dtype();
    let kind = DTYPES.iter().find(|(d, _)| *d == dtype).map(|&(_, kind)| kind).ok_or_else(|| {
        malformed(format!("tensor {name:?} has dtype {dtype}, which libtorch (through tch) cannot hold"))
    })?;
    let shape = view
        .shape()
        .iter()
        .map(|&d| i64::try_from(d).map_err(|_| malformed(format!("tensor {name:?} has a dimension of {d}"))))
        .collect::<Result<Vec<_>>>()?;
    // safetensors has checked that the data is exactly shape × dtype bytes.
    let data = view.data();
    if kind == Kind::Bool && data.iter().any(|&b| b > 1) {
        return Err(malformed(format!("bool tensor {name:?} holds bytes other than 0 and 1")));
    }
    Ok(Tensor::f_from_data_size(data, &shape, kind)?)
}

/// A tensor's contiguous CPU bytes, as safetensors' writer takes them.
struct OwnedView {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl OwnedView {
    fn of(name: &str, tensor: &Tensor) -> Result<Self> {
        let kind = tensor.f_kind()?;
        let dtype = DTYPES.iter().find(|(_, k)| *k == kind).map(|&(dtype, _)| dtype).ok_or_else(|| {
            Error::Value(format!("tensor {name:?} is of kind {kind:?}, which safetensors has no dtype for"))
        })?;
        // Conjugated or negated views keep their data unresolved until asked.
        let tensor = tensor.f_resolve_conj()?.f_resolve_neg()?;
        let numel = tensor.numel();
        let mut data = vec![0u8; numel * kind.elt_size_in_bytes()];
        // libtorch copies from any device and any strides into C order.
        tensor.f_copy_data_u8(&mut data, numel)?;
        // libtorch sizes are never negative.
        let shape = tensor.size().iter().map(|&d| d.unsigned_abs() as usize).collect();
        Ok(Self { dtype, shape, data })
    }
}

impl View for OwnedView {
    fn dtype(&self) -> Dtype {
        self.dtype
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }

    fn data_len(&self) -> usize {
        self.data.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::frozen_dict::Scalar;
    use tch::Device;

    fn dict(entries: Vec<(&str, Value)>) -> FrozenDict {
        entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    fn arange(n: i64, kind: Kind) -> Value {
        Value::Tensor(Tensor::arange(n, (Kind::Int64, Device::Cpu)).to_kind(kind))
    }

    #[test]
    fn every_supported_kind_round_trips() {
        let tree: FrozenDict =
            DTYPES.iter().map(|&(dtype, kind)| (dtype.to_string(), arange(6, kind))).collect();
        let back = safetensors_restore(&to_safetensors(&tree).unwrap()).unwrap();
        for (name, value) in tree.iter() {
            let (a, b) = (value.as_tensor().unwrap(), back.tensor(&[name]).unwrap());
            assert_eq!(a.kind(), b.kind(), "{name}");
            assert!(a.to_kind(Kind::Double).equal(&b.to_kind(Kind::Double)), "{name}");
        }
    }

    #[test]
    fn names_join_paths_and_lists_go_through_their_state_dict() {
        let tree = dict(vec![(
            "params",
            Value::Dict(dict(vec![(
                "acts",
                Value::List(vec![arange(2, Kind::Float), arange(3, Kind::Float)]),
            )])),
        )]);
        let bytes = to_safetensors_with(&tree, &SafetensorsOptions::default().separator("/")).unwrap();
        let names: Vec<String> = read_tensors(&bytes).unwrap().into_iter().map(|(name, _)| name).collect();
        assert_eq!(names, ["params/acts/0", "params/acts/1"]);
        let back = safetensors_restore(&bytes).unwrap();
        assert_eq!(back.keys().collect::<Vec<_>>(), ["params/acts/0", "params/acts/1"]);
    }

    #[test]
    fn empty_keys_are_names_too() {
        let zeros = |name: &str| (name.to_owned(), Tensor::zeros([1], (Kind::Float, Device::Cpu)));
        for names in [&[".a", "a..b", "b."][..], &[""]] {
            let tensors: Vec<_> = names.iter().map(|name| zeros(name)).collect();
            let bytes = write_tensors(&tensors, None).unwrap();
            let rewritten = to_safetensors(&safetensors_restore(&bytes).unwrap()).unwrap();
            let back: Vec<String> =
                read_tensors(&rewritten).unwrap().into_iter().map(|(name, _)| name).collect();
            assert_eq!(back, names);
        }
    }

    #[test]
    fn scalars_separators_in_keys_and_complex128_are_refused() {
        let scalar = dict(vec![("step", Value::Scalar(Scalar::Int(1)))]);
        assert!(matches!(to_safetensors(&scalar), Err(Error::Value(m)) if m.contains("\"step\"")));
        let dotted = dict(vec![("a.b", arange(1, Kind::Float))]);
        assert!(matches!(to_safetensors(&dotted), Err(Error::Value(m)) if m.contains("separator")));
        assert!(to_safetensors_with(&dotted, &SafetensorsOptions::default().separator("/")).is_ok());
        let complex = dict(vec![("c", arange(2, Kind::ComplexDouble))]);
        assert!(matches!(to_safetensors(&complex), Err(Error::Value(m)) if m.contains("ComplexDouble")));
    }

    #[test]
    fn clashing_names_and_corrupt_bytes_are_format_errors() {
        let a = (String::from("a"), Tensor::zeros([1], (Kind::Float, Device::Cpu)));
        let ab = (String::from("a.b"), Tensor::zeros([1], (Kind::Float, Device::Cpu)));
        let bytes = write_tensors(&[a, ab], None).unwrap();
        assert!(
            matches!(safetensors_restore(&bytes), Err(Error::Format { message, .. }) if message.contains("clash"))
        );
        for end in 0..bytes.len() {
            assert!(matches!(safetensors_restore(&bytes[..end]), Err(Error::Format { .. })), "{end}");
        }
    }

    /// A file made by hand: `header` (JSON) and the data after it.
    fn raw_file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend(header.as_bytes());
        bytes.extend(data);
        bytes
    }

    #[test]
    fn bool_bytes_must_be_zero_or_one_and_unsupported_dtypes_are_refused() {
        let bools = |data: &[u8]| {
            safetensors_restore(&raw_file(r#"{"b":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}}"#, data))
        };
        assert!(bools(&[1, 0]).is_ok());
        assert!(matches!(bools(&[1, 2]), Err(Error::Format { message, .. }) if message.contains("bool")));
        let u16s = raw_file(r#"{"u":{"dtype":"U16","shape":[1],"data_offsets":[0,2]}}"#, &[0, 0]);
        assert!(
            matches!(safetensors_restore(&u16s), Err(Error::Format { message, .. }) if message.contains("U16"))
        );
    }
}
