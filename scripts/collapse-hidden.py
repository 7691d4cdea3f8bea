#!/usr/bin/python3
"""collapse-hidden.py RUN INPUTS: why the routers of RUN send a batch to few experts.

RUN is a probe of scripts/collapse-probes.sh with checkpoints every few steps;
INPUTS is what `moetrain reference-inputs RUN/config.yaml --steps N` wrote
(config.json, init.safetensors and batches.i32: the batches RUN trained on, in
order). For the initial weights and each checkpoint after step s, the weights are loaded into the PyTorch reference
(reference/torchref.py) and the batch of step s+1 is run through it, so the
routing seen is the one RUN logged for step s+1 (the script checks its dead
shares against RUN/metrics.jsonl). Per MoE layer it prints:

  dead    the share of routed experts no token chose
  common  the share of the router input's energy common to all tokens:
          |mean_t u_t|^2 / mean_t |u_t|^2 (u: the normalised hidden state the
          router reads; 1 when every token's input is the same)
  R       std over experts of the batch-mean router logit, over the rms of
          the per-token deviations from it: above ~1 the common part of the
          logits outranks what distinguishes tokens, so every token picks
          the same experts
  p_max   the largest router probability, averaged over tokens (1/E is uniform)
  bal/lm  |grad of the balance loss| / |grad of the LM loss| on the router
          weights (the balance loss as configured)

Run with Debian's python3-torch; one thread."""
import glob, importlib.util, json, os, sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
here = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("torchref", os.path.join(here, "..", "reference", "torchref.py"))
tr = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tr)
torch = tr.torch
torch.set_num_threads(1)


def main(run, inputs):
    s, cfg = tr.read_config(os.path.join(inputs, "config.json"))
    bs, seq = cfg["train"]["batch_size"], cfg["train"]["seq_len"]
    windows = tr.read_windows(os.path.join(inputs, "batches.i32"), seq)
    logged = {}
    for line in open(os.path.join(run, "metrics.jsonl")):
        r = json.loads(line)
        if r.get("kind") == "train" and r.get("moe"):
            logged[r["step"]] = [m["dead_share"] for m in r["moe"]]
    print("| step | train loss | layer | dead | logged dead | common | R | p_max | bal/lm |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    weights = [(0, os.path.join(inputs, "init.safetensors"))]
    for ck in sorted(glob.glob(os.path.join(run, "checkpoints", "tokens-*"))):
        weights.append((int(ck.rsplit("-", 1)[1]) // (bs * seq), os.path.join(ck, "model.safetensors")))
    for step, path in weights:
        if (step + 1) * bs > windows.shape[0]:
            continue
        m = tr.CausalLM(s)
        m.load(path)
        m.train()
        inputs_of = {}
        for i, moe in m.moe_layers():
            moe.register_forward_pre_hook(lambda mod, args, i=i: inputs_of.__setitem__(i, args[0].detach()))
        batch = windows[step * bs:(step + 1) * bs]
        _, ce, balance = m(batch)
        routers = [moe.gate.weight for _, moe in m.moe_layers()]
        g_lm = torch.autograd.grad(ce, routers, retain_graph=True)
        g_bal = torch.autograd.grad(sum(balance), routers) if balance else [torch.zeros_like(w) for w in routers]
        for j, (i, moe) in enumerate(m.moe_layers()):
            u = inputs_of[i].reshape(-1, s.hidden)
            z = moe.gate.logits.detach()
            zbar = z.mean(0)
            dev = (z - zbar).pow(2).mean().sqrt()
            load = torch.bincount(moe.last_idx.reshape(-1), minlength=s.routed)
            dead = float((load == 0).float().mean())
            common = float(u.mean(0).pow(2).sum() / u.pow(2).sum(1).mean())
            probs = z.softmax(-1)
            ld = logged.get(step + 1)
            print("| %d | %.3f | %d | %.2f | %s | %.3f | %.2f | %.4f | %.3f |" % (
                step + 1, ce.item(), i, dead, "%.2f" % ld[j] if ld else "-", common,
                float(zbar.std() / dev), float(probs.max(-1).values.mean()),
                float(g_bal[j].norm() / g_lm[j].norm())))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
