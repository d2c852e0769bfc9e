"""The CIFAR-10 speed record's recipe, re-implemented as a comparator for `cifarlab bench
--compare-record`: one training run, timed as a whole process, like a `cifarlab train` run.

Source it follows: airbench94_muon.py by Keller Jordan,
https://github.com/KellerJordan/cifar10-airbench (94.01% mean test accuracy over 200 runs in
2.59 s on a 400 W A100 with torch 2.4.1). Written here from its published recipe; the network,
hyperparameters and steps are the original's:
  network  2x2 whitening conv (24 filters: 12 eigenvectors of the uncentred 2x2-patch second
           moment of 5,000 training images, scaled by 1/sqrt(eigenvalue + 5e-4), and their
           negations; frozen weights, bias trained for the first 3 epochs), GELU, three groups
           conv3x3 -> maxpool2 -> BN -> GELU -> conv3x3 -> BN -> GELU of widths 64/256/256
           (convs without bias, Dirac-initialised on their first input channels; BN eps 1e-12,
           momentum 0.6 in airbench's convention = 0.4 in torch's, scale frozen at 1),
           maxpool 3, linear head without bias (weights rescaled to std 1), logits / 256
  data     per-channel normalisation; in the first epoch each image is flipped at random, then
           all images flip together every other epoch; random translation by up to 2 px of
           the reflect-padded images, redrawn every epoch; batches of 2,000, last partial
           batch dropped (25 steps an epoch)
  training 8 epochs; summed cross-entropy with label smoothing 0.2; Muon (lr 0.24, Nesterov
           momentum 0.6, 3 Newton-Schulz steps, each filter tensor rescaled to norm
           sqrt(out channels) before its step) on the conv filters; Nesterov SGD (momentum 0.85)
           on the whitening bias and BN biases (lr 0.053) and the head (lr 0.67), weight decay
           2e-6 x 2000 divided by each group's lr; every rate decays linearly to 0 over the
           run, the whitening bias's over its 3 epochs
  test     the final weights, 6 views (mirror x {none, 1 px up-left, 1 px down-right})

Differences, all of them:
  - precision: the original keeps every module but BatchNorm in fp16 on the GPU. Here: fp16 on
    CUDA; on a CPU, bf16 where it has native bf16 (AMX or AVX512-BF16), else float32.
    Newton-Schulz runs in bf16 as in the original (float32 on a CPU without native bf16).
  - torch.compile: the original compiles the model (max-autotune) and runs once on random
    labels to warm up, outside its timer. Here: no compile unless --compile (cifarlab bench
    passes it when cifarlab's run compiles too), no warm-up run: the whole process is timed.
  - data: read from the python pickles (cifar-10-batches-py) directly; no download.
  - the original also evaluates the test set after every epoch for its log (outside its
    timer); here only the final evaluation runs.
  - --seed seeds torch (the original does not seed); results go to --out as JSON.
As the original: `cudnn.benchmark` on CUDA (a CPU has no counterpart) and the fused SGD step
(fused on the CPU too, which torch supports).
"""

from __future__ import annotations

import time

import comparator_kit as kit
import torch
import torch.nn.functional as F
from comparator_kit import random_flip
from torch import nn

from cifarlab.runtime import synchronize

BATCH_SIZE, EPOCHS, WHITEN_BIAS_EPOCHS = 2000, 8, 3
BIAS_LR, HEAD_LR, MUON_LR = 0.053, 0.67, 0.24
WEIGHT_DECAY = 2e-6 * BATCH_SIZE  # per step, for the summed loss of a batch of 2,000


# --- data ----------------------------------------------------------------------------------

def random_translate(padded: torch.Tensor, size: int) -> torch.Tensor:
    """A random size x size window of each padded image: rows first, then columns, one shift
    value at a time (the same windows as cropping each image on its own)."""
    r = (padded.size(-1) - size) // 2
    shifts = torch.randint(-r, r + 1, (len(padded), 2), device=padded.device)
    rows = torch.empty(*padded.shape[:2], size, padded.size(-1), dtype=padded.dtype,
                       device=padded.device)
    for s in range(-r, r + 1):
        sel = shifts[:, 0] == s
        rows[sel] = padded[sel, :, r + s:r + s + size, :]
    out = torch.empty(*padded.shape[:2], size, size, dtype=padded.dtype, device=padded.device)
    for s in range(-r, r + 1):
        sel = shifts[:, 1] == s
        out[sel] = rows[sel, :, :, r + s:r + s + size]
    return out


