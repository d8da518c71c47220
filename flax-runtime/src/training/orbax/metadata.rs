//! Orbax's JSON files next to the arrays: `_METADATA` (the tree: each leaf's key path and
//! value type), `_CHECKPOINT_METADATA` (the step's), and `_strings.json` (string leaves).
//!
//! Their layout is Orbax 0.12.8's, from `orbax/checkpoint/_src/metadata/tree.py`
//! (`InternalTreeMetadata.to_json`: `tree_metadata` maps `str(tuple_key)` to `key_metadata`,
//! a list of `{key, key_type}` with `key_type` 1 for a sequence index and 2 for a dict key, and
//! `value_metadata` `{value_type, skip_deserialize, write_shape}`),
//! `orbax/checkpoint/_src/metadata/checkpoint.py` (`StepMetadata`) and
//! `orbax/checkpoint/_src/serialization/type_handlers.py` (`StringHandler`).

use crate::core::errors::{Error, Result};
use serde_json::{json, Map, Value as Json};
use std::time::{SystemTime, UNIX_EPOCH};

/// `_METADATA`'s file name.
pub(crate) const METADATA: &str = "_METADATA";
/// The step metadata's file name.
pub(crate) const CHECKPOINT_METADATA: &str = "_CHECKPOINT_METADATA";
/// The string leaves' file name.
pub(crate) const STRINGS: &str = "_strings.json";

/// `KeyType.SEQUENCE` and `KeyType.DICT` in Orbax's `tree_metadata`.
const SEQUENCE_KEY: i64 = 1;
const DICT_KEY: i64 = 2;

/// A key of a leaf's path, and whether it is a sequence index (else a dict key).
pub(crate) type TreeKey = (String, bool);

/// One leaf of the tree: its keys from the root, and what Orbax stored there.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LeafMetadata {
    /// The keys, with whether each is a sequence index.
    pub(crate) keys: Vec<TreeKey>,
    /// Orbax's `value_type`: `jax.Array`, `np.ndarray`, `scalar`, `string`, or an empty
    /// node's (`None`, `Dict`, `List`, `Tuple`, …).
    pub(crate) value_type: String,
}

impl LeafMetadata {
    /// Orbax's parameter name for the leaf: its keys joined by dots, which names its zarr array.
    pub(crate) fn param_name(&self) -> String {
        self.keys.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(".")
    }
}

/// What `_METADATA` says: the leaves in file order, and whether the arrays are in OCDBT.
#[derive(Debug)]
pub(crate) struct TreeMetadata {
    pub(crate) leaves: Vec<LeafMetadata>,
    pub(crate) use_ocdbt: bool,
}

fn malformed(message: impl std::fmt::Display) -> Error {
    Error::Format { format: "Orbax _METADATA", message: message.to_string() }
}

/// Parses `_METADATA`.
///
/// # Errors
/// [`Error::Format`] for anything but Orbax's layout, and for `use_zarr3` (zarr v3 arrays are
/// not read).
pub(crate) fn parse_tree_metadata(bytes: &[u8]) -> Result<TreeMetadata> {
    let json: Json = serde_json::from_slice(bytes).map_err(|e| malformed(format!("not JSON: {e}")))?;
    let tree = json
        .get("tree_metadata")
        .and_then(Json::as_object)
        .ok_or_else(|| malformed("no tree_metadata object"))?;
    if json.get("use_zarr3") == Some(&json!(true)) {
        return Err(malformed(
            "the arrays are zarr v3 (use_zarr3), which is not supported; save with use_zarr3=False",
        ));
    }
    let use_ocdbt = json.get("use_ocdbt").and_then(Json::as_bool).unwrap_or(false);
    let leaves =
        tree.iter().map(|(name, entry)| parse_leaf(entry).map_err(|e| malformed(format!("{name}: {e}"))));
    Ok(TreeMetadata { leaves: leaves.collect::<Result<_>>()?, use_ocdbt })
}

