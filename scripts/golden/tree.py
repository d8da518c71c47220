"""Golden vectors for flax.traverse_util and the state-dict rules of flax.serialization.

Run with the golden venv: `.golden-venv/bin/python scripts/golden/tree.py`.
Writes flax-runtime/tests/data/traverse_util.json and flax-runtime/tests/data/state_dict.json,
read by flax-runtime/tests/traverse_util.rs and flax-runtime/tests/tree_derive.rs.

JSON cannot hold tuples, ordered dicts of any key type, arrays or Flax's empty_node, so every
value is tagged: {"int": 1}, {"float": 0.5}, {"str": "a"}, {"none": null},
{"empty_node": null}, {"array": {"shape": [...], "dtype": "float32", "data": [...]}} (data
flattened in C order) and {"dict": [[key, value], ...]} (insertion order kept).
"""

import json
import os
import warnings

import numpy as np
from flax import serialization, struct, traverse_util

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "flax-runtime", "tests", "data")


def enc(x):
    if x is traverse_util.empty_node:
        return {"empty_node": None}
    if isinstance(x, dict):
        return {"dict": [[k, enc(v)] for k, v in x.items()]}
    if isinstance(x, bool) or x is None:
        raise TypeError("not used by these vectors")
    if isinstance(x, int):
        return {"int": x}
    if isinstance(x, float):
        return {"float": x}
    if isinstance(x, str):
        return {"str": x}
    if isinstance(x, np.ndarray):
        return {"array": {"shape": list(x.shape), "dtype": x.dtype.name, "data": x.ravel().tolist()}}
    raise TypeError(type(x))


def enc_state(x):
    """Like enc, plus None (state dicts of Optional values)."""
    if x is None:
        return {"none": None}
    if isinstance(x, dict):
        return {"dict": [[k, enc_state(v)] for k, v in x.items()]}
    return enc(x)


def enc_flat(flat):
    """A flat dict: [[key, value], ...]; keys are lists (tuples) or strings (sep given)."""
    return [[list(k) if isinstance(k, tuple) else k, enc(v)] for k, v in flat.items()]


def traverse_util_vectors():
    cases = {}
    # The spec's example (flatten_dict docstring, L26083-L26092), and its variants.
    xs = {"foo": 1, "bar": {"a": 2, "b": {}}}
    cases["xs"] = enc(xs)
    cases["flatten"] = enc_flat(traverse_util.flatten_dict(xs))
    cases["flatten_keep_empty"] = enc_flat(traverse_util.flatten_dict(xs, keep_empty_nodes=True))
    cases["flatten_sep"] = enc_flat(traverse_util.flatten_dict(xs, sep="/"))
    cases["flatten_keep_empty_sep"] = enc_flat(traverse_util.flatten_dict(xs, keep_empty_nodes=True, sep="."))
    cases["flatten_empty_keep_empty"] = enc_flat(traverse_util.flatten_dict({}, keep_empty_nodes=True))

    # is_leaf: keep every dict one level below the root whole.
    deep = {"a": {"b": {"c": 1}, "d": 2}, "e": 3, "f": {"g": {"h": 4}}}
    cases["deep"] = enc(deep)
    cases["flatten_is_leaf_depth1"] = enc_flat(traverse_util.flatten_dict(deep, is_leaf=lambda k, x: len(k) == 1))
    cases["flatten_is_leaf_root"] = enc_flat(traverse_util.flatten_dict(deep, is_leaf=lambda k, x: len(k) == 0))
    cases["flatten_deep_sep"] = enc_flat(traverse_util.flatten_dict(deep, sep="/"))

    # The spec's unflatten_dict example (L26146-L26160), and round trips.
    cases["unflatten"] = enc(traverse_util.unflatten_dict({("foo",): 1, ("bar", "a"): 2}))
    flat_keep = traverse_util.flatten_dict(xs, keep_empty_nodes=True)
    cases["unflatten_keep_empty"] = enc(traverse_util.unflatten_dict(flat_keep))
    flat_sep = traverse_util.flatten_dict(deep, sep="/")
    cases["unflatten_deep_sep"] = enc(traverse_util.unflatten_dict(flat_sep, sep="/"))

    # The spec's path_aware_map example (L26199-L26202), and one keeping an empty node.
    params = {"a": {"x": 10, "y": 3}, "b": {"x": 20}}
    cases["path_aware_map_input"] = enc(params)
    cases["path_aware_map"] = enc(traverse_util.path_aware_map(lambda path, x: x + 5 if "x" in path else -x, params))
    with_empty = {"a": {"x": 10, "e": {}}, "b": 1}
    cases["path_aware_map_empty_input"] = enc(with_empty)
    cases["path_aware_map_empty"] = enc(
        traverse_util.path_aware_map(lambda path, x: x * len(path), with_empty)
    )

    # ModelParamTraversal: sorted iteration, updates of the selected leaves, empty nodes kept.
    model = {
        "Dense_1": {"kernel": 1, "bias": 2},
        "Dense_0": {"kernel": 3, "bias": 4},
        "LayerNorm_0": {"scale": 5, "bias": 6},
        "Empty_0": {},
    }
    cases["model_params"] = enc(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        biases = traverse_util.ModelParamTraversal(lambda path, _: path.endswith("/bias"))
        dense0 = traverse_util.ModelParamTraversal(lambda path, _: "Dense_0" in path)
        cases["traversal_bias_iterate"] = [enc(v) for v in biases.iterate(model)]
        cases["traversal_bias_update"] = enc(biases.update(lambda x: x * 10, model))
        cases["traversal_dense0_iterate"] = [enc(v) for v in dense0.iterate(model)]
        cases["traversal_dense0_update"] = enc(dense0.update(lambda x: -x, model))
    return cases


@struct.dataclass
class TrainStateLike:
    step: int
    params: dict
    opt_state: tuple
    extra: list
    learning_rate: float = struct.field(pytree_node=False)


def state_dict_vectors():
    state = TrainStateLike(
        step=3,
        params={
            "Dense_0": {
                "kernel": np.arange(6, dtype=np.float32).reshape(2, 3),
                "bias": np.array([0.5, -1.0, 2.0], dtype=np.float32),
            },
            "Dense_1": {"kernel": np.arange(3, dtype=np.float32).reshape(3, 1)},
        },
        opt_state=(np.ones(2, dtype=np.float32), ()),
        extra=[np.full((1,), 7.0, dtype=np.float32), None],
        learning_rate=0.1,
    )
    return {"train_state": enc_state(serialization.to_state_dict(state))}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, vectors in [("traverse_util", traverse_util_vectors()), ("state_dict", state_dict_vectors())]:
        with open(os.path.join(OUT, f"{name}.json"), "w") as f:
            json.dump(vectors, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
