"""The service's edit candidates (docs/SERVICE-CONTRACT.md §1): validation and the edit they describe.

The service sends, per layer and factor refresh, an EditCandidate: the Kronecker eigenbases U_G,
U_A with their spectra λ, μ, and candidate keep-mass thresholds τ_k, most aggressive first; v3
adds how the trainer may search them (ALL or BISECT), the calibration tolerances, the
`train_candidates` and `peak_tokens`. The edit of candidate k is
W'_k = U_G ((U_Gᵀ W U_A) ∘ M_k) U_Aᵀ with M_k = [λ_i μ_j ≥ τ_k]. Answering is answerer.py's job.
"""
import contextlib
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

# probe-results is created with max.message.bytes 1 MiB (TopicSpec.DEFAULT_MAX_MESSAGE_BYTES); Kafka framing
PROBE_RESULT_MAX_BYTES = 1024 * 1024 - 4096
FLOAT32_MAX = float(np.finfo(np.float32).max)
ORTHONORMAL_TOLERANCE = 1e-3  # ‖Uᵀ U x − x‖ / ‖x‖; float32 rounding of a true basis gives ~1e-5 at n = 1448
_DTYPES = {"FLOAT32": "<f4", "FLOAT64": "<f8"}


class CandidateError(ValueError):
    """A candidate that cannot be answered as sent (refused, counted, warned about)."""


@dataclass
class Candidate:
    """A validated EditCandidate: bases and spectra as float64 CPU tensors."""
    candidate_id: str
    layer: str
    step: int
    factor_version: int
    basis_g: torch.Tensor   # d_out x k, eigenvectors in columns (v4: the leading k <= d_out)
    basis_a: torch.Tensor   # d_in x k
    eigenvalues_g: torch.Tensor
    eigenvalues_a: torch.Tensor
    rhos: list
    thresholds: list
    search: str = "ALL"               # v3: ALL or BISECT
    accuracy_tolerance: float = 0.01  # v3: allowed drop of token-weighted probe accuracy under BISECT
    loss_tolerance: float = math.log(1.05)  # v3: allowed rise of token-weighted probe loss (nats)
    train_candidates: list = field(default_factory=list)  # v3: indices evaluated besides the one found
    peak_tokens: int = 0              # v3: k of the per-example peak statistic (0: not asked)
    received: float = field(default_factory=time.monotonic)


def _tensor(record, name, shape):
    t = record[name]
    if t["dtype"] not in _DTYPES:
        raise CandidateError(f"{name}: dtype {t['dtype']} (FLOAT32 or FLOAT64 expected)")
    if list(t["shape"]) != list(shape):
        raise CandidateError(f"{name}: shape {list(t['shape'])}, the layer needs {list(shape)}")
    width = 4 if t["dtype"] == "FLOAT32" else 8
    if len(t["data"]) != math.prod(shape) * width:
        raise CandidateError(f"{name}: {len(t['data'])} bytes for shape {list(shape)} {t['dtype']}")
    values = torch.from_numpy(np.frombuffer(t["data"], dtype=_DTYPES[t["dtype"]]).astype(np.float64)).reshape(shape)
    if not torch.isfinite(values).all():
        raise CandidateError(f"{name} holds NaN or infinite values")
    return values


def width(dtype):
    if dtype not in _DTYPES:
        raise CandidateError(f"dtype {dtype} (FLOAT32 or FLOAT64 expected)")
    return 4 if dtype == "FLOAT32" else 8


def _check_spectrum(values, name):
    if (values < 0).any() or (values[1:] > values[:-1]).any():
        raise CandidateError(f"{name} must be >= 0 and descending")


