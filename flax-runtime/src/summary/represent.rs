//! How values appear in the table: arrays as `float32[16,9]`, other leaves as Python's `repr`,
//! dictionaries with sorted keys (Flax's `_represent_tree`, `_normalize_structure` and
//! `_maybe_render`, where JAX's tree flattening sorts dictionary keys).

use crate::core::frozen_dict::{dtype_name, Value};
use crate::core::partition_spec::names_repr;

/// A value reduced to what the table prints: text leaves in nested sequences and mappings.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Node {
    /// A leaf as printed (`float32[4]`, `True`, `None`).
    Leaf(String),
    /// A tuple or list.
    Seq(Vec<Node>),
    /// A dictionary, keys sorted.
    Map(Vec<(String, Node)>),
}

/// `value` as the table prints it.
pub(crate) fn represent(value: &Value) -> Node {
    match value {
        Value::Tensor(t) => {
            let shape: Vec<String> = t.size().iter().map(i64::to_string).collect();
            Node::Leaf(format!("{}[{}]", dtype_name(t.kind()), shape.join(",")))
        }
        Value::Dict(d) => {
            let mut entries: Vec<(String, Node)> =
                d.iter().map(|(k, v)| (k.to_owned(), represent(v))).collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Node::Map(entries)
        }
        Value::List(items) => Node::Seq(items.iter().map(represent).collect()),
        Value::Scalar(_) => Node::Leaf(format!("{value:?}")),
        // Flax's `_PartitionedArrayRepresentation`: the array, then `P` and the names tuple.
        Value::Boxed(b) => match represent(b.unbox()) {
            Node::Leaf(array) => Node::Leaf(format!("{array} P({})", names_repr(b.names()))),
            other => other,
        },
    }
}

/// A method's arguments as Flax's `_process_inputs` shows them: one argument as itself,
/// several as a tuple, none as an empty tuple.
pub(crate) fn represent_inputs(inputs: &[Value]) -> Node {
    match inputs {
        [single] => represent(single),
        _ => Node::Seq(inputs.iter().map(represent).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::frozen_dict::{FrozenDict, Scalar};
    use tch::{Device, Kind, Tensor};

    #[test]
    fn arrays_show_dtype_and_shape_and_dicts_sort() {
        let kernel = Value::Tensor(Tensor::zeros([9, 4], (Kind::Float, Device::Cpu)));
        let bias = Value::Tensor(Tensor::zeros([4], (Kind::Float, Device::Cpu)));
        let dict = FrozenDict::new().copy([("kernel", kernel), ("bias", bias)]);
        let expected = Node::Map(vec![
            ("bias".into(), Node::Leaf("float32[4]".into())),
            ("kernel".into(), Node::Leaf("float32[9,4]".into())),
        ]);
        assert_eq!(represent(&Value::Dict(dict)), expected);
        assert_eq!(represent_inputs(&[Value::Scalar(Scalar::Bool(true))]), Node::Leaf("True".into()));
        assert_eq!(represent_inputs(&[]), Node::Seq(Vec::new()));
    }
}
