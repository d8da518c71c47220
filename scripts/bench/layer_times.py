"""Where the quickstart training step spends its time: each layer's forward pass, and its
forward and backward pass together, in libtorch (through PyTorch eager, on the tensors and
layouts the library hands libtorch) and in XLA (Flax's `jax.jit`), at one batch size.

The library's step costs what libtorch's kernels cost (it is within a few per cent of
hand-written `tch`, see `quickstart_train_step.py`), so this table says which kernels make
it faster or slower than Flax/JAX-jit. Run, from the repository root, with the same set-up as
`quickstart_train_step.py`:

    .golden-venv/bin/python scripts/bench/layer_times.py [--threads 1] [--batch 32] \
        [--rounds 5] [--samples 5] [--iters 20]

Layers, with the quickstart's shapes (NHWC, HWIO kernels):
- `conv0`: 3x3 convolution 1 -> 32 channels on 28x28 images; gradients for the kernel and
  the bias (the images are data).
- `relu_pool0`: ReLU then 2x2 average pooling of the 28x28x32 activations.
- `conv1`: 3x3 convolution 32 -> 64 channels on 14x14; gradients for input, kernel, bias.
- `relu_pool1`: ReLU then 2x2 average pooling of the 14x14x64 activations.
- `dense0`: `x @ kernel + bias`, 3136 -> 256; gradients for input, kernel, bias.
- `head`: ReLU, `Dense(10)` and the mean softmax cross-entropy with integer labels.

libtorch runs as the library runs it: NHWC data viewed as NCHW (channels-last strides),
HWIO kernels viewed as OIHW, `addmm` for dense layers, `avg_pool2d`, `relu`. "fwd+bwd" is
the forward pass with gradients recorded and `torch.autograd.grad` with a random cotangent;
in JAX, one jitted function returning the forward output and the `jax.vjp` cotangents (so
XLA cannot drop the forward pass). Threads, XLA flags and glibc's malloc setting are those of
`quickstart_train_step.py`. Times are medians over rounds (frameworks alternating) of the
median of `--samples` samples of `--iters` calls, in milliseconds.
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from quickstart_train_step import TORCH_PYTHON, keep_malloc_memory, run_json, set_xla_threads  # noqa: E402

def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of both frameworks")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5, help="rounds, each timing both frameworks")
    parser.add_argument("--samples", type=int, default=5, help="timed samples per layer per round")
    parser.add_argument("--iters", type=int, default=20, help="calls per sample")
    parser.add_argument("--framework", choices=["torch"], help=argparse.SUPPRESS)  # the subprocess
    return parser.parse_args()


def median_ms(call, samples, iters, sync=lambda result: result):
    """The median over `samples` of the mean time of `iters` calls, after a warm-up."""
    for _ in range(3):
        sync(call())
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        for _ in range(iters):
            result = call()
        sync(result)
        times.append((time.perf_counter() - start) / iters * 1e3)
    return statistics.median(times)


def torch_layers(batch):
    """Per layer: (forward, forward+backward) closures on libtorch, laid out as the library."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)

    def nhwc(*shape, grad=True):  # NHWC memory, seen as NCHW
        return torch.randn(*shape).permute(0, 3, 1, 2).requires_grad_(grad)

    def hwio(*shape):  # HWIO memory, seen as OIHW
        return (torch.randn(*shape) * 0.1).permute(3, 2, 0, 1).requires_grad_()

    def conv(x, w, b):
        return F.conv2d(x, w, b, padding=1)

    def relu_pool(x):
        return F.avg_pool2d(x.relu(), 2, 2)

    labels = torch.randint(0, 10, (batch,))

    def head(x, w, b):
        return F.cross_entropy(torch.addmm(b, x.relu(), w), labels)

    def vec(*shape):
        return torch.randn(*shape).requires_grad_()

    layers = {
        "conv0": (conv, [nhwc(batch, 28, 28, 1, grad=False), hwio(3, 3, 1, 32), vec(32)]),
        "relu_pool0": (relu_pool, [nhwc(batch, 28, 28, 32)]),
        "conv1": (conv, [nhwc(batch, 14, 14, 32), hwio(3, 3, 32, 64), vec(64)]),
        "relu_pool1": (relu_pool, [nhwc(batch, 14, 14, 64)]),
        "dense0": (lambda x, w, b: torch.addmm(b, x, w), [vec(batch, 3136), vec(3136, 256), vec(256)]),
        "head": (head, [vec(batch, 256), vec(256, 10), vec(10)]),
    }
    closures = {}
    for name, (f, args) in layers.items():
        wrt = [a for a in args if a.requires_grad]
        cotangent = torch.randn_like(f(*args))

        def forward(f=f, args=args):
            with torch.no_grad():
                return f(*args)

        def forward_backward(f=f, args=args, wrt=wrt, cotangent=cotangent):
            return torch.autograd.grad(f(*args), wrt, cotangent)

        closures[name] = (forward, forward_backward)
    return closures, lambda result: result