class TrainBatches:
    """Epoch 0 flips each image at random once; odd epochs then flip all of them; translation
    is redrawn every epoch from the reflect-padded images."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int):
        self.padded = F.pad(random_flip(images), (2, 2, 2, 2), mode="reflect")
        self.labels, self.size, self.epoch = labels, images.size(-1), 0
        self.batch_size = batch_size

    def __len__(self) -> int:
        return len(self.labels) // self.batch_size

    def __iter__(self):
        images = random_translate(self.padded, self.size)
        if self.epoch % 2 == 1:
            images = images.flip(-1)
        self.epoch += 1
        order = torch.randperm(len(images), device=images.device)
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            yield images[idx], self.labels[idx]


# --- network -------------------------------------------------------------------------------

class RecordNet(kit.AirbenchNet):
    def __init__(self, widths: tuple[int, int, int] = (64, 256, 256)):
        super().__init__(widths, bn_momentum=0.6, activation=nn.GELU)

    @torch.no_grad()
    def init_whiten(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        values, vectors = torch.linalg.eigh(kit.patch_moment(images))
        filters = (vectors.T / torch.sqrt(values + eps).view(-1, 1)).reshape(-1, 3, 2, 2)
        self.whiten.weight.copy_(torch.cat([filters, -filters]).to(self.whiten.weight))


# --- Muon ----------------------------------------------------------------------------------

def newton_schulz(g: torch.Tensor, dtype: torch.dtype, steps: int = 3) -> torch.Tensor:
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.to(dtype)
    x = x / (x.norm() + 1e-7)
    tall = x.size(0) > x.size(1)
    if tall:
        x = x.T
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


class RecordMuon(torch.optim.Optimizer):
    def __init__(self, params, lr: float, momentum: float, ns_dtype: torch.dtype):
        super().__init__(params, dict(lr=lr, momentum=momentum))
        self.ns_dtype = ns_dtype

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "buf" not in state:
                    state["buf"] = torch.zeros_like(p.grad)
                buf = state["buf"].mul_(group["momentum"]).add_(p.grad)
                g = p.grad.add(buf, alpha=group["momentum"])  # Nesterov
                p.mul_(len(p) ** 0.5 / p.norm())
                update = newton_schulz(g.reshape(len(g), -1), self.ns_dtype).view(g.shape)
                p.add_(update.to(p.dtype), alpha=-group["lr"])


# --- training and test ---------------------------------------------------------------------

def train(model: nn.Module, batches: TrainBatches, ns_dtype: torch.dtype, epochs: int) -> None:
    total_steps = epochs * len(batches)
    whiten_steps = WHITEN_BIAS_EPOCHS * len(batches)
    filters = [p for p in model.parameters() if p.ndim == 4 and p.requires_grad]
    norm_biases = [m.bias for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    sgd = torch.optim.SGD([
        dict(params=[model.whiten.bias], lr=BIAS_LR, weight_decay=WEIGHT_DECAY / BIAS_LR),
        dict(params=norm_biases, lr=BIAS_LR, weight_decay=WEIGHT_DECAY / BIAS_LR),
        dict(params=[model.head.weight], lr=HEAD_LR, weight_decay=WEIGHT_DECAY / HEAD_LR),
    ], momentum=0.85, nesterov=True, fused=True)
    muon = RecordMuon(filters, lr=MUON_LR, momentum=0.6, ns_dtype=ns_dtype)
    initial = [(g, g["lr"]) for g in sgd.param_groups + muon.param_groups]
    model.train()
    step = 0
    for epoch in range(epochs):
        t0 = time.perf_counter()
        for images, labels in batches:
            out = model(images, whiten_bias_grad=step < whiten_steps)
            F.cross_entropy(out, labels, label_smoothing=0.2, reduction="sum").backward()
            for i, (group, lr) in enumerate(initial):
                span = whiten_steps if i == 0 else total_steps
                group["lr"] = lr * (1 - step / span)
            sgd.step()
            muon.step()
            model.zero_grad(set_to_none=True)
            step += 1
        print(f"epoch {epoch + 1}/{epochs}  {time.perf_counter() - t0:.1f} s", flush=True)


@torch.no_grad()
def test_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()

    def mirror(x: torch.Tensor) -> torch.Tensor:
        return 0.5 * model(x) + 0.5 * model(x.flip(-1))

    logits = []
    for x in images.split(2000):
        padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
        shifted = 0.5 * (mirror(padded[:, :, :32, :32]) + mirror(padded[:, :, 2:, 2:]))
        logits.append(0.5 * mirror(x) + 0.5 * shifted)
    return (torch.cat(logits).argmax(1) == labels).float().mean().item()


def main() -> None:
    args = kit.parse_args(__doc__.split("\n\n")[0], BATCH_SIZE, EPOCHS)
    data = kit.load(args)
    dtype = data.dtype
    ns_dtype = torch.float32 if dtype == torch.float32 else torch.bfloat16
    model = RecordNet().to(data.device)
    for module in model.modules():  # everything but BatchNorm in the low precision
        if not isinstance(module, nn.BatchNorm2d):
            module.to(dtype)
    model = model.to(memory_format=torch.channels_last)
    model.init_whiten(data.train_x[:5000])
    net = torch.compile(model) if args.compile else model
    synchronize(data.device)  # the data's copy to a GPU is not training
    start = time.perf_counter()
    batches = TrainBatches(data.train_x, data.train_y, args.batch_size)
    train(net, batches, ns_dtype, args.epochs)
    synchronize(data.device)  # a GPU's queued steps are part of training
    train_seconds = time.perf_counter() - start
    kit.write_result(args, data, 100 * test_accuracy(net, data.test_x, data.test_y),
                     train_seconds)


if __name__ == "__main__":
    main()
