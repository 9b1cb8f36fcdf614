"""What the two studies over a run's refreshes share (lm_series: canaries in an LM, minilm_series:
noisy labels in a classifier): a layer's calibration as each records it, a score's exceedance
statistics, and the command line over a run's checkpoints."""
import argparse
import json
from pathlib import Path

from . import scores
from .calibrate import FINE_GRID as GRID, calibrate_layer

QUANTILES = (0.99, 1.0)


def calibration(change, worse, tolerance, slack, basis):
    """A layer's entry of a refresh. change(ρ): how the probes' measure moves under the layer's edit,
    `worse` its sign when that is a loss (+1 for a loss, -1 for an accuracy); the most aggressive grid
    ρ with worse·change(ρ) <= tolerance + slack (calibrate.calibrate_layer), every change measured on
    the way (`trace`, by grid index), the basis's concentration, and `at` for the scores at each ρ."""
    changes = {}

    def cost(rho):
        changes[rho] = change(rho)
        return worse * changes[rho]
    chosen, costs = calibrate_layer(cost, GRID, tolerance, slack)
    return {"chosen": chosen, "rho": GRID[chosen] if chosen >= 0 else 1.0,
            "trace": {str(k): changes[GRID[k]] for k in sorted(costs)}, "concentration": basis.concentration(), "at": {}}


def exceedances(train, probe, marked, over_key):
    """{q<quantile>: exceedance statistics} of the training examples' scores over the probes' at each
    of QUANTILES, with how many marked examples (canaries, flipped labels) score over the threshold."""
    out = {}
    for q in QUANTILES:
        e = scores.exceedance(train, probe, q)
        out[f"q{q}"] = {k: e[k] for k in ("count", "n", "expected", "p_value", "threshold", "ratio")}
        out[f"q{q}"][over_key] = int((train[marked] > e["threshold"]).sum())
    return out


def arguments(tolerance):
    """The options every series takes; a study adds its own."""
    p = argparse.ArgumentParser()
    p.add_argument("--run", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--kind", default="cumulative")
    p.add_argument("--tolerance", type=float, default=tolerance)
    p.add_argument("--alarm-rho", type=float, default=1.0, help="< 1: scores at this fixed rho too")
    p.add_argument("--layers", nargs="*")
    p.add_argument("--every", type=int, default=1, help="every n-th checkpoint")
    p.add_argument("--from-step", type=int, default=0)
    return p


def checkpoint_steps(a):
    """The steps of the run's checkpoints from --from-step on, every --every-th."""
    steps = (int(f.stem.split("-")[1]) for f in Path(a.run).glob("ckpt-*.pt"))
    return sorted(s for s in steps if s >= a.from_step)[::a.every]


def write(a, refreshes):
    Path(a.out).write_text(json.dumps({"run": a.run, "kind": a.kind, "tolerance": a.tolerance,
                                       "alarm_rho": a.alarm_rho, "refreshes": refreshes}, indent=1))
