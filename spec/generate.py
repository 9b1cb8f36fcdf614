"""Writes the shared golden vectors of docs/SPEC-SHARED-RULES.md: candidates.json (candidate validation).

Run from the repository root: /usr/bin/python3 spec/generate.py. Deterministic (seeded numpy); the
output is committed, and both the Java tests (trainer CandidateSpecTest) and the Python tests
(clients/python/tests/test_spec.py) read it. τ comes from an independent reference here (sort +
cumulative sum of all λ_i μ_j), not from either implementation.
"""
import json
import math
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RUN = "run-1"
LAYERS = {"fc1": {"d_out": 5, "d_in": 4}}
RHOS = [0.5, 0.9, 0.99, 1.0]


def keep_mass_tau(lam, mu, rho):
    """The largest Π = λ_i μ_j with Σ_{Π' ≥ Π} Π' ≥ ρ Σ Π (ρ = 1: 0, every pair kept)."""
    if rho >= 1:
        return 0.0
    pi = np.sort(np.outer(lam, mu).ravel())[::-1]
    cs = np.cumsum(pi)
    return float(pi[min(int(np.searchsorted(cs, rho * cs[-1])), pi.size - 1)])


def orthonormal(n, rng):
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def values(a, dtype):
    a = np.asarray(a, dtype=np.float32 if dtype == "FLOAT32" else np.float64)
    return [float(x) for x in a.ravel()]


def tensor(a, dtype="FLOAT64", shape=None):
    a = np.asarray(a)
    return {"dtype": dtype, "shape": list(shape if shape is not None else a.shape), "values": values(a, dtype)}


def base(dtype="FLOAT64", rhos=RHOS, k_g=None, k_a=None, seed=1):
    rng = np.random.default_rng(seed)
    d_out, d_in = LAYERS["fc1"]["d_out"], LAYERS["fc1"]["d_in"]
    ug, ua = orthonormal(d_out, rng), orthonormal(d_in, rng)
    lam = np.array([8.0, 4.0, 2.0, 0.5, 0.25])
    mu = np.array([3.0, 1.5, 0.75, 0.1])
    wide = np.float32 if dtype == "FLOAT32" else np.float64
    lam_sent, mu_sent = lam.astype(wide).astype(np.float64), mu.astype(wide).astype(np.float64)
    k_g, k_a = k_g or d_out, k_a or d_in
    return {"candidate_id": "c-1", "run_id": RUN, "layer": "fc1", "step": 30, "factor_version": 3,
            "basis_g": tensor(ug[:, :k_g], dtype), "basis_a": tensor(ua[:, :k_a], dtype),
            "eigenvalues_g": tensor(lam, dtype), "eigenvalues_a": tensor(mu, dtype),
            "rhos": list(rhos), "thresholds": [keep_mass_tau(lam_sent, mu_sent, r) for r in rhos],
            "search": "ALL", "accuracy_tolerance": 0.01, "loss_tolerance": math.log(1.05),
            "train_candidates": [], "peak_tokens": 0}


def changed(c, **fields):
    out = json.loads(json.dumps(c))
    out.update(fields)
    return out


