"""One ProbeResult: forward passes under the current weight and the candidate edits it evaluates.

SERVICE-CONTRACT §1 with EditCandidate v3 / ProbeResult v2: per example the loss (mean over its
non-ignored targets), `tokens`, the accuracy (share of targets predicted correctly; -1 when not
measured), the v1 correct flag (accuracy == 1), and, when `peak_tokens` > 0, the mean of its
`peak_tokens` largest per-token loss increases under each evaluated edit.

search ALL evaluates every candidate on every example. Under BISECT the probe score (token-weighted
accuracy, or loss when accuracy is not measured or is 0 now) is bisected over the candidates,
most aggressive first, for the smallest index within tolerance of now, assuming the monotone
curve the service assumes; probes carry every index evaluated on the way plus `train_candidates`,
training examples the index found (`chosen`, -1 when the mildest fails) plus `train_candidates`.
Candidates with equal masks (equal kept counts: the thresholds are nested) share one pass, and a
mask keeping every pair is the unedited layer: its losses are loss_now exactly.
"""
import math
import time

import numpy as np
import torch

from .batches import Stats
from .candidates import coordinates, edit, evaluation_mode
from .hooks import is_transposed

FLOAT32_MAX = float(np.finfo(np.float32).max)


def weighted(values, tokens):
    """Σ value·tokens / Σ tokens (the contract's token-weighted probe mean)."""
    total = float(tokens.sum())
    return float((values * tokens.to(values.dtype)).sum()) / total if total > 0 else 0.0


PEAK_FLOOR = 1e-3  # nats: c of the peak statistic (SERVICE-CONTRACT §1)


def peaks(now, edited, k):
    """Per example: mean of its k largest per-token log loss ratios log((ℓ_edited + c) / (ℓ_now + c)),
    c = PEAK_FLOOR (all its tokens when fewer). A memorized token's loss is near 0 and the edit
    multiplies it while adding little in absolute terms; the ratio sees that (issue 12's study:
    per-example canary AUROC 1.0 against 0.05-0.81 for the absolute increase at calibrated edits)."""
    ratio = (torch.log(edited.token_losses.double() + PEAK_FLOOR) - torch.log(now.token_losses.double() + PEAK_FLOOR))
    increase = ratio.masked_fill(~now.valid, -math.inf)
    top = torch.sort(increase, dim=1, descending=True).values[:, :k]
    counts = now.valid.sum(dim=1).clamp(max=k)
    ranks = torch.arange(top.shape[1]).expand_as(top)
    summed = torch.where(ranks < counts[:, None], top, torch.zeros_like(top)).sum(dim=1)
    return summed / counts.clamp(min=1)


class Mode:
    """How the probe score is read: ACCURACY when every probe has accuracy, exactly one target (a
    classifier) and the weighted accuracy now is > 0 (higher is better), else LOSS (lower is
    better: for a sequence model the token-weighted loss is log perplexity); the contract's rule."""

    def __init__(self, now, accuracy_tolerance, loss_tolerance):
        self.accuracy = (now.accuracy is not None and bool((now.tokens == 1).all())
                         and weighted(now.accuracy, now.tokens) > 0)
        self.tolerance = accuracy_tolerance if self.accuracy else loss_tolerance
        self.baseline = self.score(now)

    def score(self, stats):
        return weighted(stats.accuracy if self.accuracy else stats.loss, stats.tokens)

    def within(self, stats):
        """The service's rule: a worsening of at most the tolerance (+1e-9 relative slack)."""
        score = self.score(stats)
        worse = self.baseline - score if self.accuracy else score - self.baseline
        return worse <= self.tolerance + 1e-9 * max(1.0, abs(self.baseline))


class Declined(Exception):
    """The answer would not fit the answer-time budget: the reason goes into the ProbeResult."""


class Postponed(Exception):
    """The answer does not fit the budget now but will in time: the candidate waits (estimate: its cost)."""

    def __init__(self, estimate):
        super().__init__(f"postponed: about {estimate:.2f} s")
        self.estimate = estimate


