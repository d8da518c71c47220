"""The workloads of `flax-runtime/benches/workloads.rs` in PyTorch eager, as its users write
them: `nn.Linear`, `nn.LayerNorm`, `nn.Embedding`, a fused q/k/v `nn.Linear` and
`F.scaled_dot_product_attention`, `F.cross_entropy`, `torch.optim.Adam`/`SGD` with
`zero_grad / backward / step`, `model.eval()` and `torch.inference_mode()` for inference, and
the ResNet and quickstart CNN both NCHW and channels-last (`torch.channels_last` model and
input). Same shapes, hyper-parameters and initializer distributions as the Flax models
(Flax's lecun-normal kernels, zero biases, unit norm scales, its embedding init).

Run by `scripts/bench/workloads.py` with `.venv/bin/python` (the torch whose libtorch `tch`
links): `workloads_torch.py --threads N --warmup W`, then the protocol of `workload_serve.py`.
"""

import argparse
import math
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_eager_step import CNN  # noqa: E402  the quickstart CNN of the quickstart bench
from workload_serve import serve  # noqa: E402

VOCAB, D_MODEL, HEADS, MLP_DIM, LAYERS, SEQ_LEN = 1024, 256, 4, 1024, 2, 64


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(D_MODEL), nn.LayerNorm(D_MODEL)
        self.qkv, self.out = nn.Linear(D_MODEL, 3 * D_MODEL), nn.Linear(D_MODEL, D_MODEL)
        self.fc1, self.fc2 = nn.Linear(D_MODEL, MLP_DIM), nn.Linear(MLP_DIM, D_MODEL)

    def attention(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, HEADS, d // HEADS).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.out(y.transpose(1, 2).reshape(b, n, d))

    def forward(self, x):
        x = x + self.attention(self.ln1(x))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x)), approximate="tanh"))


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok, self.pos = nn.Embedding(VOCAB, D_MODEL), nn.Embedding(SEQ_LEN, D_MODEL)
        self.blocks = nn.ModuleList(Block() for _ in range(LAYERS))
        self.ln, self.head = nn.LayerNorm(D_MODEL), nn.Linear(D_MODEL, VOCAB)

    def forward(self, tokens):
        x = self.tok(tokens) + self.pos(torch.arange(tokens.shape[1]))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout, momentum=0.1)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout, momentum=0.1)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(self.shortcut(x) + y)


class ResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16)
        blocks, cin = [], 16
        for stage, cout in enumerate((16, 32, 64)):
            for block in range(2):
                blocks.append(BasicBlock(cin, cout, 2 if stage > 0 and block == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.blocks(F.relu(self.bn(self.conv(x))))
        return self.fc(x.mean((2, 3)))


def flax_init(model):
    """Flax's default initializers: lecun-normal kernels (truncated normal, std
    1/sqrt(fan_in) / .8796), zero biases; embeddings std 1/sqrt(features)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                fan_in = m.weight[0].numel()
                nn.init.trunc_normal_(m.weight, std=1 / math.sqrt(fan_in) / .87962566, a=-2, b=2)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=1 / math.sqrt(m.weight.shape[1]))
    return model


def train_step(model, optimizer, x, y):
    def step():
        optimizer.zero_grad()
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        loss.backward()
        optimizer.step()
    return step


def workloads():
    torch.manual_seed(0)
    encoder = flax_init(Encoder())
    tokens = torch.randint(0, VOCAB, (16, SEQ_LEN))
    targets = torch.randint(0, VOCAB, (16, SEQ_LEN))
    steps = {"transformer_train": train_step(encoder, torch.optim.Adam(encoder.parameters(), lr=1e-3),
                                             tokens, targets)}
    for suffix, channels_last in (("", False), ("@channels_last", True)):
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        resnet = flax_init(ResNet()).to(memory_format=fmt)
        images = torch.rand(64, 3, 32, 32).contiguous(memory_format=fmt)
        steps["resnet_train" + suffix] = train_step(
            resnet, torch.optim.SGD(resnet.parameters(), lr=0.1, momentum=0.9), images, torch.randint(0, 10, (64,)))
    inference = flax_init(Encoder()).eval()
    one = torch.randint(0, VOCAB, (1, SEQ_LEN))

    def infer():
        with torch.inference_mode():
            return inference(one)
    steps["transformer_infer_b1"] = infer
    for suffix, channels_last in (("", False), ("@channels_last", True)):
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        cnn = CNN().to(memory_format=fmt)
        images = torch.rand(32, 1, 28, 28).contiguous(memory_format=fmt)
        steps["quickstart_train_b32" + suffix] = train_step(
            cnn, torch.optim.SGD(cnn.parameters(), lr=0.01, momentum=0.9), images, torch.randint(0, 10, (32,)))
    return steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    serve(workloads(), args.warmup)


if __name__ == "__main__":
    main()