def cases():
    ok = base()
    yield "a whole FLOAT64 candidate", ok, "ACCEPT"
    yield "a whole FLOAT32 candidate", base("FLOAT32"), "ACCEPT"
    yield "v4: leading columns that hold every kept pair", base(rhos=[0.5], k_g=2, k_a=2), "ACCEPT"
    yield "one rho, rho = 1 keeps every pair with threshold 0", base(rhos=[1.0]), "ACCEPT"
    yield "v3: train_candidates and peak_tokens in range", changed(ok, train_candidates=[0, 3], peak_tokens=8,
                                                                    search="BISECT"), "ACCEPT"
    yield "v4: a mask keeps a pair beyond the columns sent", base(rhos=[0.99], k_g=2, k_a=2), "COLUMNS_MISSING"
    yield "another run's candidate", changed(ok, run_id="run-2"), "KEY_MISMATCH"
    yield "a layer this trainer does not watch", changed(ok, layer="fc9"), "UNKNOWN_LAYER"
    yield "empty candidate_id", changed(ok, candidate_id=""), "INVALID_FIELD"
    yield "candidate_id of 257 characters", changed(ok, candidate_id="c" * 257), "INVALID_FIELD"
    yield "no rho", changed(ok, rhos=[], thresholds=[]), "INVALID_FIELD"
    yield "65 rhos", changed(ok, rhos=[1.0] * 65, thresholds=[0.0] * 65), "INVALID_FIELD"
    yield "fewer thresholds than rhos", changed(ok, thresholds=ok["thresholds"][:-1]), "INVALID_FIELD"
    yield "rho 0", changed(ok, rhos=[0.0] + ok["rhos"][1:]), "INVALID_FIELD"
    yield "rho above 1", changed(ok, rhos=ok["rhos"][:-1] + [1.5]), "INVALID_FIELD"
    yield "rho NaN", changed(ok, rhos=["NaN"] + ok["rhos"][1:]), "NON_FINITE"
    yield "threshold infinite", changed(ok, thresholds=["Infinity"] + ok["thresholds"][1:]), "NON_FINITE"
    yield "threshold negative", changed(ok, thresholds=ok["thresholds"][:-1] + [-1.0]), "INVALID_FIELD"
    yield "threshold 1% off select(rho).tau()", changed(ok, thresholds=[ok["thresholds"][0] * 1.01]
                                                         + ok["thresholds"][1:]), "THRESHOLD_MISMATCH"
    bad = dict(ok["basis_g"], shape=[6, 5], values=ok["basis_g"]["values"] + [0.0] * 5)
    yield "basis_g with a row too many", changed(ok, basis_g=bad), "SHAPE_MISMATCH"
    yield "basis_a with no column", changed(ok, basis_a={"dtype": "FLOAT64", "shape": [4, 0], "values": []}), \
        "SHAPE_MISMATCH"
    yield "eigenvalues_g of the wrong length", changed(ok, eigenvalues_g=tensor([8.0, 4.0, 2.0, 0.5])), \
        "SHAPE_MISMATCH"
    yield "basis_g in INT32", changed(ok, basis_g=dict(ok["basis_g"], dtype="INT32")), "SHAPE_MISMATCH"
    yield "basis_a with fewer values than its shape", changed(ok, basis_a=dict(ok["basis_a"],
                                                              values=ok["basis_a"]["values"][:-1])), "TENSOR_LENGTH"
    yield "NaN in basis_g", changed(ok, basis_g=dict(ok["basis_g"], values=["NaN"] + ok["basis_g"]["values"][1:])), \
        "NON_FINITE"
    yield "eigenvalues_a not descending", changed(ok, eigenvalues_a=tensor([3.0, 1.5, 2.0, 0.1])), "INVALID_FIELD"
    yield "negative eigenvalue", changed(ok, eigenvalues_g=tensor([8.0, 4.0, 2.0, 0.5, -0.25])), "INVALID_FIELD"
    scaled = np.array(ok["basis_g"]["values"]).reshape(5, 5)
    scaled[:, 2] *= 1.01
    yield "a basis_g column of norm 1.01", changed(ok, basis_g=tensor(scaled)), "NOT_ORTHONORMAL"
    twin = np.array(ok["basis_a"]["values"]).reshape(4, 4)
    twin[:, 1] = twin[:, 0]
    yield "two equal neighbouring basis_a columns", changed(ok, basis_a=tensor(twin)), "NOT_ORTHONORMAL"
    yield "train_candidates outside the rhos", changed(ok, train_candidates=[4]), "INVALID_FIELD"
    yield "negative peak_tokens", changed(ok, peak_tokens=-1), "INVALID_FIELD"
    yield "negative accuracy_tolerance", changed(ok, accuracy_tolerance=-0.01), "INVALID_FIELD"
    yield "loss_tolerance NaN", changed(ok, loss_tolerance="NaN"), "NON_FINITE"


def main():
    vectors = [{"name": n, "candidate": c, "expect": e} for n, c, e in cases()]
    doc = {"spec": "docs/SPEC-SHARED-RULES.md#candidate-validation", "run_id": RUN, "layers": LAYERS,
           "note": "non-finite numbers are the strings NaN / Infinity / -Infinity; tensors row-major",
           "vectors": vectors}
    (HERE / "candidates.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {len(vectors)} candidate vectors")


if __name__ == "__main__":
    main()
