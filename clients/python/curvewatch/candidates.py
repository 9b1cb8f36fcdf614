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

from .limits import MAX_CANDIDATE_ID_CHARS, MAX_RHOS, ORTHONORMAL_TOLERANCE, TAU_RELATIVE_TOLERANCE

FLOAT32_MAX = float(np.finfo(np.float32).max)
_DTYPES = {"FLOAT32": "<f4", "FLOAT64": "<f8"}


class CandidateError(ValueError):
    """A candidate that cannot be answered as sent (refused, counted, warned about).

    reason: the refusal reason of docs/SPEC-SHARED-RULES.md (the Java trainer's names), e.g.
    SHAPE_MISMATCH, NOT_ORTHONORMAL, THRESHOLD_MISMATCH; INVALID_FIELD when not given.
    """

    def __init__(self, message, reason="INVALID_FIELD"):
        super().__init__(message)
        self.reason = reason


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
    """The tensor as float64, checked in the spec's order: shape, dtype, byte length, finite values."""
    t = record[name]
    if list(t["shape"]) != list(shape):
        raise CandidateError(f"{name}: shape {list(t['shape'])}, the layer needs {list(shape)}", "SHAPE_MISMATCH")
    if t["dtype"] not in _DTYPES:
        raise CandidateError(f"{name}: dtype {t['dtype']} (FLOAT32 or FLOAT64 expected)", "SHAPE_MISMATCH")
    width = 4 if t["dtype"] == "FLOAT32" else 8
    if len(t["data"]) != math.prod(shape) * width:
        raise CandidateError(f"{name}: {len(t['data'])} bytes for shape {list(shape)} {t['dtype']}", "TENSOR_LENGTH")
    values = torch.from_numpy(np.frombuffer(t["data"], dtype=_DTYPES[t["dtype"]]).astype(np.float64)).reshape(shape)
    if not torch.isfinite(values).all():
        raise CandidateError(f"{name} holds NaN or infinite values", "NON_FINITE")
    return values


def width(dtype):
    if dtype not in _DTYPES:
        raise CandidateError(f"dtype {dtype} (FLOAT32 or FLOAT64 expected)", "SHAPE_MISMATCH")
    return 4 if dtype == "FLOAT32" else 8


def _check_spectrum(values, name):
    if (values < 0).any() or (values[1:] > values[:-1]).any():
        raise CandidateError(f"{name} must be >= 0 and descending")


