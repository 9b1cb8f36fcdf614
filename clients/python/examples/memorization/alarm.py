"""One refresh of the run-level alarm, as the service computes it (issue 12): per watched layer, ρ
calibrated on the probes alone (bisection over the grid), then every recent training example's and
every probe's memorization score under that edit, and the exceedance test: how many training
examples score above every probe, against the exact beta-binomial chance level
(`scores.exceedance` with quantile 1.0 = the Java `OutlierExcess` with j = 1).

The alert rule (the service's shipped `memorization-outliers` rule): −log10 p ≥ `threshold` at
`hold` consecutive refreshes of a layer.
"""
import functools
import math
from dataclasses import dataclass

import numpy as np

from . import scores
from .calibrate import calibrate_layer

ALARM_THRESHOLD = 3.0  # −log10 p: p ≤ 1e-3
ALARM_HOLD = 1


def surprise(p_value):
    return min(300.0, -math.log10(max(p_value, 1e-300)))


@dataclass
class LayerAlarm:
    layer: str
    rho: float
    chosen: int
    probe_cost: float
    count: int
    expected: float
    p_value: float
    threshold: float
    train_scores: list
    probe_scores: list

    @property
    def surprise(self):
        return surprise(self.p_value)

    def summary(self):
        return {"layer": self.layer, "rho": self.rho, "chosen": self.chosen, "probe_cost": self.probe_cost,
                "count": self.count, "expected": self.expected, "p_value": self.p_value, "surprise": self.surprise,
                "threshold": self.threshold}


def layer_alarm(layer, grid, tolerance, probe_cost, scores_at):
    """probe_cost(rho) -> probe cost of the layer edited at rho; scores_at(rho) -> (train scores,
    probe scores) under it. None when no grid ρ keeps the probes within tolerance (no edit)."""
    k, costs = calibrate_layer(probe_cost, grid, tolerance)
    if k < 0:
        return None
    train, probes = scores_at(grid[k])
    e = scores.exceedance(train, probes, 1.0)
    return LayerAlarm(layer, grid[k], k, costs[k], e["count"], e["expected"], e["p_value"], e["threshold"],
                      list(map(float, train)), list(map(float, probes)))


def layer_alarms(layers, edited, grid, tolerance, probe_cost, scores_under, marked, over_key):
    """One refresh's alarm of every layer in `layers`, each edited alone: {layer: summary, or None
    (no edit within tolerance)}.

    edited({layer: rho}) -> the edited weights (each ρ's built once per layer); probe_cost(weights)
    -> the probes' cost under them; scores_under(weights) -> (train scores, probe scores). marked:
    bool per training example, the planted ones (canaries, flipped labels), for the record only (the
    alarm never sees it): how many score over the threshold (`over_key`) and their AUROC."""
    out = {}
    for layer in layers:
        weight = functools.lru_cache(maxsize=None)(lambda rho, layer=layer: edited({layer: rho}))
        a = layer_alarm(layer, grid, tolerance, lambda rho: probe_cost(weight(rho)),
                        lambda rho: scores_under(weight(rho)))
        if a is None:
            out[layer] = None
            continue
        entry = a.summary()
        train = np.array(a.train_scores)
        entry[over_key] = int((train[marked] > a.threshold).sum())
        entry["auroc"] = scores.auroc(train[marked], train[~marked]) if marked.any() else None
        out[layer] = entry
    return out


def remember_recent(recent, ids, step, limit):
    """Records `ids` as trained at `step` in `recent` ({id: step}, an OrderedDict, least recent
    first) and keeps the `limit` most recent distinct ones: the training examples a refresh scores."""
    for i in ids:
        recent[i] = step
        recent.move_to_end(i)
    while len(recent) > limit:
        recent.popitem(last=False)


def first_alert(series, threshold=ALARM_THRESHOLD, hold=ALARM_HOLD):
    """series: [(step, {layer: surprise or None})] in order. The step at which some layer has had
    surprise ≥ threshold at `hold` consecutive refreshes; None if never."""
    runs = {}
    for step, by_layer in series:
        for layer, s in by_layer.items():
            runs[layer] = runs.get(layer, 0) + 1 if s is not None and s >= threshold else 0
            if runs[layer] >= hold:
                return step
    return None


def alert_timing(refreshes, injection_step, alerts, n=3):
    """When the first alert came relative to the injection.

    refreshes: [{step, layers: {layer: entry or None}}] (a layer's refreshes are the steps it has an
    entry at); alerts: [{step, layer}] of the FIRING alerts (layer None: any layer's refreshes count).
    Returns {first, before_injection, within, refreshes_after}: the first alert at or after the
    injection step, whether any alert came before it, and whether the first one came no later than
    the n-th refresh (of its layer) after the injection."""
    before = [a for a in alerts if injection_step is None or a["step"] < injection_step]
    after = sorted((a for a in alerts if injection_step is not None and a["step"] >= injection_step), key=lambda a: a["step"])
    first = after[0] if after else None

    def steps_of(layer):
        return [r["step"] for r in refreshes if r["step"] >= injection_step and
                (layer is None or r["layers"].get(layer) is not None)][:n]
    window = steps_of(first["layer"]) if first else steps_of(None)
    return {"first": first["step"] if first else None, "layer": first["layer"] if first else None,
            "before_injection": [a["step"] for a in before], "within": bool(first) and bool(window) and first["step"] <= window[-1],
            "refreshes_after": window}