def remaining_passes(candidate, distinct_masks):
    """(probe passes, training passes) an answer still needs after the unedited one, at most."""
    n = len(candidate.rhos)
    if candidate.search == "ALL":
        return distinct_masks, distinct_masks
    extra = len(candidate.train_candidates)
    return math.ceil(math.log2(n + 1)) + extra, 1 + extra


class Evaluation:
    """Forward passes of one candidate over the probe and training batches, cached per mask.

    `after_now(seconds, estimate)`, when given, is called once the unedited passes are done with
    their seconds and an estimate of the seconds the rest will take; it may raise Declined."""

    def __init__(self, model, module, measure, candidate, probe_batches, train_batches, replay=None, after_now=None):
        self.model, self.module, self.measure, self.candidate = model, module, measure, candidate
        self.sets = {"probe": probe_batches, "train": train_batches}
        self.replay = replay
        self.after_now = after_now
        self.passes = 0
        self.now_seconds = 0.0
        self._by_kept = {}

    def _run(self, which, edited):
        parts = []
        for i, (_, x, y) in enumerate(self.sets[which]):
            index = (which, i)

            def run():
                return self.measure(self.model, x, y).detached_cpu()
            if self.replay is None:
                parts.append(run())
            elif edited:
                parts.append(self.replay.replay(index, run))
            else:
                parts.append(self.replay.record(index, run))
            self.passes += 1
        return Stats.cat(parts)

    def run(self):
        """Runs the passes: returns (chosen, {"probe"|"train": {candidate index: Stats}}), also kept in
        self.last; self.now holds the unedited Stats of each set, self.mode the probe score's rule."""
        c = self.candidate
        param = self.module.weight
        original = param.data
        transposed = is_transposed(self.module)
        with torch.no_grad(), evaluation_mode(self.model):
            weight = original.to(torch.float64)
            weight = weight.t() if transposed else weight
            ug, ua = c.basis_g.to(original.device), c.basis_a.to(original.device)
            curvature = torch.outer(c.eigenvalues_g, c.eigenvalues_a).to(original.device)
            coords = coordinates(weight, ug, ua)
            seconds = {}
            self.now = {}
            for which in ("probe", "train"):
                started = time.perf_counter()
                self.now[which] = self._run(which, False)
                seconds[which] = time.perf_counter() - started
            self.now_seconds = seconds["probe"] + seconds["train"]
            self.mode = Mode(self.now["probe"], c.accuracy_tolerance, c.loss_tolerance)
            keeps = [curvature >= tau for tau in c.thresholds]
            kept = [int(k.sum()) for k in keeps]
            if self.after_now is not None:
                distinct = len({k for k in kept if k != keeps[0].numel()})
                probe_passes, train_passes = remaining_passes(c, distinct)
                self.after_now(self.now_seconds, probe_passes * seconds["probe"] + train_passes * seconds["train"])
            self._by_kept = {}

            def at(k, which):
                key = (kept[k], which)
                if key not in self._by_kept:
                    if kept[k] == keeps[k].numel():
                        self._by_kept[key] = self.now[which]
                    else:
                        w = edit(weight, ug, ua, keeps[k], coords)
                        param.data = (w.t() if transposed else w).to(original.dtype).contiguous()
                        try:
                            self._by_kept[key] = self._run(which, True)
                        finally:
                            param.data = original
                return self._by_kept[key]
            try:
                n = len(c.rhos)
                if c.search == "ALL":
                    chosen = -1
                    evaluated = {which: {k: at(k, which) for k in range(n)} for which in ("probe", "train")}
                else:
                    probes, chosen = self._bisect(n, lambda k: at(k, "probe"))
                    for k in c.train_candidates:
                        probes[k] = at(k, "probe")
                    train_idx = sorted(set(c.train_candidates) | ({chosen} if chosen >= 0 else set()))
                    # never an empty list (it would read as "every candidate", v1): the mildest then
                    train_idx = train_idx or [n - 1]
                    evaluated = {"probe": probes, "train": {k: at(k, "train") for k in train_idx}}
            finally:
                param.data = original
        self.last = (chosen, evaluated)
        return self.last

    def _bisect(self, n, probe_at):
        """Smallest k with within(k), assuming within is false ... false true ... true; -1 if none
        (then the mildest, n - 1, was evaluated and failed). ceil(log2(n + 1)) evaluations: 5 of
        the service's 19. Returns ({k: probe Stats} of every k evaluated, chosen). When k > 0,
        k - 1 was evaluated and failed (the service checks that)."""
        seen = {}
        lo, hi = 0, n  # hi = n: "none within tolerance" until a candidate is found within
        while lo < hi:
            mid = (lo + hi) // 2
            seen[mid] = probe_at(mid)
            if self.mode.within(seen[mid]):
                hi = mid
            else:
                lo = mid + 1
        return seen, (hi if hi < n else -1)