def _check_orthonormal(u, name):
    """The spec's O(n k) test: every column's norm, and the products of columns j, j+1 and j, j+k/2
    (indices mod k), each within ORTHONORMAL_TOLERANCE (Java: CandidateValidator.requireOrthonormal)."""
    k = u.shape[1]
    shift = max(1, k // 2)
    norms = torch.sqrt((u * u).sum(0))
    bad = torch.nonzero((norms - 1).abs() > ORTHONORMAL_TOLERANCE).flatten()
    if len(bad):
        j = int(bad[0])
        raise CandidateError(f"{name} is not orthonormal: column {j} has norm {float(norms[j])}", "NOT_ORTHONORMAL")
    if k > 1:
        for step in (1, shift):
            dots = (u * torch.roll(u, -step, dims=1)).sum(0)
            bad = torch.nonzero(dots.abs() > ORTHONORMAL_TOLERANCE).flatten()
            if len(bad):
                j = int(bad[0])
                raise CandidateError(f"{name} is not orthonormal: columns {j} and {(j + step) % k} have inner "
                                     f"product {float(dots[j])}", "NOT_ORTHONORMAL")


# Up to this many products λ_i μ_j (16 MiB of float64) the thresholds are searched among the sorted products;
# above it by bisection over the bits of doubles, which forms none (19 thresholds, measured: 1024 x 1024
# 0.15 s sorted against 0.39 s bisected, 2048 x 2048 0.85 s against 0.51 s: sorting dominates there).
SORTED_PRODUCTS_MAX = 1 << 21


def keep_mass_tau(lam, mu, rho):
    """select(ρ).tau() of the spec (Java KeepMassSelector, to the bit): see keep_mass_taus."""
    return keep_mass_taus(lam, mu, [rho])[0]


def keep_mass_taus(lam, mu, rhos, sorted_max=SORTED_PRODUCTS_MAX):
    """select(ρ).tau() for each ρ: the largest Π = λ_i μ_j with Σ_{Π' ≥ Π} Π' ≥ ρ (Σλ)(Σμ); ρ = 1 gives 0.

    The upper mass of a threshold is summed in Java's order (np.cumsum is sequential), so the target and
    each mass round the same as the service's. The mass only changes at products, so the answer is the
    first product (descending) whose mass reaches the target. Small layers: an approximate cumulative sum
    over the sorted products points at it and a galloping search over exact masses pins it (a handful of
    mass evaluations per ρ; a candidate's 19 thresholds took 0.24 s by bisection over the bits of doubles,
    64 evaluations each, on a 512 x 128 layer: ~3% of the transformer example's training time). Layers
    with more than sorted_max products: that bisection, O(64 · d_out · log d_in) per ρ, no product formed.
    """
    lam = np.asarray(lam, dtype=np.float64)
    mu = np.asarray(mu, dtype=np.float64)
    prefix = np.concatenate(([0.0], np.cumsum(mu)))
    total = np.cumsum(lam)[-1] * prefix[-1]

    def mass_at_least(tau):
        lo, hi = np.zeros(len(lam), dtype=np.int64), np.full(len(lam), len(mu), dtype=np.int64)
        while (lo < hi).any():  # per row: the count of leading j with λ_i μ_j >= τ (products as computed)
            mid = (lo + hi) // 2
            open_ = lo < hi
            keep = open_ & (lam * mu[np.minimum(mid, len(mu) - 1)] >= tau)
            lo = np.where(keep, mid + 1, lo)
            hi = np.where(open_ & ~keep, mid, hi)
        return np.cumsum(lam * prefix[lo])[-1]

    if lam.size * mu.size <= sorted_max:
        products = np.sort(np.outer(lam, mu), axis=None)[::-1]
        last = np.append(products[1:] != products[:-1], True)  # the last of each run of equal products
        values, approx = products[last], np.cumsum(products)[last]  # distinct products, descending
        return [0.0 if rho >= 1 else _first_reaching(values, approx, rho * total, mass_at_least) for rho in rhos]
    return [0.0 if rho >= 1 else _bisect_bits(lam[0] * mu[0], rho * total, mass_at_least) for rho in rhos]


def _first_reaching(values, approx, target, mass_at_least):
    """values[k] for the smallest k whose exact mass reaches target, 0.0 if none does; starts where the
    approximate masses say and gallops to a bracket (masses are monotone in k: sums of non-negative terms
    that only grow, rounded to nearest)."""
    n = len(values)

    def reaches(k):
        return mass_at_least(values[k]) >= target

    k0 = min(int(np.searchsorted(approx, target)), n - 1)
    step = 1
    if reaches(k0):
        hi, j = k0, k0 - 1
        while j >= 0 and reaches(j):
            hi, step = j, step * 2
            j = hi - step
        lo = max(j, -1)
    else:
        lo, j = k0, k0 + 1
        while j < n and not reaches(j):
            lo, step = j, step * 2
            j = lo + step
        hi = min(j, n)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if reaches(mid):
            hi = mid
        else:
            lo = mid
    return 0.0 if hi >= n else float(values[hi])


def _bisect_bits(top, target, mass_at_least):
    """The largest double τ in [0, top] with mass_at_least(τ) >= target, by bisection over the bit patterns
    of non-negative doubles (ordered as the doubles are); 0.0 when none above it reaches."""
    bits = np.array([0, 0], dtype=np.int64)  # lo, hi as the bit patterns of non-negative doubles
    bits[1] = np.array([top], dtype=np.float64).view(np.int64)[0] + 1
    while bits[1] - bits[0] > 1:
        mid = bits[0] + (bits[1] - bits[0]) // 2
        if mass_at_least(np.array([mid], dtype=np.int64).view(np.float64)[0]) >= target:
            bits[0] = mid
        else:
            bits[1] = mid
    return float(np.array([bits[0]], dtype=np.int64).view(np.float64)[0])


def _tau_agrees(ours, theirs, top_pair):
    return abs(ours - theirs) <= TAU_RELATIVE_TOLERANCE * max(abs(ours), abs(theirs)) + 1e-12 * top_pair


def _finite(values, what):
    if not all(math.isfinite(v) for v in values):
        raise CandidateError(f"{what} must be finite: {values}", "NON_FINITE")


def parse_candidate(record, layers, run_id=None):
    """Validates a decoded EditCandidate against the watched layers ({name: (d_in, d_out)}) and, when
    given, this run's id: the rules and order of docs/SPEC-SHARED-RULES.md (Candidate validation),
    the golden vectors of spec/candidates.json. Raises CandidateError with the spec's reason."""
    cid = record["candidate_id"]
    if not cid or len(cid) > MAX_CANDIDATE_ID_CHARS:
        raise CandidateError(f"candidate_id must be 1-{MAX_CANDIDATE_ID_CHARS} characters")
    if run_id is not None and record["run_id"] != run_id:
        raise CandidateError(f"run_id {record['run_id']!r} is not this run's {run_id!r}", "KEY_MISMATCH")
    layer = record["layer"]
    if layer not in layers:
        raise CandidateError(f"unknown layer {layer!r} (watched: {sorted(layers)})", "UNKNOWN_LAYER")
    d_in, d_out = layers[layer]
    rhos, taus = [float(r) for r in record["rhos"]], [float(t) for t in record["thresholds"]]
    if not rhos or len(rhos) > MAX_RHOS or len(rhos) != len(taus):
        raise CandidateError(f"{len(rhos)} rhos and {len(taus)} thresholds: need the same number, 1 to {MAX_RHOS}")
    for r, t in zip(rhos, taus):
        _finite([r, t], "rhos and thresholds")
        if not 0 < r <= 1 or t < 0:
            raise CandidateError(f"rho {r} must be in (0, 1] and threshold {t} >= 0")
    search = str(record.get("search", "ALL"))
    if search not in ("ALL", "BISECT"):
        raise CandidateError(f"search {search!r}: ALL or BISECT")
    tolerances = float(record.get("accuracy_tolerance", 0.01)), float(record.get("loss_tolerance", math.log(1.05)))
    _finite(tolerances, "tolerances")
    if not all(t >= 0 for t in tolerances):
        raise CandidateError(f"tolerances must be >= 0: {tolerances}")
    train = sorted({int(k) for k in record.get("train_candidates", [])})
    if any(not 0 <= k < len(rhos) for k in train):
        raise CandidateError(f"train_candidates {train} outside 0..{len(rhos) - 1}")
    peak = int(record.get("peak_tokens", 0))
    if peak < 0:
        raise CandidateError(f"peak_tokens {peak} < 0")
    k_g, k_a = _columns(record, "basis_g", d_out), _columns(record, "basis_a", d_in)
    basis_g, basis_a = _tensor(record, "basis_g", (d_out, k_g)), _tensor(record, "basis_a", (d_in, k_a))
    lam = _tensor(record, "eigenvalues_g", (d_out,))
    _check_spectrum(lam, "eigenvalues_g")
    mu = _tensor(record, "eigenvalues_a", (d_in,))
    _check_spectrum(mu, "eigenvalues_a")
    _check_orthonormal(basis_g, "basis_g")
    _check_orthonormal(basis_a, "basis_a")
    lam_np, mu_np = lam.numpy(), mu.numpy()
    top = float(lam_np[0] * mu_np[0])
    for r, t, ours in zip(rhos, taus, keep_mass_taus(lam_np, mu_np, rhos)):
        if not _tau_agrees(ours, t, top):
            raise CandidateError(f"threshold {t:.9g} for rho {r} differs from select(rho).tau() = {ours:.9g} "
                                 f"(relative tolerance {TAU_RELATIVE_TOLERANCE:.0e})", "THRESHOLD_MISMATCH")
        # v4: the columns not sent must hold no kept pair (each row's kept set is a prefix: λ, μ descending)
        if (k_g < d_out and float(lam_np[k_g] * mu_np[0]) >= ours) or \
                (k_a < d_in and float(lam_np[0] * mu_np[k_a]) >= ours):
            raise CandidateError(f"rho {r} keeps pairs beyond the {k_g} x {k_a} leading basis columns sent",
                                 "COLUMNS_MISSING")
    return Candidate(cid, layer, int(record["step"]), int(record["factor_version"]), basis_g, basis_a, lam, mu,
                     rhos, taus, search, tolerances[0], tolerances[1], train, peak)


def _columns(record, name, side):
    """Columns a basis carries: v4 sends its leading k of the layer's side, 1 <= k <= side."""
    shape = list(record[name]["shape"])
    k = shape[1] if len(shape) == 2 else -1
    if not 1 <= k <= side:
        raise CandidateError(f"{name}: shape {shape}, the layer needs {side} x k with 1 <= k <= {side}",
                             "SHAPE_MISMATCH")
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
