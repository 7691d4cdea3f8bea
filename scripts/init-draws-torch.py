#!/usr/bin/python3
"""Compare the initial weight draws of moetrain and of the PyTorch reference.

Usage: scripts/init-draws-torch.py CONFIG_JSON MOETRAIN_INIT.safetensors...

CONFIG_JSON is what `moetrain reference-inputs` writes; each safetensors file
is one moetrain draw (its init.safetensors, e.g. for model.init_seed 1..N).
The reference draws as many seeds itself (1..N). For every matrix of every
draw it computes std / init_std, kurtosis (3 for a normal), max|w| / std and
the spectral norm over std·(√rows + √cols) (≈ 1 for an i.i.d. matrix), and
prints per tool the range and mean of each over all tensors and draws.
"""
import os
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
import torchref as R  # noqa: E402
import torch  # noqa: E402


def stats(weights):
    out = []
    for t in weights.values():
        if t.dim() < 2 or not t.is_floating_point():
            continue
        t = t.double()
        sd = t.std().item()
        z = (t - t.mean()) / sd
        out.append((sd, (z ** 4).mean().item(), t.abs().max().item() / sd,
                    torch.linalg.matrix_norm(t, 2).item() / (sd * (t.shape[0] ** 0.5 + t.shape[1] ** 0.5))))
    return out


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    spec, _ = R.read_config(sys.argv[1])
    files = sys.argv[2:]
    rows = {"moetrain": [], "torch": []}
    for s, f in enumerate(files, 1):
        rows["moetrain"] += stats(R.load_safetensors(f))
        m = R.CausalLM(spec)
        m.init_weights(s)
        rows["torch"] += stats(m.weights())
    print(f"{len(files)} draws per tool; range (mean) over every matrix of every draw")
    print()
    print("| tool | std / init_std | kurtosis | max abs / std | spectral norm / (std·(√rows+√cols)) |")
    print("|---|---|---|---|---|")
    for tool, r in rows.items():
        cols = [list(c) for c in zip(*r)]
        cols[0] = [c / spec.init_std for c in cols[0]]
        print(f"| {tool} | " + " | ".join(f"{min(c):.4f}-{max(c):.4f} ({statistics.mean(c):.4f})" for c in cols) + " |")


if __name__ == "__main__":
    main()
