#!/usr/bin/python3
"""torchref: moetrain's models, loss and optimizer written again in PyTorch.

It is the peer that moetrain's tests compare against (reference/README.md).
Run it with Debian's python3-torch (/usr/bin/python3); it needs nothing else.

Configs: a moetrain config in JSON (`moetrain reference-inputs` writes one:
the keys of configs/*.yaml, resolved) or a Hugging Face DeepSeek config.json
(what `moetrain export` writes). Weights: safetensors with moetrain's tensor
names, which are the Hugging Face DeepSeek keys, routed experts one key each,
and "model.layers.N.mlp.hash_table" (int32) for Hash layers.

Modes (see --help of each):
  init    draw weights with PyTorch's own generator and write them
  dump    one forward and backward pass on given tokens: loss, balance loss,
          logits, every gradient and the chosen experts, into safetensors
  eval    mean cross-entropy of given weights on given held-out windows
  train   train from given (or self-drawn) weights on the batches moetrain
          wrote, with moetrain's AdamW, clipping, lr schedule and gradient
          accumulation; one JSON line per step, final weights to --out
  bench   time training steps on random tokens, as `moetrain bench` does
"""
import argparse
import json
import math
import os
import struct
import sys
import time


def _threads():
    """--threads, read before torch loads: Debian's torch calls OpenBLAS,
    whose own worker threads (one per core unless told) spin while they
    wait and ruin timings on a busy machine; --threads bounds them too."""
    for i, a in enumerate(sys.argv):
        if a == "--threads" and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
        if a.startswith("--threads="):
            return a.split("=", 1)[1]
    return "1"


for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_var, _threads())

import torch  # noqa: E402  (after the thread settings above)
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


# --------------------------------------------------------------------------
# Configuration


