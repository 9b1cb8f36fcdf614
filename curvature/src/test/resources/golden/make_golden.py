#!/usr/bin/python3
"""Independent numpy/scipy reference for curvature's golden tests.

Run: /usr/bin/python3 curvature/src/test/resources/golden/make_golden.py
Writes golden.safetensors (and safetensors_sample.safetensors) next to this script. The
safetensors writer below follows the format spec by hand (the `safetensors` pip package is not
available here): 8-byte little-endian header length, JSON header padded with spaces to 8 bytes,
contiguous little-endian data.
"""
import json
import os
import struct

import numpy as np
import scipy.linalg
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(20261122)

DTYPES = {np.dtype("float64"): "F64", np.dtype("float32"): "F32", np.dtype("float16"): "F16",
          np.dtype("int64"): "I64", np.dtype("int32"): "I32", np.dtype("uint8"): "U8"}


def write_safetensors(path, tensors, metadata=None):
    """tensors: list of (name, dtype string, shape, raw little-endian bytes)."""
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    offset = 0
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * ((8 - len(blob) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for _, _, _, raw in tensors:
            f.write(raw)


def entry(name, array):
    a = np.array(array, order="C")  # ascontiguousarray would turn a 0-d scalar into shape [1]
    return (name, DTYPES[a.dtype], a.shape, a.astype(a.dtype.newbyteorder("<")).tobytes())


def eigh_desc(f):
    vals, vecs = scipy.linalg.eigh(f, driver="evd")
    return vals[::-1].copy(), vecs[:, ::-1].copy()


def keep_mask(lam, mu, rho):
    """Sort-and-cumsum reference: keep every pair with Π >= the Π of the pair crossing ρ·total."""
    p = np.outer(lam, mu)
    flat = p.ravel()
    order = np.argsort(-flat, kind="stable")
    cs = np.cumsum(flat[order])
    reach = cs >= rho * lam.sum() * mu.sum()
    k = int(np.argmax(reach)) if reach.any() else len(cs) - 1
    return p >= flat[order][k]


def spd(n, tokens):
    x = rng.standard_normal((tokens, n)) * np.geomspace(3.0, 0.05, n)
    return x.T @ x / tokens


out = []

# 1. factors: float32 token rows in batches at steps; cumulative and EMA references in fp64
d, decay = 24, 0.9
steps = [0, 0, 1, 3, 4]
counts = [40, 7, 64, 1, 33]
batches = [(rng.standard_normal((n, d)) * np.linspace(2.0, 0.1, d)).astype(np.float32) for n in counts]
x_all = np.concatenate(batches)
out.append(entry("factor.x", x_all))
out.append(entry("factor.steps", np.array(steps, dtype=np.int64)))
out.append(entry("factor.counts", np.array(counts, dtype=np.int64)))
x64 = x_all.astype(np.float64)
out.append(entry("factor.cumulative_mean", x64.T @ x64 / len(x64)))
last = steps[-1]
s = sum(decay ** (last - st) * b.astype(np.float64).T @ b.astype(np.float64) for st, b in zip(steps, batches))
w = sum(decay ** (last - st) * n for st, n in zip(steps, counts))
out.append(entry("factor.ema_mean", s / w))
out.append(entry("factor.ema_weight", np.array([w])))

# 2. eigendecomposition of a PSD factor with a spectral gap after k = 5
n = 40
f = spd(n, 400)
vals, vecs = eigh_desc(f)
out.append(entry("eigh.f", f))
out.append(entry("eigh.values", vals))
out.append(entry("eigh.projector5", vecs[:, :5] @ vecs[:, :5].T))

# 3. keep-mass masks: heavy-tailed spectra, and power-of-two spectra whose products tie exactly
lam = np.sort(rng.pareto(1.5, 50) + 1e-3)[::-1].copy()
mu = np.sort(rng.pareto(1.2, 40) + 1e-4)[::-1].copy()
lam_t = 2.0 ** -np.sort(rng.integers(0, 6, 30))
mu_t = 2.0 ** -np.sort(rng.integers(0, 5, 20))
rhos = np.array([0.05, 0.3, 0.6, 0.9, 0.99, 0.9999])
out += [entry("mask.lambda", lam), entry("mask.mu", mu), entry("mask.rhos", rhos),
        entry("mask.tie_lambda", lam_t), entry("mask.tie_mu", mu_t)]
for k, rho in enumerate(rhos):
    out.append(entry(f"mask.rows.{k}", keep_mask(lam, mu, rho).sum(axis=1).astype(np.int64)))
    out.append(entry(f"mask.tie_rows.{k}", keep_mask(lam_t, mu_t, rho).sum(axis=1).astype(np.int64)))

# 4. edit and first-order scores: layer 30 x 24, factors from sampled activations
d_out, d_in, rho = 30, 24, 0.6
g_f, a_f = spd(d_out, 300), spd(d_in, 300)
wt = rng.standard_normal((d_out, d_in))
lg, ug = eigh_desc(g_f)
la, ua = eigh_desc(a_f)
m = keep_mask(lg, la, rho)
edited = ug @ ((ug.T @ wt @ ua) * m) @ ua.T
out += [entry("edit.w", wt), entry("edit.G", g_f), entry("edit.A", a_f), entry("edit.rho", np.array([rho])),
        entry("edit.w_edited", edited), entry("edit.kept", np.array([m.sum()], dtype=np.int64))]
tokens = 50
ids = np.sort(rng.integers(100, 110, tokens)).astype(np.int64)
a_tok = rng.standard_normal((tokens, d_in)).astype(np.float32)
g_tok = rng.standard_normal((tokens, d_out)).astype(np.float32)
per_token = np.einsum("to,oi,ti->t", g_tok.astype(np.float64), edited - wt, a_tok.astype(np.float64))
uniq = list(dict.fromkeys(ids.tolist()))
scores = np.array([per_token[ids == u].sum() for u in uniq])
out += [entry("score.a", a_tok), entry("score.g", g_tok), entry("score.ids", ids),
        entry("score.unique_ids", np.array(uniq, dtype=np.int64)), entry("score.values", scores)]

# 5. drift of a perturbed factor against the old basis, and a spectrum summary
f2 = f + 0.01 * spd(n, 400)
rot = vecs.T @ f2 @ vecs
drift = np.linalg.norm(rot - np.diag(np.diag(rot))) / np.linalg.norm(f2)
vals2, vecs2 = eigh_desc(f2)
overlap = np.linalg.norm(vecs[:, :5].T @ vecs2[:, :5]) ** 2 / 5
p = vals / vals.sum()
cum = np.cumsum(vals)
summary = [int(np.argmax(cum >= q * vals.sum())) + 1 for q in (0.5, 0.9, 0.99)] + [float(np.exp(-(p * np.log(p)).sum()))]
out += [entry("drift.f2", f2), entry("drift.offdiag", np.array([drift])), entry("drift.overlap5", np.array([overlap])),
        entry("spectrum.summary", np.array(summary))]

write_safetensors(os.path.join(HERE, "golden.safetensors"), out,
                  {"generator": "make_golden.py", "numpy": np.__version__, "scipy": scipy.__version__})

# 6. a small file exercising dtypes for the reader: torch tensors, bytes taken as torch stores them
bf16 = torch.tensor([1.0, -2.5, 3.140625], dtype=torch.bfloat16)
sample = [
    entry("f32", torch.arange(6, dtype=torch.float32).reshape(2, 3).numpy() / 4),
    entry("f64", torch.tensor([[1e-300, -2.0], [3.5, 1e300]], dtype=torch.float64).numpy()),
    entry("f16", torch.tensor([0.5, -1.0, 65504.0, 6e-8], dtype=torch.float16).numpy()),
    ("bf16", "BF16", [3], bf16.view(torch.int16).numpy().astype("<i2").tobytes()),
    entry("i64", torch.tensor([1, -2, 3], dtype=torch.int64).numpy()),
    entry("scalar", np.array(7.25, dtype=np.float32)),
    entry("empty", np.zeros((0, 4), dtype=np.float32)),
]
write_safetensors(os.path.join(HERE, "safetensors_sample.safetensors"), sample, {"format": "pt", "who": "torch"})
print("wrote golden files to", HERE)
