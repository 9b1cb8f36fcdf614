"""K-FAC for the offline studies (DESIGN §2): per-token captures of watched nn.Linear layers, factors
A = mean a aᵀ and G = mean g gᵀ (cumulative, or an exponential moving average), eigenbases, the
keep-mass threshold τ(ρ) and the edit W' = U_G ((U_Gᵀ W U_A) ∘ [λ_i μ_j ≥ τ]) U_Aᵀ.

This is the same math the Java curvature module and the Python client's answerer implement,
written again in torch (float64) so the studies run without a broker; tests check it against
numpy/scipy.
"""
import contextlib
import functools
from dataclasses import dataclass

import torch


class Capture:
    """Forward hooks on the named Linear modules: the layer input a and, after backward, the
    output-gradient g of every token position the `keep` mask marks (B x T bool), as float64 (every
    row of a layer that sees one row per example, such as a head on pooled features)."""

    def __init__(self, model, names):
        modules = dict(model.named_modules())
        missing = [n for n in names if n not in modules]
        if missing:
            raise KeyError(f"no such modules: {missing}")
        self.names = list(names)
        self._inputs, self._outputs, self._handles = {}, {}, []
        self.enabled = True
        for name in self.names:
            self._handles.append(modules[name].register_forward_hook(self._hook(name)))

    def _hook(self, name):
        def hook(module, inputs, output):
            if not (self.enabled and torch.is_grad_enabled()):
                return
            self._inputs[name] = inputs[0].detach()
            output.retain_grad()
            self._outputs[name] = output
        return hook

    def take(self, keep):
        """{name: (a, g)} rows of the kept positions, after loss.backward(); clears the capture."""
        out = {}
        for name in self.names:
            a, s = self._inputs.pop(name), self._outputs.pop(name)
            rows = keep.reshape(-1)
            if a.reshape(-1, a.shape[-1]).shape[0] != rows.numel():  # a per-example layer (a head on pooled features)
                rows = torch.ones(a.reshape(-1, a.shape[-1]).shape[0], dtype=torch.bool)
            out[name] = (a.reshape(-1, a.shape[-1])[rows].double(), s.grad.reshape(-1, s.shape[-1])[rows].double())
        return out

    def close(self):
        for h in self._handles:
            h.remove()
        self._inputs.clear()
        self._outputs.clear()


class Factors:
    """One layer's factors: cumulative sums with a token count, and an EMA of per-pass means."""

    def __init__(self, d_in, d_out, decay=0.95):
        self.sum_a = torch.zeros(d_in, d_in, dtype=torch.float64)
        self.sum_g = torch.zeros(d_out, d_out, dtype=torch.float64)
        self.count = 0
        self.decay = decay
        self.ema_a = self.ema_g = None

    def add(self, a, g):
        self.sum_a += a.T @ a
        self.sum_g += g.T @ g
        self.count += a.shape[0]
        batch_a, batch_g = a.T @ a / a.shape[0], g.T @ g / g.shape[0]
        if self.ema_a is None:
            self.ema_a, self.ema_g = batch_a, batch_g
        else:
            self.ema_a = self.decay * self.ema_a + (1 - self.decay) * batch_a
            self.ema_g = self.decay * self.ema_g + (1 - self.decay) * batch_g

    def get(self, kind="cumulative"):
        if kind == "ema":
            return self.ema_a.clone(), self.ema_g.clone()
        return self.sum_a / self.count, self.sum_g / self.count

    def state(self):
        return {"sum_a": self.sum_a.clone(), "sum_g": self.sum_g.clone(), "count": self.count,
                "ema_a": self.ema_a.clone(), "ema_g": self.ema_g.clone(), "decay": self.decay}

    @classmethod
    def from_state(cls, s):
        f = cls(s["sum_a"].shape[0], s["sum_g"].shape[0], s["decay"])
        f.sum_a, f.sum_g, f.count, f.ema_a, f.ema_g = s["sum_a"], s["sum_g"], s["count"], s["ema_a"], s["ema_g"]
        return f


def sampled_fisher_pass(model, capture, factors, logits_fn, keep, generator):
    """One true-Fisher pass: labels sampled from the model's own softmax at every position of
    `logits_fn(model)` -> (logits N x C, target mask N), the summed cross-entropy backpropagated
    (per-token scale: g_t = ∂ℓ_t/∂s_t), the kept positions added to `factors`. Parameter
    gradients are left zeroed."""
    model.zero_grad(set_to_none=True)
    logits, mask = logits_fn(model)
    with torch.no_grad():
        probs = torch.softmax(logits.float(), dim=-1)
        sampled = torch.multinomial(probs, 1, generator=generator).squeeze(1)
    loss = torch.nn.functional.cross_entropy(logits[mask], sampled[mask], reduction="sum")
    loss.backward()
    for name, (a, g) in capture.take(keep).items():
        factors[name].add(a, g)
    model.zero_grad(set_to_none=True)


@dataclass
class Basis:
    """Eigenbases and spectra of one layer's factors, spectra descending, clamped at 0."""
    u_g: torch.Tensor
    lam: torch.Tensor
    u_a: torch.Tensor
    mu: torch.Tensor

    @classmethod
    def of(cls, a, g):
        mu, u_a = torch.linalg.eigh(a.double())
        lam, u_g = torch.linalg.eigh(g.double())
        return cls(u_g.flip(1), lam.flip(0).clamp(min=0), u_a.flip(1), mu.flip(0).clamp(min=0))

    def curvature(self):
        return torch.outer(self.lam, self.mu)

    def threshold(self, rho):
        """τ such that {Π_ij ≥ τ} is the smallest top-Π set holding ρ of the total mass (the pair
        crossing the threshold included)."""
        values = self.curvature().reshape(-1).sort(descending=True).values
        cumulative = values.cumsum(0)
        index = int(torch.searchsorted(cumulative, rho * cumulative[-1]))
        return float(values[min(index, values.numel() - 1)])

    def mask(self, rho):
        return self.curvature() >= self.threshold(rho)

    def concentration(self):
        """How many eigenvalues of G and of A hold 50/90/99% of their mass."""
        def counts(v):
            c = v.cumsum(0) / v.sum()
            return [int(torch.searchsorted(c, q)) + 1 for q in (0.5, 0.9, 0.99)]
        return {"g": counts(self.lam), "a": counts(self.mu)}


def edited_weight(weight, basis, rho):
    """W' = U_G ((U_Gᵀ W U_A) ∘ M_ρ) U_Aᵀ in float64, returned in the weight's dtype."""
    w = weight.detach().double()
    coords = basis.u_g.T @ w @ basis.u_a
    return (basis.u_g @ (coords * basis.mask(rho)) @ basis.u_a.T).to(weight.dtype)


def edits(weight, basis):
    """ρ -> edited_weight(weight, basis, ρ), each ρ computed once: a calibration and the scores
    after it ask for the same ρ again."""
    return functools.lru_cache(maxsize=None)(lambda rho: edited_weight(weight, basis, rho))


@contextlib.contextmanager
def swapped(model, weights):
    """Temporarily replaces the named Linear modules' weights ({name: W'}); restores them after."""
    modules = dict(model.named_modules())
    originals = {}
    try:
        for name, w in weights.items():
            originals[name] = modules[name].weight.data
            modules[name].weight.data = w
        yield model
    finally:
        for name, w in originals.items():
            modules[name].weight.data = w
