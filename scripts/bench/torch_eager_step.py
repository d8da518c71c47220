"""The spec's quickstart training step in PyTorch eager, as a PyTorch user writes it: an
`nn.Module` (NCHW), `F.cross_entropy`, `torch.optim.SGD(lr=0.01, momentum=0.9)` and
`zero_grad / backward / step`. Timed for `scripts/bench/quickstart_train_step.py`, which runs it
with `.venv/bin/python` (the torch whose libtorch `tch` links), once per round.

    .venv/bin/python scripts/bench/torch_eager_step.py --threads 1 --batches 32,128 \
        --samples 3 --steps 5 --warmup 5

Prints one JSON line: for each batch size and memory format (`nchw`, and `channels_last`:
model and input in `torch.channels_last`), the seconds per step of each sample of `--steps`
consecutive steps, after `--warmup` untimed steps. Uses no numpy (the .venv has none).
"""

import argparse
import json
import time

import torch
import torch.nn.functional as F
from torch import nn


class CNN(nn.Module):
    """The spec's CNN (L232-249), channels-first: Flax's `Conv` pads 'SAME', so padding=1."""

    def __init__(self):
        super().__init__()
        self.conv0 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv1 = nn.Conv2d(32, 64, 3, padding=1)
        self.dense0 = nn.Linear(64 * 7 * 7, 256)
        self.dense1 = nn.Linear(256, 10)

    def forward(self, x):
        x = F.avg_pool2d(F.relu(self.conv0(x)), 2, 2)
        x = F.avg_pool2d(F.relu(self.conv1(x)), 2, 2)
        x = F.relu(self.dense0(torch.flatten(x, 1)))
        return self.dense1(x)


def time_variant(batch, channels_last, samples, steps, warmup):
    """Seconds per step of each sample, on a fresh model and optimizer."""
    torch.manual_seed(0)
    model = CNN()
    images = torch.rand(batch, 1, 28, 28)
    labels = torch.randint(0, 10, (batch,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def train_step():
        optimizer.zero_grad()
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        train_step()
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        for _ in range(steps):
            train_step()
        times.append((time.perf_counter() - start) / steps)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batches", default="32,128")
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for batch in map(int, args.batches.split(",")):
        for name, channels_last in (("torch_eager_nchw", False), ("torch_eager_channels_last", True)):
            samples = time_variant(batch, channels_last, args.samples, args.steps, args.warmup)
            rows.append({"name": name, "batch": batch, "samples_s": samples})
    print(json.dumps({"threads": torch.get_num_threads(), "torch": torch.__version__, "rows": rows}))


if __name__ == "__main__":
    main()