class Spec:
    """The model, in moetrain's terms, whichever config it was read from."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def is_moe_layer(self, i):
        # configs.Model.IsMoELayer
        return (self.ffn != "dense" and self.routed > 0 and i >= self.first_dense
                and i % self.moe_freq == 0)


def spec_from_moetrain(m):
    b = m.get("balance") or {}
    r = m.get("router") or {}
    return Spec(
        score=r.get("score", "softmax"), scale=r.get("scale", 1.0), z_loss=r.get("z_loss", 0.0),
        bias_rate=r.get("bias_rate", 0.0), capacity_factor=r.get("capacity_factor", 0.0),
        expert_choice=bool(r.get("expert_choice", False)),
        router_input=r.get("input", "hidden"),
        vocab=m["vocab_size"], hidden=m["hidden"], layers=m["layers"], heads=m["heads"],
        dense_width=m["dense_width"], ffn=m["ffn"], shared=m.get("shared_experts", 0),
        routed=m.get("routed_experts", 0), k=m.get("active_routed", 0),
        expert_width=m.get("expert_width", 0), first_dense=m.get("first_dense_layers", 0),
        moe_freq=m.get("moe_layer_freq", 1) or 1, expert_alpha=b.get("expert_alpha", 0.0),
        device_alpha=b.get("device_alpha", 0.0), device_groups=b.get("device_groups", 1) or 1,
        per_sequence=b.get("per_sequence", True), rope_theta=m.get("rope_theta", 10000.0),
        norm_eps=m.get("norm_eps", 1e-6), init_std=m.get("init_std", 0.006),
        renorm=m["ffn"] == "gshard" or r.get("score") == "sigmoid")


def spec_from_hf(c):
    # Defaults are those of DeepSeek's public DeepseekConfig.
    routed = c.get("n_routed_experts") or 0
    k = c.get("num_experts_per_tok") or 0
    norm = bool(c.get("norm_topk_prob", False))
    ffn = "dense" if routed == 0 else ("gshard" if norm else "deepseekmoe")
    return Spec(
        vocab=c["vocab_size"], hidden=c["hidden_size"], layers=c["num_hidden_layers"],
        heads=c["num_attention_heads"], dense_width=c["intermediate_size"], ffn=ffn,
        shared=c.get("n_shared_experts") or 0, routed=routed, k=k,
        expert_width=c.get("moe_intermediate_size") or 0,
        first_dense=c.get("first_k_dense_replace", 0) or 0, moe_freq=c.get("moe_layer_freq", 1) or 1,
        expert_alpha=c.get("aux_loss_alpha", 0.001), device_alpha=0.0, device_groups=1,
        per_sequence=bool(c.get("seq_aux", True)), rope_theta=c.get("rope_theta", 10000.0),
        norm_eps=c.get("rms_norm_eps", 1e-6), init_std=c.get("initializer_range", 0.02),
        renorm=norm, score="softmax", scale=1.0, z_loss=0.0, bias_rate=0.0, capacity_factor=0.0,
        router_input="hidden",
        expert_choice=False)


def read_config(path):
    """Returns (Spec, the whole moetrain config or None for an HF config)."""
    with open(path) as f:
        c = json.load(f)
    if "model" in c:
        return spec_from_moetrain(c["model"]), c
    return spec_from_hf(c), None


# --------------------------------------------------------------------------
# Safetensors (the format needs only a JSON header and raw little-endian data)

DTYPES = {"F32": torch.float32, "F64": torch.float64, "BF16": torch.bfloat16, "F16": torch.float16,
          "I32": torch.int32, "I64": torch.int64}


def load_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    body = memoryview(raw)[8 + n:]
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        lo, hi = h["data_offsets"]
        t = torch.frombuffer(bytearray(body[lo:hi]), dtype=DTYPES[h["dtype"]]).reshape(h["shape"])
        out[name] = t.float() if t.is_floating_point() else t
    return out


def save_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous()
        if t.is_floating_point():
            data, dt = t.float().numpy().tobytes(), "F32"
        else:
            data, dt = t.to(torch.int32).numpy().tobytes(), "I32"
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def read_windows(path, seq):
    """Token windows of seq+1 ids from a file of little-endian int32."""
    with open(path, "rb") as f:
        raw = f.read()
    n = seq + 1
    if len(raw) % (4 * n):
        sys.exit(f"{path}: {len(raw)} bytes is not a whole number of {n}-token windows of int32")
    return torch.frombuffer(bytearray(raw), dtype=torch.int32).long().view(-1, n)


def read_text_windows(path):
    """Token windows from a text file, one window of ids per line."""
    rows = [[int(x) for x in line.split()] for line in open(path) if line.strip()]
    if len({len(r) for r in rows}) != 1:
        sys.exit(f"{path}: every line must hold the same number of token ids")
    return torch.tensor(rows)


# --------------------------------------------------------------------------
# The model. Module paths spell moetrain's tensor names.


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rotary(x, theta):
    """RoPE on [..., T, Dh], the rotate-half pairing (i, i + Dh/2) of the
    Llama/DeepSeek code; angles are formed in float64 and rounded once to
    x's precision."""
    T, Dh = x.shape[-2], x.shape[-1]
    inv = theta ** (-torch.arange(0, Dh, 2, dtype=torch.float64) / Dh)
    ang = torch.outer(torch.arange(T, dtype=torch.float64), inv)
    cos = torch.cat([ang.cos(), ang.cos()], -1).to(x.dtype)
    sin = torch.cat([ang.sin(), ang.sin()], -1).to(x.dtype)
    half = Dh // 2
    rot = torch.cat([-x[..., half:], x[..., :half]], -1)
    return x * cos + rot * sin