def jax_layers(batch):
    """Per layer: (forward, forward+backward) jitted closures in Flax's layouts."""
    import jax
    import flax.linen as nn
    import optax

    keys = iter(jax.random.split(jax.random.PRNGKey(0), 32))

    def normal(*shape, scale=1.0):
        return jax.random.normal(next(keys), shape) * scale

    def conv(x, w, b):
        return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")) + b

    def relu_pool(x):
        return nn.avg_pool(nn.relu(x), (2, 2), strides=(2, 2))

    labels = jax.random.randint(next(keys), (batch,), 0, 10)

    def head(x, w, b):
        return optax.softmax_cross_entropy_with_integer_labels(nn.relu(x) @ w + b, labels).mean()

    layers = {
        "conv0": (conv, [normal(batch, 28, 28, 1), normal(3, 3, 1, 32, scale=0.1), normal(32)], 1),
        "relu_pool0": (relu_pool, [normal(batch, 28, 28, 32)], 0),
        "conv1": (conv, [normal(batch, 14, 14, 32), normal(3, 3, 32, 64, scale=0.1), normal(64)], 0),
        "relu_pool1": (relu_pool, [normal(batch, 14, 14, 64)], 0),
        "dense0": (lambda x, w, b: x @ w + b, [normal(batch, 3136), normal(3136, 256), normal(256)], 0),
        "head": (head, [normal(batch, 256), normal(256, 10), normal(10)], 0),
    }
    closures = {}
    for name, (f, args, first_wrt) in layers.items():
        data, wrt = args[:first_wrt], args[first_wrt:]
        cotangent = normal(*jax.eval_shape(f, *args).shape)
        forward = jax.jit(f)

        @jax.jit
        def forward_backward(data, wrt, cotangent, f=f):
            y, vjp = jax.vjp(lambda *w: f(*data, *w), *wrt)
            return y, vjp(cotangent)

        closures[name] = (
            lambda forward=forward, args=args: forward(*args),
            lambda fb=forward_backward, data=data, wrt=wrt, ct=cotangent: fb(data, wrt, ct),
        )
    return closures, jax.block_until_ready


def time_layers(closures, sync, samples, iters):
    """`{layer: [forward ms, forward+backward ms]}`."""
    return {name: [median_ms(call, samples, iters, sync) for call in pair] for name, pair in closures.items()}


def torch_round(args):
    """One round of libtorch timings, from a fresh `.venv` process."""
    command = [TORCH_PYTHON, os.path.abspath(__file__), "--framework", "torch"] + \
        [f"--{k}={getattr(args, k)}" for k in ("threads", "batch", "samples", "iters")]
    return run_json(command)


def torch_main(args):
    import torch

    torch.set_num_threads(args.threads)
    closures, sync = torch_layers(args.batch)
    print(json.dumps(time_layers(closures, sync, args.samples, args.iters)))


def print_table(args, rounds):
    print(f"\nquickstart layers, batch {args.batch}, {args.threads} thread(s), {args.rounds} rounds; "
          f"ms, medians; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    print(f"{'layer':<12}{'libtorch fwd':>14}{'XLA fwd':>10}{'libtorch f+b':>14}{'XLA f+b':>10}{'XLA/libtorch f+b':>18}")
    totals = [0.0] * 4
    for layer in rounds[0]["torch"]:  # the layers in the order they run
        cells = [statistics.median(r[fw][layer][k] for r in rounds) for k in (0, 1) for fw in ("torch", "jax")]
        totals = [t + c for t, c in zip(totals, cells)]
        print(f"{layer:<12}{cells[0]:>14.3f}{cells[1]:>10.3f}{cells[2]:>14.3f}{cells[3]:>10.3f}{cells[3] / cells[2]:>17.2f}x")
    print(f"{'sum':<12}{totals[0]:>14.3f}{totals[1]:>10.3f}{totals[2]:>14.3f}{totals[3]:>10.3f}{totals[3] / totals[2]:>17.2f}x")


def main():
    args = parse_args()
    keep_malloc_memory()
    if args.framework == "torch":
        torch_main(args)
        return
    set_xla_threads(args.threads)
    jax_closures, jax_sync = jax_layers(args.batch)
    rounds = []
    for r in range(args.rounds):
        runners = [("torch", lambda: torch_round(args)),
                   ("jax", lambda: time_layers(jax_closures, jax_sync, args.samples, args.iters))]
        rounds.append({name: run() for name, run in (runners if r % 2 == 0 else runners[::-1])})
        print(f"round {r + 1}/{args.rounds} done, load average {os.getloadavg()[0]:.2f}", file=sys.stderr)
    print_table(args, rounds)


if __name__ == "__main__":
    main()