class Answer:
    """Builds the ProbeResult record of an Evaluation; counts non-finite values it bounds."""

    def __init__(self):
        self.nonfinite = 0
        self.empty = 0  # examples left out: no non-ignored target

    def finite(self, value):
        value = float(value)
        if math.isfinite(value) and abs(value) <= FLOAT32_MAX:
            return value
        self.nonfinite += 1
        return -FLOAT32_MAX if value < 0 else FLOAT32_MAX  # NaN and +inf: as bad as a loss gets

    def examples(self, ids, probe, now, evaluated, peak_tokens, listed):
        """ExampleLosses of one set: ids in order, `evaluated` {candidate index: Stats}."""
        order = sorted(evaluated)
        measured = now.accuracy is not None and all(evaluated[k].accuracy is not None for k in order)
        peak = {k: peaks(now, evaluated[k], peak_tokens) for k in order} if peak_tokens > 0 else {}
        out = []
        for i, sid in enumerate(ids):
            if int(now.tokens[i]) < 1:
                self.empty += 1
                continue  # no target to measure (every label ignored): nothing to say about it
            acc_now = float(now.accuracy[i]) if measured else -1.0
            edited_acc = [float(evaluated[k].accuracy[i]) for k in order] if measured else []
            out.append({
                "sample_id": sid, "probe": probe, "loss_now": self.finite(now.loss[i]),
                "correct_now": measured and acc_now == 1.0,
                "loss_edited": [self.finite(evaluated[k].loss[i]) for k in order],
                "correct_edited": [a == 1.0 for a in edited_acc],
                "candidates": order if listed else [], "tokens": int(now.tokens[i]),
                "accuracy_now": acc_now, "accuracy_edited": edited_acc,
                "peak_edited": [self.finite(peak[k][i]) for k in order] if peak else []})
        return out


def answer_record(evaluation, run_id, step, probe_ids, train_ids):
    """The whole ProbeResult of an evaluated candidate (evaluation.run() already called)."""
    c = evaluation.candidate
    chosen, evaluated = evaluation.last
    builder = Answer()
    listed = c.search != "ALL"
    probes = builder.examples(probe_ids, True, evaluation.now["probe"], evaluated["probe"], c.peak_tokens, listed)
    train = builder.examples(train_ids, False, evaluation.now["train"], evaluated["train"], c.peak_tokens, listed)
    if not probes or not train:
        raise ValueError(f"no {'probe' if not probes else 'training'} example has a target to measure "
                         f"({builder.empty} examples without one)")
    examples = probes + train
    return {"run_id": run_id, "candidate_id": c.candidate_id, "layer": c.layer, "step": int(step),
            "rhos": list(c.rhos), "examples": examples, "timestamp_ms": int(time.time() * 1000),
            "search": c.search, "chosen": int(chosen), "peak_tokens": int(c.peak_tokens), "declined": ""}, builder.nonfinite
