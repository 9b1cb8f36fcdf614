"""Calibrating an edit of several layers from probes only (issue 12 §2).

Each layer alone: bisect a grid of ρ (most aggressive first) for the most aggressive ρ whose edit
keeps the probe cost within a budget (cost = probe loss increase for an LM, probe accuracy drop
for a classifier). Several layers: the tolerance is split equally between them, each layer is
calibrated alone within its share, then the joint edit is measured on the probes; if it costs
more than the tolerance (the layers' costs are not exactly additive), every share is scaled down
by tolerance / joint cost and the layers are calibrated again. Nothing here sees a training
example: the canaries / flipped labels cannot influence the choice.
"""
import numpy as np

# 1 - rho from 0.5 to 1e-4, 8 points per decade (30 candidates), most aggressive first
FINE_GRID = [float(1 - g) for g in np.exp(np.linspace(np.log(0.5), np.log(1e-4), 30))]


def bisect(n, within):
    """Smallest k in [0, n) with within(k), assuming within is false..false true..true; -1 if the
    mildest (n - 1) fails."""
    if not within(n - 1):
        return -1
    lo, hi = 0, n - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if within(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def calibrate_layer(cost, grid, budget, slack=1e-12):
    """(index, {index: cost}) of the most aggressive grid ρ with cost(ρ) <= budget + slack; -1 if
    none. The slack absorbs rounding in a cost that should equal the budget exactly."""
    seen = {}

    def within(k):
        if k not in seen:
            seen[k] = cost(grid[k])
        return seen[k] <= budget + slack
    return bisect(len(grid), within), seen


def remembered(cost):
    """cost({layer: rho}) measured once per distinct edit: calibrate_joint asks for a single-layer
    edit again in every round, and a study calibrating several subsets asks for it again in each."""
    seen = {}

    def at(rhos):
        key = tuple(sorted(rhos.items()))
        if key not in seen:
            seen[key] = cost(rhos)
        return seen[key]
    return at


def calibrate_joint(layers, cost, grid, tolerance, rounds=1):
    """Per-layer ρ for a joint edit of `layers` within `tolerance`, probes only.

    cost({layer: rho}) -> probe cost of that edit (one layer alone, or the joint edit), each distinct
    edit measured once (`remembered`). Round 1 gives every layer tolerance / len(layers); each
    further round rescales the shares by tolerance / joint cost (up when the layers' costs were
    sub-additive or the grid left budget unused, down when they overshot). The most aggressive round within the
    tolerance (largest joint cost) is returned: {"rhos": {layer: rho (1.0 = not edited)}, "cost":
    joint cost, "rounds": [...]}; no round within: no edit."""
    cost = remembered(cost)
    budget = tolerance / len(layers)
    history, best = [], None
    for _ in range(rounds):
        rhos = {}
        for layer in layers:
            k, _ = calibrate_layer(lambda r, layer=layer: cost({layer: r}), grid, budget)
            rhos[layer] = grid[k] if k >= 0 else 1.0
        edited = {l: r for l, r in rhos.items() if r < 1.0}
        joint = cost(edited) if edited else 0.0
        history.append({"budget": budget, "rhos": dict(rhos), "cost": joint})
        if joint <= tolerance + 1e-12 and (best is None or joint > best[1]):
            best = (rhos, joint)
        if joint <= 0:
            break
        budget *= min(4.0, tolerance / joint) * (0.98 if joint > tolerance else 1.0)
    if best is None:
        return {"rhos": {l: 1.0 for l in layers}, "cost": 0.0, "rounds": history}
    return {"rhos": best[0], "cost": best[1], "rounds": history}
