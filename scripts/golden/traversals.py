"""Golden vectors for Flax's `Traversal` classes (flax 0.12.8, `flax.traverse_util`).

Run with `.golden-venv/bin/python scripts/golden/traversals.py`; writes
`flax-runtime/tests/data/traversals.json`, read by `flax-runtime/tests/traversals.rs`, which
builds the same traversals and compares. Values are encoded as in `tree.py`, plus
`{"list": [...]}` for lists and tuples. Each case is `{"ok": value}` or `{"error": message}`.
"""

import json
import os
import warnings

from flax import traverse_util as tu

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "flax-runtime", "tests", "data", "traversals.json")


def enc(x):
  if isinstance(x, dict):
    return {"dict": [[k, enc(v)] for k, v in x.items()]}
  if isinstance(x, (list, tuple)):
    return {"list": [enc(v) for v in x]}
  if isinstance(x, bool):
    raise TypeError("not used")
  if isinstance(x, int):
    return {"int": x}
  raise TypeError(type(x))


def run(fn):
  try:
    out = fn()
    return {"ok": enc(list(out) if not isinstance(out, (dict, list, tuple)) else out)}
  except (ValueError, KeyError, IndexError) as e:
    return {"error": type(e).__name__}


def main():
  warnings.simplefilter("ignore", DeprecationWarning)
  t = tu.t_identity
  records = [{"foo": 1, "bar": 2}, {"foo": 3, "bar": 4}]
  nested = {"foo": {"bar": 2}, "baz": [5, 6, 7]}
  tree = {"b": [1, {"c": 2}], "a": 3}
  seq = (1, 2, 3, 4, 5)
  inputs = {"records": records, "nested": nested, "tree": tree, "seq": seq}
  double = lambda x: x + x
  cases = {
    # spec L25346: t_identity.each()['foo'].iterate(data) == [1, 3]
    "each_item_iterate": run(lambda: t.each()["foo"].iterate(records)),
    "each_item_update": run(lambda: t.each()["foo"].update(double, records)),
    "each_item_set": run(lambda: t.each()["bar"].set([10, 20], records)),
    "set_too_few": run(lambda: t.each()["bar"].set([10], records)),
    "set_too_many": run(lambda: t.each()["bar"].set([10, 20, 30], records)),
    "item_item_update": run(lambda: t["foo"]["bar"].update(double, nested)),
    "missing_key": run(lambda: t["nope"].iterate(nested)),
    "index_negative": run(lambda: t["baz"][-1].iterate(nested)),
    "index_out_of_range": run(lambda: t["baz"][3].iterate(nested)),
    "each_dict_iterate": run(lambda: t.each().iterate(records[0])),
    "each_dict_update": run(lambda: t.each().update(double, records[0])),
    "merge_iterate": run(lambda: t.merge(t[0]["foo"], t[1]["bar"]).iterate(records)),
    "merge_update": run(lambda: t.merge(t[0]["foo"], t[1]["bar"]).update(double, records)),
    "slice_iterate": run(lambda: t[1:4].iterate(seq)),
    "slice_step_iterate": run(lambda: t[::2].iterate(seq)),
    "slice_reverse_iterate": run(lambda: t[::-2].iterate(seq)),
    "slice_negative_bounds": run(lambda: t[-4:-1].iterate(seq)),
    "slice_update_tuple": run(lambda: t[1:4].update(double, seq)),
    "tree_iterate": run(lambda: t.tree().iterate(tree)),
    "tree_update": run(lambda: t.tree().update(double, tree)),
    "filter_iterate": run(lambda: t.each().filter(lambda r: r["foo"] > 1)["bar"].iterate(records)),
    "filter_update": run(lambda: t.each().filter(lambda r: r["foo"] > 1)["bar"].update(double, records)),
  }
  with open(OUT, "w") as f:
    json.dump({"flax": "0.12.8", "inputs": {k: enc(v) for k, v in inputs.items()}, "cases": cases}, f, indent=1)
  print(f"wrote {OUT}")


if __name__ == "__main__":
  main()