def _check_orthonormal(u, name):
    """A cheap check, O(n k): Uᵀ(U x) = x for four random x (exact for orthonormal columns)."""
    x = torch.randn(u.shape[1], 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    err = torch.linalg.norm(u.t() @ (u @ x) - x) / torch.linalg.norm(x)
    if not err < ORTHONORMAL_TOLERANCE:
        raise CandidateError(f"{name} is not orthonormal (‖UᵀUx − x‖/‖x‖ = {float(err):.2e})")


def parse_candidate(record, layers):
    """Validates a decoded EditCandidate against the watched layers ({name: (d_in, d_out)})."""
    layer = record["layer"]
    if layer not in layers:
        raise CandidateError(f"unknown layer {layer!r} (watched: {sorted(layers)})")
    if not record["candidate_id"]:
        raise CandidateError("empty candidate_id")
    d_in, d_out = layers[layer]
    rhos, taus = [float(r) for r in record["rhos"]], [float(t) for t in record["thresholds"]]
    if not rhos or len(rhos) != len(taus):
        raise CandidateError(f"{len(rhos)} rhos and {len(taus)} thresholds (one threshold per rho, at least one)")
    if not all(0 < r <= 1 for r in rhos) or not all(t >= 0 and math.isfinite(t) for t in taus):
        raise CandidateError(f"rhos must be in (0, 1] and thresholds finite and >= 0: {rhos}, {taus}")
    search = str(record.get("search", "ALL"))
    if search not in ("ALL", "BISECT"):
        raise CandidateError(f"search {search!r}: ALL or BISECT")
    tolerances = float(record.get("accuracy_tolerance", 0.01)), float(record.get("loss_tolerance", math.log(1.05)))
    if not all(math.isfinite(t) and t >= 0 for t in tolerances):
        raise CandidateError(f"tolerances must be finite and >= 0: {tolerances}")
    train = sorted({int(k) for k in record.get("train_candidates", [])})
    if any(not 0 <= k < len(rhos) for k in train):
        raise CandidateError(f"train_candidates {train} outside 0..{len(rhos) - 1}")
    peak = int(record.get("peak_tokens", 0))
    if peak < 0:
        raise CandidateError(f"peak_tokens {peak} < 0")
    c = Candidate(record["candidate_id"], layer, int(record["step"]), int(record["factor_version"]),
                  _tensor(record, "basis_g", (d_out, _columns(record, "basis_g", d_out))),
                  _tensor(record, "basis_a", (d_in, _columns(record, "basis_a", d_in))),
                  _tensor(record, "eigenvalues_g", (d_out,)), _tensor(record, "eigenvalues_a", (d_in,)), rhos, taus,
                  search, tolerances[0], tolerances[1], train, peak)
    _check_spectrum(c.eigenvalues_g, "eigenvalues_g")
    _check_spectrum(c.eigenvalues_a, "eigenvalues_a")
    _check_orthonormal(c.basis_g, "basis_g")
    _check_orthonormal(c.basis_a, "basis_a")
    # v4: the columns not sent must hold no kept pair (each row's kept set is a prefix: λ, μ descending)
    k_g, k_a, mildest = c.basis_g.shape[1], c.basis_a.shape[1], min(taus)
    if (k_g < d_out and float(c.eigenvalues_g[k_g] * c.eigenvalues_a[0]) >= mildest) or \
            (k_a < d_in and float(c.eigenvalues_g[0] * c.eigenvalues_a[k_a]) >= mildest):
        raise CandidateError(f"the masks keep pairs beyond the {k_g} x {k_a} leading basis columns sent")
    return c


def _columns(record, name, side):
    """Columns a basis carries: v4 sends its leading k of the layer's side, 1 <= k <= side."""
    shape = list(record[name]["shape"])
    k = shape[1] if len(shape) == 2 else -1
    if not 1 <= k <= side:
        raise CandidateError(f"{name}: shape {shape}, the layer needs {side} x k with 1 <= k <= {side}")
    return k


def coordinates(weight, basis_g, basis_a):
    """C = U_Gᵀ W U_A, W as d_out x d_in."""
    return basis_g.t() @ weight @ basis_a


def edit(weight, basis_g, basis_a, keep, coords=None):
    """W' = U_G (C ∘ keep) U_Aᵀ with C = U_Gᵀ W U_A (pass coords to reuse them), all float64; with v4's
    leading columns only, the keep mask's leading block (it keeps nothing beyond them)."""
    c = coordinates(weight, basis_g, basis_a) if coords is None else coords
    return basis_g @ (c * keep[:c.shape[0], :c.shape[1]]) @ basis_a.t()


@contextlib.contextmanager
def evaluation_mode(model):
    """model.eval() for the block, then every submodule's own train/eval flag as it was."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in flags:
            m.training = training
