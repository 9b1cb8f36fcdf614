#!/usr/bin/python3
"""Independent numpy/scipy reference for the service's edited snapshots (SnapshotEditorTest).

Run: /usr/bin/python3 service/src/test/resources/golden/make_snapshot_golden.py
Writes snapshot_golden.safetensors next to this script: factors A (d_in x d_in) and G
(d_out x d_out), a float32 weight W and bias, and for each rho the reference edit
    W' = U_G ((U_G^T W U_A) * M) U_A^T
with U from scipy eigh (driver evd, fp64) and the keep-mass mask M from sort-and-cumsum over
the eigenvalues rounded to float32 (the spectra the EditCandidate carries), keeping every pair
with lambda_i mu_j >= the product of the pair that crosses rho of the total mass.
"""
import json
import os
import struct

import numpy as np
import scipy.linalg

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(20261201)
D_IN, D_OUT = 24, 16
RHOS = [0.6, 0.9, 0.99, 0.999]


def spd(n, tokens):
    x = rng.standard_normal((tokens, n)) * np.geomspace(3.0, 0.02, n)
    return x.T @ x / tokens


def eigh_desc(f):
    vals, vecs = scipy.linalg.eigh(f, driver="evd")
    return np.clip(vals[::-1], 0, None).copy(), vecs[:, ::-1].copy()


def keep_mask(lam, mu, rho):
    lam32 = lam.astype(np.float32).astype(np.float64)
    mu32 = mu.astype(np.float32).astype(np.float64)
    p = np.outer(lam32, mu32)
    flat = p.ravel()
    order = np.argsort(-flat, kind="stable")
    cs = np.cumsum(flat[order])
    k = int(np.argmax(cs >= rho * lam32.sum() * mu32.sum()))
    return p >= flat[order][k]


def entry(name, a):
    a = np.ascontiguousarray(a)
    dtype = {np.dtype("float64"): "F64", np.dtype("float32"): "F32", np.dtype("int64"): "I64"}[a.dtype]
    return name, dtype, a.shape, a.astype(a.dtype.newbyteorder("<")).tobytes()


a = spd(D_IN, 400)
g = spd(D_OUT, 400)
w = (rng.standard_normal((D_OUT, D_IN)) * 0.3).astype(np.float32)
bias = rng.standard_normal(D_OUT).astype(np.float32)
lam, ug = eigh_desc(g)
mu, ua = eigh_desc(a)
c = ug.T @ w.astype(np.float64) @ ua
out = [entry("A", a), entry("G", g), entry("W", w), entry("bias", bias), entry("rhos", np.array(RHOS))]
for k, rho in enumerate(RHOS):
    m = keep_mask(lam, mu, rho)
    out.append(entry("edited.%d" % k, ug @ (c * m) @ ua.T))
    out.append(entry("kept.%d" % k, np.array([int(m.sum())], dtype=np.int64)))

header = {}
offset = 0
for name, dtype, shape, raw in out:
    header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(raw)]}
    offset += len(raw)
blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
blob += b" " * ((8 - len(blob) % 8) % 8)
with open(os.path.join(HERE, "snapshot_golden.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(blob)))
    f.write(blob)
    for _, _, _, raw in out:
        f.write(raw)
print("wrote snapshot_golden.safetensors:", ", ".join(n for n, *_ in out))