fn parse_leaf(entry: &Json) -> std::result::Result<LeafMetadata, String> {
    let keys = entry.get("key_metadata").and_then(Json::as_array).ok_or("no key_metadata list")?;
    let keys = keys
        .iter()
        .map(|key| {
            let name = match key.get("key") {
                Some(Json::String(s)) => s.clone(),
                Some(Json::Number(n)) => n.to_string(),
                other => return Err(format!("key {other:?} is not a string")),
            };
            match key.get("key_type").and_then(Json::as_i64) {
                Some(SEQUENCE_KEY) => Ok((name, true)),
                Some(DICT_KEY) => Ok((name, false)),
                other => Err(format!("key_type {other:?} is neither 1 (sequence) nor 2 (dict)")),
            }
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    if keys.is_empty() {
        return Err("a leaf with no keys (a bare array at the root) is not supported".into());
    }
    let value_type =
        entry.pointer("/value_metadata/value_type").and_then(Json::as_str).ok_or("no value_type")?;
    Ok(LeafMetadata { keys, value_type: value_type.to_owned() })
}

/// A leaf to write: its metadata and, for arrays saved as `jax.Array`, its shape.
pub(crate) struct LeafToWrite {
    pub(crate) leaf: LeafMetadata,
    pub(crate) write_shape: Option<Vec<i64>>,
}

/// `_METADATA` for `leaves`, as Orbax 0.12.8 writes it.
pub(crate) fn tree_metadata_json(leaves: &[LeafToWrite], use_ocdbt: bool) -> Vec<u8> {
    let mut tree = Map::new();
    for LeafToWrite { leaf, write_shape } in leaves {
        let tuple_key = leaf.keys.iter().map(|(k, _)| format!("'{k}'")).collect::<Vec<_>>();
        let tuple_key = if tuple_key.len() == 1 {
            format!("({},)", tuple_key[0])
        } else {
            format!("({})", tuple_key.join(", "))
        };
        let key_metadata: Vec<Json> = leaf
            .keys
            .iter()
            .map(|(key, sequence)| json!({"key": key, "key_type": if *sequence { SEQUENCE_KEY } else { DICT_KEY }}))
            .collect();
        let skip = !matches!(leaf.value_type.as_str(), "np.ndarray" | "jax.Array" | "scalar" | "string");
        let mut value = json!({"value_type": leaf.value_type, "skip_deserialize": skip});
        if let Some(shape) = write_shape {
            value["write_shape"] = json!(shape);
        }
        tree.insert(tuple_key, json!({"key_metadata": key_metadata, "value_metadata": value}));
    }
    let json = json!({
        "tree_metadata": tree,
        "use_ocdbt": use_ocdbt,
        "use_zarr3": false,
        "store_array_data_equal_to_fill_value": true,
        "custom_metadata": null,
    });
    json.to_string().into_bytes()
}

/// `_CHECKPOINT_METADATA` for a checkpoint saved now by `item_handlers` (the handler's class
/// path, or a map of item names to them in a `CheckpointManager` step).
pub(crate) fn checkpoint_metadata_json(item_handlers: Json) -> Vec<u8> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    json!({
        "item_handlers": item_handlers,
        "metrics": {},
        "performance_metrics": {},
        "init_timestamp_nsecs": now,
        "commit_timestamp_nsecs": now,
        "custom_metadata": {},
    })
    .to_string()
    .into_bytes()
}

/// The handler Orbax's `PyTreeCheckpointer` and `StandardCheckpointer` record.
pub(crate) const PYTREE_HANDLER: &str =
    "orbax.checkpoint._src.handlers.pytree_checkpoint_handler.PyTreeCheckpointHandler";

/// Parses `_strings.json`: parameter names to strings.
pub(crate) fn parse_strings(bytes: &[u8]) -> Result<Map<String, Json>> {
    let json: Json = serde_json::from_slice(bytes)
        .map_err(|e| Error::Format { format: "Orbax _strings.json", message: format!("not JSON: {e}") })?;
    match json {
        Json::Object(map) => Ok(map),
        _ => Err(Error::Format { format: "Orbax _strings.json", message: "not a JSON object".into() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_metadata_parses_back() {
        let leaves = vec![
            LeafToWrite {
                leaf: LeafMetadata {
                    keys: vec![("opt".into(), false), ("0".into(), true)],
                    value_type: "np.ndarray".into(),
                },
                write_shape: None,
            },
            LeafToWrite {
                leaf: LeafMetadata { keys: vec![("step".into(), false)], value_type: "scalar".into() },
                write_shape: None,
            },
        ];
        let json = tree_metadata_json(&leaves, true);
        let text = String::from_utf8(json.clone()).unwrap();
        assert!(text.contains(r#""('opt', '0')""#) && text.contains(r#""('step',)""#), "{text}");
        let parsed = parse_tree_metadata(&json).unwrap();
        assert!(parsed.use_ocdbt);
        assert_eq!(parsed.leaves, leaves.into_iter().map(|l| l.leaf).collect::<Vec<_>>());
        assert_eq!(parsed.leaves[0].param_name(), "opt.0");
    }

    #[test]
    fn malformed_metadata_is_a_format_error() {
        for (bytes, expected) in [
            (&b"{"[..], "not JSON"),
            (b"{}", "no tree_metadata"),
            (br#"{"tree_metadata": {"x": {"key_metadata": [{"key": "a", "key_type": 7}]}}}"#, "key_type"),
            (br#"{"tree_metadata": {}, "use_zarr3": true}"#, "zarr v3"),
        ] {
            let message = parse_tree_metadata(bytes).unwrap_err().to_string();
            assert!(message.contains(expected), "{message}");
        }
    }
}
