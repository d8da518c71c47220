"""Golden vectors for Flax's attention (flax 0.12.8): `dot_product_attention_weights`,
`dot_product_attention` (bias, masks, dropout broadcast or not), `make_attention_mask`,
`make_causal_mask`, `combine_masks`, `MultiHeadDotProductAttention` (cross-attention with a
padding mask, several batch dims, qkv/out features, dropout, decoding with the cache one
position at a time), a custom `attention_fn` (the logits doubled) and `precision=HIGHEST`,
and `SelfAttention` with a causal mask.

Run with `.golden-venv/bin/python scripts/golden/layers_attention.py`; writes
`flax-runtime/tests/data/layers/attention.msgpack` (format: `layers_common.py`; function
cases have no variables). The spec's 0.6.10 call `(inputs_q, inputs_kv, mask, deterministic)`
is 0.12.8's `(inputs_q, inputs_kv=…, mask=…, deterministic=…)`.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import flax.linen as nn

from layers_common import SEED, normal, to_numpy, write

warnings.simplefilter("ignore", DeprecationWarning)
DROPOUT_SEED = 1


def fn_case(out, **inputs):
  return {"inputs": inputs, "output": to_numpy(out)}


# The keyword each input other than the first is passed as (0.12.8's third positional
# argument is inputs_v, not the spec's mask).
KEYWORDS = {"kv": "inputs_kv", "mask": "mask"}


def module_case(module, inputs, rngs=None, **kwargs):
  first, *rest = inputs.items()
  kwargs.update({KEYWORDS[name]: value for name, value in rest})
  variables = module.init(jax.random.PRNGKey(SEED), first[1], **kwargs)
  out = module.apply(variables, first[1], rngs=rngs, **kwargs)
  return {"inputs": inputs, "variables": to_numpy(variables), "output": to_numpy(out)}


def doubled_logits_attention(
  query, key, value, mask=None, dropout_rng=None, dropout_rate=0.0, broadcast_dropout=True,
  deterministic=False, dtype=None, precision=None,
):
  """Flax's attention with the logits doubled (the query scaled by 2). The arguments are named
  because Flax passes an `attention_fn` only the keywords its signature names."""
  return nn.dot_product_attention(
    query * 2.0, key, value, mask=mask, dropout_rng=dropout_rng, dropout_rate=dropout_rate,
    broadcast_dropout=broadcast_dropout, deterministic=deterministic, dtype=dtype, precision=precision,
  )


def decode_case():
  """Init on the full length, then feed the positions one by one with `cache` mutable."""
  module = nn.MultiHeadDotProductAttention(num_heads=2, qkv_features=6, decode=True)
  x = normal((2, 4, 6), 20)
  variables = module.init(jax.random.PRNGKey(SEED), x, inputs_kv=x)
  params, cache = variables["params"], variables["cache"]
  steps = {}
  for i in range(x.shape[1]):
    xi = x[:, i : i + 1]
    y, updated = module.apply({"params": params, "cache": cache}, xi, inputs_kv=xi, mutable=["cache"])
    cache = updated["cache"]
    steps[str(i)] = to_numpy(y)
  # The same layer without the cache, with a causal mask, gives the same outputs at once.
  full = nn.MultiHeadDotProductAttention(num_heads=2, qkv_features=6).apply(
    {"params": params}, x, inputs_kv=x, mask=nn.make_causal_mask(x[..., 0])
  )
  return {
    "inputs": {"x": x},
    "variables": to_numpy(variables),
    "output": steps,
    "cache": to_numpy(cache),
    "causal_output": to_numpy(full),
  }


def main():
  c = {}
  q, k, v = normal((2, 3, 2, 4), 1), normal((2, 5, 2, 4), 2), normal((2, 5, 2, 3), 3)
  bias = normal((2, 2, 3, 5), 4)
  mask = normal((2, 1, 3, 5), 5) > -0.5
  c["weights"] = fn_case(nn.dot_product_attention_weights(q, k), q=q, k=k)
  c["weights_bias_mask"] = fn_case(nn.dot_product_attention_weights(q, k, bias=bias, mask=mask), q=q, k=k, bias=bias, mask=mask)
  c["attention_mask"] = fn_case(nn.dot_product_attention(q, k, v, mask=mask), q=q, k=k, v=v, mask=mask)
  rng = jax.random.PRNGKey(DROPOUT_SEED)
  c["attention_dropout"] = fn_case(
    nn.dot_product_attention(q, k, v, dropout_rng=rng, dropout_rate=0.5), q=q, k=k, v=v
  )
  c["attention_dropout_unbroadcast"] = fn_case(
    nn.dot_product_attention(q, k, v, dropout_rng=rng, dropout_rate=0.3, broadcast_dropout=False), q=q, k=k, v=v
  )
  tokens = np.array([[3, 1, 0, 0], [2, 0, 5, 0]], np.int32)
  c["padding_mask"] = fn_case(nn.make_attention_mask(tokens > 0, tokens > 0), tokens=tokens)
  c["greater_equal_mask"] = fn_case(
    nn.make_attention_mask(tokens, tokens[:, :3], jnp.greater_equal, extra_batch_dims=1), tokens=tokens
  )
  c["causal_mask"] = fn_case(nn.make_causal_mask(tokens), tokens=tokens)
  c["combined_mask"] = fn_case(
    nn.combine_masks(nn.make_attention_mask(tokens > 0, tokens > 0), None, nn.make_causal_mask(tokens)),
    tokens=tokens,
  )
  xq, xkv = normal((2, 4, 6), 6), normal((2, 5, 6), 7)
  pad = nn.make_attention_mask(np.ones((2, 4), bool), np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool))
  c["mhdpa"] = module_case(nn.MultiHeadDotProductAttention(num_heads=2), {"q": xq, "kv": xkv, "mask": pad})
  c["mhdpa_features"] = module_case(
    nn.MultiHeadDotProductAttention(num_heads=4, qkv_features=8, out_features=3, use_bias=False),
    {"q": xq, "kv": xkv},
  )
  c["mhdpa_custom_attention_fn"] = module_case(
    nn.MultiHeadDotProductAttention(num_heads=2, attention_fn=doubled_logits_attention),
    {"q": xq, "kv": xkv, "mask": pad},
  )
  c["mhdpa_precision"] = module_case(
    nn.MultiHeadDotProductAttention(num_heads=2, precision=jax.lax.Precision.HIGHEST),
    {"q": xq, "kv": xkv, "mask": pad},
  )
  x4 = normal((4, 3, 2, 5), 8)
  c["mhdpa_batch_dims"] = module_case(nn.MultiHeadDotProductAttention(num_heads=8, qkv_features=16), {"q": x4, "kv": x4})
  c["mhdpa_dropout"] = module_case(
    nn.MultiHeadDotProductAttention(num_heads=2, dropout_rate=0.5),
    {"q": xq, "kv": xkv},
    rngs={"dropout": jax.random.PRNGKey(DROPOUT_SEED)},
    deterministic=False,
  )
  xs = normal((2, 5, 4), 9)
  c["self_attention_causal"] = module_case(
    nn.SelfAttention(num_heads=2), {"x": xs, "mask": nn.make_causal_mask(xs[..., 0])}
  )
  c["decode"] = decode_case()
  write("attention", c)


if __name__ == "__main__":
  main()