class Attention(nn.Module):
    def __init__(self, s):
        super().__init__()
        d = s.hidden
        self.heads, self.theta = s.heads, s.rope_theta
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, d, bias=False)
        self.o_proj = nn.Linear(d, d, bias=False)

    def forward(self, x):
        B, T, D = x.shape
        dh = D // self.heads

        def split(y):
            return y.view(B, T, self.heads, dh).transpose(1, 2)

        q = rotary(split(self.q_proj(x)), self.theta)
        k = rotary(split(self.k_proj(x)), self.theta)
        v = split(self.v_proj(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(dh)
        causal = torch.ones(T, T, dtype=torch.bool).triu(1)
        p = scores.masked_fill(causal, float("-inf")).softmax(-1)
        return self.o_proj((p @ v).transpose(1, 2).reshape(B, T, D))


class SwiGLU(nn.Module):
    def __init__(self, d, f):
        super().__init__()
        self.gate_proj = nn.Linear(d, f, bias=False)
        self.up_proj = nn.Linear(d, f, bias=False)
        self.down_proj = nn.Linear(f, d, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Router(nn.Module):
    """Softmax (or sigmoid) router, greedy top-k. Records, for tests, the
    chosen experts, the per-expert load and the smallest margin between a
    token's k-th and (k+1)-th selection score (a near-tie makes float32
    comparisons fragile).

    The variants of model.router (docs/CONFIG.md): sigmoid scores; a
    selection bias e_score_correction_bias added to the scores for the
    choice only (auxiliary-loss-free balancing); gates renormalised for
    GShard and for sigmoid scores (both only at k > 1), then multiplied by
    the routed scaling factor."""

    def __init__(self, s):
        super().__init__()
        self.s, self.E, self.k, self.renorm = s, s.routed, s.k, s.renorm
        self.weight = nn.Parameter(torch.empty(s.routed, s.hidden))
        if s.bias_rate > 0:
            self.register_buffer("e_score_correction_bias", torch.zeros(s.routed))

    def forward(self, x):  # x [N, D]
        logits = F.linear(x, self.weight)
        self.logits = logits
        probs = logits.sigmoid() if self.s.score == "sigmoid" else logits.softmax(-1)
        sel = probs.detach()
        if self.s.bias_rate > 0:
            sel = sel + self.e_score_correction_bias
        _, idx = torch.topk(sel, self.k, dim=-1)
        top = probs.gather(1, idx)
        gates = top
        if self.renorm and self.k > 1:
            gates = top / (top.sum(-1, keepdim=True) + 1e-20)
        gates = gates * self.s.scale
        with torch.no_grad():
            if self.E > self.k:
                nxt = torch.topk(sel, self.k + 1, dim=-1).values
                self.margin = float((nxt[:, self.k - 1] - nxt[:, self.k]).min())
            else:
                self.margin = math.inf
        return probs, idx, gates


def z_loss(logits, alpha):
    """Router z-loss (ST-MoE): α · mean over tokens of logsumexp(logits)²."""
    return alpha * torch.logsumexp(logits, -1).pow(2).mean()


def capacity_keep(idx, gates, E, B, T, capacity):
    """Token dropping of GShard/Switch (router.capacity_factor): within each
    sequence, an expert keeps its `capacity` slots with the largest gates
    (ties: the earlier token, then the earlier choice). Returns a 0/1 mask
    [N, k] of the kept slots."""
    k = idx.shape[1]
    keep = torch.ones(idx.shape)
    g = gates.detach()
    for b in range(B):
        for e in range(E):
            slots = [(t, j) for t in range(b * T, (b + 1) * T) for j in range(k) if idx[t, j] == e]
            if len(slots) <= capacity:
                continue
            order = sorted(range(len(slots)), key=lambda i: -float(g[slots[i]]))  # sorted() is stable
            for i in order[capacity:]:
                keep[slots[i]] = 0.0
    return keep


def expert_choice_mask(probs, E, B, T, capacity):
    """Expert-choice routing (router.expert_choice): within each sequence,
    expert e takes the `capacity` tokens with the largest scores for it.
    Returns a 0/1 mask [N, E] of the taken (token, expert) pairs."""
    mask = torch.zeros(B * T, E)
    p = probs.detach().view(B, T, E)
    for b in range(B):
        for e in range(E):
            col = p[b, :, e]
            order = sorted(range(T), key=lambda t: -float(col[t]))  # ties: the earlier token
            for t in order[:capacity]:
                mask[b * T + t, e] = 1.0
    return mask


def balance_loss(probs, idx, E, k, B, T, alpha, groups, per_sequence, batch_counts):
    """moetrain's balance loss (model/ops/balance.go): f counts (token, slot)
    pairs per expert over T·k/E (no gradient), P is the mean router
    probability; the expert loss is α Σ f·P, per sequence and averaged when
    per_sequence, else over the batch. With groups experts are grouped: f
    averaged and P summed within a group (the device loss). batch_counts,
    (load [E], tokens), gives a batch-level f gathered over all micro-batches."""
    ones = torch.ones(idx.numel())
    if per_sequence:
        count = torch.zeros(B, E).scatter_add_(1, idx.reshape(B, T * k), ones.view(B, T * k))
        f = count / (T * k / E)
        P = probs.view(B, T, E).mean(1)
    else:
        if batch_counts is not None:
            load, n = batch_counts
        else:
            load, n = torch.zeros(E).index_add_(0, idx.reshape(-1), ones), B * T
        f = (load / (n * k / E)).unsqueeze(0)
        P = probs.mean(0, keepdim=True)
    if groups > 1:
        f = f.view(f.shape[0], groups, E // groups).mean(-1)
        P = P.view(P.shape[0], groups, E // groups).sum(-1)
    return alpha * (f * P).sum(-1).mean()


class MoE(nn.Module):
    """Routed experts (plus merged shared experts), written the way DeepSeek's
    public modelling code writes them in training: every token's hidden state
    repeated once per chosen expert, then a loop over the experts, each
    computing the rows routed to it, then a gate-weighted sum per token."""

    def __init__(self, s, layer):
        super().__init__()
        self.s, self.layer = s, layer
        self.experts = nn.ModuleList(SwiGLU(s.hidden, s.expert_width) for _ in range(s.routed))
        if s.ffn == "hash":
            self.register_buffer("hash_table", torch.zeros(s.vocab, dtype=torch.long))
            self.k = 1
        else:
            self.gate = Router(s)
            self.k = s.k
        if s.shared > 0:
            self.shared_experts = SwiGLU(s.hidden, s.shared * s.expert_width)
        self.batch_counts = None  # set by the trainer for batch-level balance over micro-batches

    def forward(self, x, ids, emb):
        """x [B, T, D] the normed hidden state the experts read; emb the
        input tokens' embeddings, which the router reads instead of x when
        router.input is embedding."""
        B, T, D = x.shape
        flat = x.reshape(-1, D)
        balance = []
        if self.s.ffn == "hash":
            idx = self.hash_table[ids.reshape(-1)].unsqueeze(1)
            gates = torch.ones(idx.shape, dtype=flat.dtype)
            self.margin = math.inf
        else:
            probs, idx, gates = self.gate(emb.reshape(-1, D) if self.s.router_input == "embedding" else flat)
            self.margin = self.gate.margin
            s = self.s
            if s.z_loss > 0:
                balance.append(z_loss(self.gate.logits, s.z_loss))
            if s.expert_choice:
                return self.expert_choice(x, flat, probs, balance)
            if s.capacity_factor > 0 and self.training:
                cap = math.ceil(self.k * T * s.capacity_factor / s.routed)
                gates = gates * capacity_keep(idx, gates, s.routed, B, T, cap)
            if s.expert_alpha > 0:
                balance.append(balance_loss(probs, idx, s.routed, self.k, B, T, s.expert_alpha, 1,
                                            s.per_sequence, self.batch_counts))
            if s.device_alpha > 0:
                balance.append(balance_loss(probs, idx, s.routed, self.k, B, T, s.device_alpha,
                                            s.device_groups, s.per_sequence, self.batch_counts))
        self.last_idx = idx.detach()
        self.load = torch.bincount(idx.reshape(-1), minlength=self.s.routed)
        k = idx.shape[1]
        rows = flat.repeat_interleave(k, dim=0)
        chosen = idx.reshape(-1)
        y = torch.empty_like(rows)
        for e, expert in enumerate(self.experts):
            mask = chosen == e
            if mask.any():
                y[mask] = expert(rows[mask])
        out = (y.view(-1, k, D) * gates.unsqueeze(-1)).sum(1).view(B, T, D)
        if self.s.shared > 0:
            out = out + self.shared_experts(x)
        return out, balance

    def expert_choice(self, x, flat, probs, balance):
        """Each expert computes the tokens it took, weighted by their scores."""
        B, T, D = x.shape
        s = self.s
        cap = min(T, math.ceil(self.k * T / s.routed))
        mask = expert_choice_mask(probs, s.routed, B, T, cap)
        self.load = mask.sum(0).long()
        self.last_idx = None
        self.margin = math.inf
        out = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            rows = mask[:, e].nonzero().squeeze(1)
            if rows.numel():
                out = out.index_add(0, rows, expert(flat[rows]) * (probs[rows, e] * s.scale).unsqueeze(1))
        out = out.view(B, T, D)
        if s.shared > 0:
            out = out + self.shared_experts(x)
        return out, balance


class Layer(nn.Module):
    def __init__(self, s, i):
        super().__init__()
        self.input_layernorm = RMSNorm(s.hidden, s.norm_eps)
        self.self_attn = Attention(s)
        self.post_attention_layernorm = RMSNorm(s.hidden, s.norm_eps)
        self.mlp = MoE(s, i) if s.is_moe_layer(i) else SwiGLU(s.hidden, s.dense_width)

    def forward(self, x, ids, emb):
        x = x + self.self_attn(self.input_layernorm(x))
        u = self.post_attention_layernorm(x)
        if isinstance(self.mlp, MoE):
            f, balance = self.mlp(u, ids, emb)
        else:
            f, balance = self.mlp(u), []
        return x + f, balance


class Decoder(nn.Module):
    def __init__(self, s):
        super().__init__()
        self.embed_tokens = nn.Embedding(s.vocab, s.hidden)
        self.layers = nn.ModuleList(Layer(s, i) for i in range(s.layers))
        self.norm = RMSNorm(s.hidden, s.norm_eps)


class CausalLM(nn.Module):
    def __init__(self, s):
        super().__init__()
        self.s = s
        self.model = Decoder(s)
        self.lm_head = nn.Linear(s.hidden, s.vocab, bias=False)

    def forward(self, windows):
        """windows [B, T+1]: returns (logits [B, T, V], mean cross-entropy,
        list of balance losses)."""
        ids, targets = windows[:, :-1], windows[:, 1:]
        x = self.model.embed_tokens(ids)
        emb = x
        balance = []
        for layer in self.model.layers:
            x, b = layer(x, ids, emb)
            balance += b
        logits = self.lm_head(self.model.norm(x))
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        return logits, ce, balance

    def moe_layers(self):
        return [(i, l.mlp) for i, l in enumerate(self.model.layers) if isinstance(l.mlp, MoE)]

    def margin(self):
        return min([m.margin for _, m in self.moe_layers()], default=math.inf)

    def init_weights(self, seed):
        """PyTorch's own draw: every matrix ~ N(0, init_std²), norm weights 1,
        hash tables uniform over the experts."""
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if p.dim() >= 2:
                    p.normal_(0.0, self.s.init_std, generator=g)
                else:
                    p.fill_(1.0)
            for _, m in self.moe_layers():
                if self.s.ffn == "hash":
                    m.hash_table.copy_(torch.randint(0, self.s.routed, (self.s.vocab,), generator=g))

    def load(self, path):
        sd = load_safetensors(path)
        missing, unexpected = self.load_state_dict(sd, strict=False)
        if missing or unexpected:
            sys.exit(f"{path}: missing {missing[:8]}, unexpected {unexpected[:8]}")

    def weights(self):
        return dict(self.state_dict())


def decays(name, p):
    """moetrain decays every matrix (model/params.go: Decay) and no norm weight."""
    return p.dim() >= 2


# --------------------------------------------------------------------------
# Training, as moetrain's trainer does it (train/run.go)


def learning_rate(sched, total_default, tokens):
    """optim.Schedule.LR: linear warmup, then step (×0.316 at 80% and 90% of
    total_tokens, boundaries in integer arithmetic), cosine or constant."""
    max_lr, warm = sched["max_lr"], sched.get("warmup_tokens", 0)
    total = sched.get("total_tokens") or total_default
    tokens = max(tokens, 0)
    lr = max_lr
    if tokens < warm:
        lr *= tokens / warm
    kind = sched["kind"]
    if kind == "step":
        b1 = total // 10 * 8 + total % 10 * 8 // 10
        b2 = total // 10 * 9 + total % 10 * 9 // 10
        if tokens >= b1:
            lr *= 0.316
        if tokens >= b2:
            lr *= 0.316
    elif kind == "cosine" and tokens >= warm:
        p = min(1.0, (tokens - warm) / (total - warm))
        lo = sched.get("min_lr_ratio", 0.0) * max_lr
        lr = lo + (max_lr - lo) * 0.5 * (1 + math.cos(math.pi * p))
    elif kind not in ("step", "cosine", "constant"):
        sys.exit(f"schedule.kind {kind!r}: want step, cosine or constant")
    return lr


class Trainer:
    def __init__(self, model, cfg):
        self.m, self.cfg = model, cfg
        o = cfg["optim"]
        params = list(model.named_parameters())
        self.params = [p for _, p in params]
        # torch's own AdamW: two groups, weight decay on exactly moetrain's set.
        self.opt = torch.optim.AdamW(
            [{"params": [p for n, p in params if decays(n, p)], "weight_decay": o["weight_decay"]},
             {"params": [p for n, p in params if not decays(n, p)], "weight_decay": 0.0}],
            lr=0.0, betas=(o["beta1"], o["beta2"]), eps=o["eps"], foreach=False)
        self.clip = o["clip"]
        t = cfg["train"]
        self.batch, self.seq = t["batch_size"], t["seq_len"]
        self.micro = t.get("micro_batch_size") or self.batch
        self.accum = self.batch // self.micro
        self.step_tokens = self.batch * self.seq
        self.tokens = 0
        self.steps = 0

    def batch_counts(self, micro_batches):
        """A batch-level balance loss over several micro-batches uses the
        whole batch's routing counts: one forward pass without gradients
        gathers them first, as moetrain's trainer does."""
        layers = self.m.moe_layers()
        for _, m in layers:
            m.batch_counts = None
        s = self.m.s
        if s.per_sequence or self.accum == 1 or s.ffn == "hash" or not (s.expert_alpha > 0 or s.device_alpha > 0):
            return
        loads = [torch.zeros(s.routed) for _ in layers]
        with torch.no_grad():
            for w in micro_batches:
                self.m(w)
                for j, (_, m) in enumerate(layers):
                    loads[j] += m.load.float()
        n = sum(w.shape[0] for w in micro_batches) * self.seq
        for j, (_, m) in enumerate(layers):
            m.batch_counts = (loads[j], n)

    def step(self, micro_batches):
        """One optimizer step on a batch given as its micro-batches."""
        self.batch_counts(micro_batches)
        acc = [None] * len(self.params)
        dtype = self.params[0].dtype  # float32, or float64 with --dtype float64
        scale = torch.tensor(1.0 / self.accum, dtype=dtype)
        loss, balance, margin = 0.0, 0.0, math.inf
        loads = [torch.zeros(self.m.s.routed, dtype=torch.float64) for _ in self.m.moe_layers()]
        for w in micro_batches:
            for p in self.params:
                p.grad = None
            _, ce, bl = self.m(w)
            total = ce + sum(bl) if bl else ce
            total.backward()
            margin = min(margin, self.m.margin())
            for j, (_, m) in enumerate(self.m.moe_layers()):
                loads[j] = loads[j] + m.load.double()
            loss += ce.item() / self.accum
            balance += sum(b.item() for b in bl) / self.accum
            for i, p in enumerate(self.params):
                g = p.grad if p.grad is not None else torch.zeros_like(p)
                if self.accum == 1:
                    acc[i] = g
                elif acc[i] is None:
                    acc[i] = g * scale
                else:
                    acc[i] += g * scale
        norm = math.sqrt(sum(float(g.double().pow(2).sum()) for g in acc))
        # optim.ClipScale: maxNorm/norm in the weights' precision, no ε.
        clip = self.clip > 0 and math.isfinite(norm) and norm > self.clip
        for p, g in zip(self.params, acc):
            p.grad = g * torch.tensor(self.clip / norm, dtype=dtype) if clip else g
        lr = learning_rate(self.cfg["schedule"], self.cfg["train"]["tokens"], self.tokens + self.step_tokens)
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.step()
        self.update_bias(loads)
        self.tokens += self.step_tokens
        self.steps += 1
        return {"step": self.steps, "tokens": self.tokens, "lr": lr, "loss": loss, "balance": balance,
                "grad_norm": norm, "min_topk_margin": margin}


    def update_bias(self, loads):
        """Auxiliary-loss-free balancing (router.bias_rate γ) after the
        optimizer step: b_e += γ·sign(mean load − load_e), the loads counted
        over every micro-batch of the step."""
        s = self.m.s
        if s.bias_rate <= 0:
            return
        with torch.no_grad():
            for j, (_, m) in enumerate(self.m.moe_layers()):
                b = m.gate.e_score_correction_bias
                b += (torch.sign(loads[j].mean() - loads[j]) * s.bias_rate).to(b.dtype)


def evaluate(model, windows, batch):
    """Mean cross-entropy per predicted token over windows, batch at a time
    (the last batch may be short), as moetrain's held-out evaluation."""
    model.eval()
    nats, n = 0.0, 0
    with torch.no_grad():
        for lo in range(0, windows.shape[0], batch):
            w = windows[lo:lo + batch]
            _, ce, _ = model(w)
            tokens = w.shape[0] * (w.shape[1] - 1)
            nats += ce.item() * tokens
            n += tokens
    model.train()
    return nats / n


# --------------------------------------------------------------------------
# Modes


def build(args):
    spec, cfg = read_config(args.config)
    # float64 (train --dtype) tells float32 rounding from a difference of
    # arithmetic: the float32 weights moetrain wrote load exactly.
    torch.set_default_dtype(getattr(torch, getattr(args, "dtype", "float32")))
    torch.manual_seed(0)
    m = CausalLM(spec)
    if getattr(args, "weights", None):
        m.load(args.weights)
    else:
        m.init_weights(getattr(args, "seed", 0))
    return m, cfg


def need_moetrain(cfg, path):
    if cfg is None:
        sys.exit(f"{path}: this mode needs a moetrain config in JSON (moetrain reference-inputs writes one), not an HF config.json")


def mode_init(a):
    m, _ = build(a)
    save_safetensors(a.out, m.weights())
    print(json.dumps({"wrote": a.out, "tensors": len(m.weights())}))


def mode_dump(a):
    m, _ = build(a)
    w = read_text_windows(a.tokens)
    m.train()
    logits, ce, bl = m(w)
    aux = sum(bl) if bl else torch.zeros(())
    (ce + aux).backward()
    out = {"grad." + n: (p.grad if p.grad is not None else torch.zeros_like(p)) for n, p in m.named_parameters()}
    out.update(logits=logits, loss=ce.reshape(1), aux_loss=aux.reshape(1))
    for i, moe in m.moe_layers():
        if moe.last_idx is not None:
            out[f"route.{i}.topk_idx"] = moe.last_idx.sort(-1).values
    save_safetensors(a.out, out)
    margin = m.margin()
    print(json.dumps({"loss": ce.item(), "aux_loss": float(aux), "batch": list(w.shape), "wrote": a.out,
                      "min_topk_gap": None if math.isinf(margin) else margin}))


def mode_eval(a):
    m, cfg = build(a)
    w = read_windows(a.tokens, a.seq)
    print(json.dumps({"loss": evaluate(m, w, a.batch), "windows": w.shape[0], "tokens": w.shape[0] * a.seq}))


def mode_train(a):
    m, cfg = build(a)
    need_moetrain(cfg, a.config)
    tr = Trainer(m, cfg)
    windows = read_windows(a.batches, tr.seq)
    per_step = tr.batch
    steps = windows.shape[0] // per_step
    if a.steps:
        if a.steps > steps:
            sys.exit(f"{a.batches} holds {steps} steps of {per_step} windows, not {a.steps}")
        steps = a.steps
    held = read_windows(a.eval_tokens, tr.seq) if a.eval_tokens else None
    margin = math.inf
    t0 = time.perf_counter()
    for s in range(steps):
        batch = windows[s * per_step:(s + 1) * per_step]
        rec = tr.step(list(batch.split(tr.micro)))
        margin = min(margin, rec["min_topk_margin"])
        if held is not None and ((a.eval_every and tr.steps % a.eval_every == 0) or s == steps - 1):
            rec["val_loss"] = evaluate(m, held, tr.micro)
        rec["elapsed_s"] = round(time.perf_counter() - t0, 3)
        if math.isinf(rec["min_topk_margin"]):
            rec["min_topk_margin"] = None
        print(json.dumps(rec), flush=True)
    if a.out:
        save_safetensors(a.out, m.weights())
    print(json.dumps({"steps": tr.steps, "tokens": tr.tokens, "min_topk_margin": None if math.isinf(margin) else margin,
                      "wrote": a.out}), flush=True)


def mode_bench(a):
    """Full training steps (forward, backward, clipping, AdamW) on random
    tokens, a warm-up first, the median step time reported: what `moetrain
    bench` measures."""
    m, cfg = build(a)
    need_moetrain(cfg, a.config)
    cfg["train"].update(batch_size=a.batch, micro_batch_size=a.batch, seq_len=a.seq)
    cfg["schedule"] = {"kind": "constant", "max_lr": 1e-3}
    tr = Trainer(m, cfg)
    g = torch.Generator().manual_seed(1)
    times = []
    for s in range(a.warmup + a.steps):
        w = torch.randint(0, m.s.vocab, (a.batch, a.seq + 1), generator=g)
        t0 = time.perf_counter()
        rec = tr.step([w])
        if s >= a.warmup:
            times.append(time.perf_counter() - t0)
    med = sorted(times)[len(times) // 2]
    print(json.dumps({"ffn": m.s.ffn, "batch": a.batch, "seq": a.seq, "steps": a.steps, "threads": torch.get_num_threads(),
                      "tokens_per_s": a.batch * a.seq / med, "step_s": med, "step_times_s": times, "loss": rec["loss"]}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)

    def mode(name, fn, help, weights=True):
        p = sub.add_parser(name, help=help)
        p.set_defaults(fn=fn)
        p.add_argument("--config", required=True, help="moetrain config in JSON, or an HF DeepSeek config.json")
        if weights:
            p.add_argument("--weights", help="safetensors with moetrain's tensor names (default: draw with --seed)")
        p.add_argument("--seed", type=int, default=0, help="PyTorch's own initialisation seed when no --weights")
        p.add_argument("--threads", type=int, default=1)
        return p

    p = mode("init", mode_init, "write PyTorch-drawn weights", weights=False)
    p.add_argument("--out", required=True)
    p = mode("dump", mode_dump, "one forward/backward pass, everything written out")
    p.add_argument("--tokens", required=True, help="text file: one window of T+1 token ids per line")
    p.add_argument("--out", required=True)
    p = mode("eval", mode_eval, "held-out loss of weights on windows")
    p.add_argument("--tokens", required=True, help="little-endian int32 windows of --seq+1 ids")
    p.add_argument("--seq", type=int, required=True)
    p.add_argument("--batch", type=int, default=8)
    p = mode("train", mode_train, "train on moetrain's batches")
    p.add_argument("--batches", required=True, help="little-endian int32 windows of train.seq_len+1 ids, train.batch_size per step")
    p.add_argument("--steps", type=int, default=0, help="steps to train (default: every batch in the file)")
    p.add_argument("--eval-tokens", help="held-out windows (int32) scored after the last step and every --eval-every steps")
    p.add_argument("--eval-every", type=int, default=0)
    p.add_argument("--out", help="write the final weights here (float32)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="precision of the weights and arithmetic (float64: to tell rounding from real differences)")
    p = mode("bench", mode_bench, "time training steps on random tokens")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    a.fn(a)


if __name__ == "__main__":
    main()
