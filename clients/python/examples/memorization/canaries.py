"""The paper's LM experiment on a real transformer and real text (issue 12): TinyCausalLM on
Debian's fortunes quotes, canaries (a unique prefix + 12 random characters) mixed into some rows
of every batch from `inject_at` on, watched at every refresh by the run-level alarm, and at the
end edited by a joint edit of the MLP layers calibrated on held-out probes only.

Offline engine: the same math as the live pipeline (alarm.py, calibrate.py, kfac.py), in one
process, so full-size runs across seeds fit on two cores. `live.py` runs the same experiment
through the broker, worker, streams and service.

What is measured (`run` returns it; `report.py` writes it):
- per refresh and alarm layer: the calibrated ρ, the exceedance alarm (−log10 p), and, for the
  record only, the per-example canary AUROC of the memorization score;
- the first alert (the service's rule), in the injected run and in the clean control;
- at the end, for the joint calibrated edit: strict recitation and held-out perplexity before
  and after, and detection AUROCs (per example: top-k mean log loss ratio against the loss
  baseline; per secret token: log ratio, log ratio + confidence, and the loss baseline).
"""
import collections
import json
import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from . import scores
from .alarm import ALARM_HOLD, ALARM_THRESHOLD, alert_timing, first_alert, layer_alarms, remember_recent
from .calibrate import FINE_GRID, calibrate_joint
from .kfac import Basis, Capture, Factors, edited_weight, sampled_fisher_pass, swapped
from .lm_eval import LmEval, recitation, secret_positions
from .lm_train import MLP_LAYERS, Batches, LmRun, corpus, lm_logits, make_model

TOLERANCE = math.log(1.05)


@dataclass
class CanariesConfig(LmRun):
    factor_kind: str = "cumulative"   # of the sampled-label Fisher passes
    recent: int = 128                 # distinct recent training examples the alarm scores
    probes: int = 128                 # held-out probe windows (calibration and the alarm's reference)
    eval_windows: int = 512           # other held-out windows: perplexity only
    peak_k: int = 8
    tolerance: float = TOLERANCE      # nats of probe loss (+5% perplexity)
    alarm_layers: list = field(default_factory=lambda: ["blocks.1.mlp.fc", "blocks.1.mlp.proj"])
    edit_layers: list = field(default_factory=lambda: list(MLP_LAYERS))
    max_windows: int = 0

    # lm_train.Batches and make_model read these
    @property
    def layers(self):
        return sorted(set(self.alarm_layers) | set(self.edit_layers))


PRESETS = {
    "full": {},
    # CI: a smaller model and corpus, canaries from step 120 of 320 (measured to memorize them)
    "ci": {"steps": 320, "inject_at": 120, "batch": 16, "canary_rows": 3, "canaries": 8, "d_model": 64, "d_mlp": 256,
           "seq_len": 48, "lr": 3e-3, "refresh_every": 40, "recent": 64, "probes": 96, "eval_windows": 256,
           "max_windows": 4000},
}


def config(size="full", **overrides):
    return CanariesConfig(**{**PRESETS[size], **overrides})


class Canaries:
    """Data, model and factors of one run; evaluation helpers shared by the refreshes and the end."""

    def __init__(self, c, log=print):
        self.c, self.log = c, log
        self.split, self.canaries = corpus(c)
        self.probes = self.split.held_out[:c.probes]
        self.evalset = self.split.held_out[c.probes:c.probes + c.eval_windows]
        self.model = make_model(c)
        self.ev = LmEval(self.model, c.seq_len)
        self.modules = dict(self.model.named_modules())
        self.factors = {n: Factors(self.modules[n].in_features, self.modules[n].out_features, c.ema_decay)
                        for n in c.layers}
        self.recent = collections.OrderedDict()

    def texts(self, ids):
        return [self.canaries[int(i[1:])].text if i[0] == "c" else self.split.train[int(i[1:])] for i in ids]

    def bases(self, layers):
        return {n: Basis.of(*self.factors[n].get(self.c.factor_kind)) for n in layers}

    def edited(self, bases, rhos):
        return {l: edited_weight(self.modules[l].weight, bases[l], r) for l, r in rhos.items() if r < 1.0}

    def probe_cost(self, weights, loss_now):
        """Probe loss increase (nats) under the edited weights, over the unedited `loss_now`."""
        with swapped(self.model, weights):
            return self.ev.stats(self.probes).mean_loss() - loss_now


def train(c, log=print, on_refresh=None):
    """Trains; calls on_refresh(run, step) every refresh_every steps; returns the Canaries run."""
    run = Canaries(c, log)
    opt = torch.optim.Adam(run.model.parameters(), lr=c.lr)
    batches = Batches(c, run.split.train, run.canaries)
    capture = Capture(run.model, c.layers)
    capture.enabled = False
    generator = torch.Generator().manual_seed(c.seed + 1000)
    started = time.time()
    for step in range(c.steps):
        ids, batch = batches.at(step)
        run.model.train()
        if step % c.fisher_every == 0:
            capture.enabled = True
            sampled_fisher_pass(run.model, capture, run.factors, lm_logits(batch), batch["attention_mask"] == 1, generator)
            capture.enabled = False
        loss = run.model(**batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        remember_recent(run.recent, ids, step, c.recent)
        if (step + 1) % c.refresh_every == 0 and on_refresh is not None:
            on_refresh(run, step + 1)
            log(f"step {step + 1} loss {float(loss):.3f} {time.time() - started:.0f}s")
    capture.close()
    return run


def refresh(run, step):
    """The alarm at this refresh: per alarm layer, calibrated ρ and the exceedance of the recent
    training examples' memorization scores over the probes'."""
    c = run.c
    ids = list(run.recent)
    texts = run.texts(ids)
    canary = np.array([i[0] == "c" for i in ids])
    now = {"probe": run.ev.stats(run.probes), "recent": run.ev.stats(texts)}
    base = now["probe"].mean_loss()
    bases = run.bases(c.alarm_layers)

    def scores_under(weights):
        with swapped(run.model, weights):
            ed = {k: run.ev.stats(v) for k, v in (("probe", run.probes), ("recent", texts))}
        return tuple(scores.top_k_mean(scores.token_log_ratio(now[k].losses, ed[k].losses), now[k].valid, c.peak_k).numpy()
                     for k in ("recent", "probe"))
    layers = layer_alarms(c.alarm_layers, lambda rhos: run.edited(bases, rhos), FINE_GRID, c.tolerance,
                          lambda weights: run.probe_cost(weights, base), scores_under, canary, "canaries_over")
    return {"step": step, "canaries_recent": int(canary.sum()), "recent": len(ids), "layers": layers}


def final_edit(run):
    """The joint edit of edit_layers calibrated on probes only, and what it does."""
    c = run.c
    bases = run.bases(c.edit_layers)
    probe_now = run.ev.stats(run.probes)
    cal = calibrate_joint(c.edit_layers, lambda rhos: run.probe_cost(run.edited(bases, rhos), probe_now.mean_loss()),
                          FINE_GRID, c.tolerance)
    weights = run.edited(bases, cal["rhos"])
    ids = list(run.recent)
    texts = run.texts(ids)
    now = {"eval": run.ev.stats(run.evalset), "canary": run.ev.stats([k.text for k in run.canaries]),
           "recent": run.ev.stats(texts), "probe": probe_now}
    with swapped(run.model, weights):
        ed = {"eval": run.ev.stats(run.evalset), "canary": run.ev.stats([k.text for k in run.canaries]),
              "recent": run.ev.stats(texts), "probe": run.ev.stats(run.probes)}
    rec_before = recitation(now["canary"], run.canaries, c.seq_len)
    rec_after = recitation(ed["canary"], run.canaries, c.seq_len)
    out = {"rhos": cal["rhos"], "probe_cost": cal["cost"], "calibration_rounds": len(cal["rounds"]),
           "recitation_before": float(np.mean(rec_before)), "recitation_after": float(np.mean(rec_after)),
           "perplexity_before": math.exp(now["eval"].mean_loss()), "perplexity_after": math.exp(ed["eval"].mean_loss()),
           "probe_perplexity_before": math.exp(probe_now.mean_loss()),
           "probe_perplexity_after": math.exp(ed["probe"].mean_loss())}
    out["perplexity_ratio"] = out["perplexity_after"] / out["perplexity_before"]
    out["before_after"] = {"strict recitation": (out["recitation_before"], out["recitation_after"]),
                           "held-out perplexity / 10": (out["perplexity_before"] / 10, out["perplexity_after"] / 10)}
    out["detection"] = detection(run, ids, now["recent"], ed["recent"], now["probe"], ed["probe"])
    return out


def detection(run, ids, now, edited, probe_now, probe_edited):
    """AUROCs of canaries among the recent training examples, per example and per secret token."""
    c = run.c
    canary = np.array([i[0] == "c" for i in ids])
    if not canary.any():
        return None
    ratio = scores.token_log_ratio(now.losses, edited.losses)
    per_example = scores.top_k_mean(ratio, now.valid, c.peak_k).numpy()
    loss_score = -scores.mean_loss(now.losses, now.valid).numpy()
    secret = torch.zeros_like(now.valid)
    for row, sid in enumerate(ids):
        if sid[0] == "c":
            secret[row, secret_positions(run.canaries[int(sid[1:])], c.seq_len)] = True
    clean = torch.tensor(~canary)[:, None] & now.valid
    per_token = {"log_ratio": ratio, "log_ratio_confidence": scores.token_memorization(now.losses, edited.losses),
                 "loss": -now.losses, "increase": scores.token_increase(now.losses, edited.losses)}
    roc = {"example_score": scores.roc_curve(per_example[canary], per_example[~canary]),
           "example_loss": scores.roc_curve(loss_score[canary], loss_score[~canary]),
           "token_score": scores.roc_curve(per_token["log_ratio_confidence"][secret].numpy(),
                                           per_token["log_ratio_confidence"][clean].numpy()),
           "token_loss": scores.roc_curve(per_token["loss"][secret].numpy(), per_token["loss"][clean].numpy())}
    probe_scores = scores.top_k_mean(scores.token_log_ratio(probe_now.losses, probe_edited.losses), probe_now.valid,
                                     c.peak_k).numpy()
    return {"canaries": int(canary.sum()), "clean": int((~canary).sum()),
            "auroc_example": scores.auroc(per_example[canary], per_example[~canary]),
            "auroc_example_loss": scores.auroc(loss_score[canary], loss_score[~canary]),
            "auroc_token": {k: scores.auroc(v[secret].numpy(), v[clean].numpy()) for k, v in per_token.items()},
            "secret_tokens": int(secret.sum()), "clean_tokens": int(clean.sum()),
            "exceedance": {k: v for k, v in scores.exceedance(per_example, probe_scores, 1.0).items()},
            "roc": {k: [list(map(float, x)) for x in v] for k, v in roc.items()},
            "example_scores": {"canary": per_example[canary].tolist(), "clean": per_example[~canary].tolist(),
                               "probe": probe_scores.tolist()}}


def run_one(c, log=print):
    refreshes = []
    run = train(c, log, on_refresh=lambda r, step: refreshes.append(refresh(r, step)))
    series = [(r["step"], {l: (e["surprise"] if e else None) for l, e in r["layers"].items()}) for r in refreshes]
    return {"config": asdict(c), "refreshes": refreshes, "injection_step": c.inject_at if c.inject_at >= 0 else None,
            "first_alert": first_alert(series, ALARM_THRESHOLD, ALARM_HOLD),
            "final": final_edit(run)}


def experiment(size="full", seed=1, log=print, **overrides):
    """The injected run and its clean control (same seed, same length), and the targets."""
    injected = run_one(config(size, seed=seed, **overrides), log)
    clean = run_one(config(size, seed=seed, **{**overrides, "inject_at": -1}), log)
    return {"experiment": "transformer-canaries", "size": size, "seed": seed, "injected": injected, "clean": clean,
            "targets": targets(injected, clean)}


def alerts_of(result):
    """The FIRING alerts of a result: the live pipeline's (any rule, with their layer), else the
    offline engine's first alert (any layer)."""
    if "alerts" in result:
        return [a for a in result["alerts"] if a["status"] == "FIRING"]
    return [] if result["first_alert"] is None else [{"step": result["first_alert"], "layer": None}]


def alarm_targets(injected, clean):
    timing = alert_timing(injected["refreshes"], injected["injection_step"], alerts_of(injected))
    control = alerts_of(clean)
    return {
        "alert_within_3_refreshes": {"value": timing["first"], "pass": timing["within"],
                                     "refreshes_after_injection": timing["refreshes_after"], "layer": timing["layer"],
                                     "injection_step": injected["injection_step"]},
        "no_alert_before_injection": {"value": timing["before_injection"], "pass": not timing["before_injection"]},
        "no_alert_in_clean_control": {"value": sorted({a["step"] for a in control}), "pass": not control},
    }


def targets(injected, clean):
    f = injected["final"]
    if "error" in f:
        return {**alarm_targets(injected, clean), "edit": {"value": f["error"], "pass": False}}
    d = f["detection"]
    return {
        **alarm_targets(injected, clean),
        "recitation_before_at_least_0.9": {"value": f["recitation_before"], "pass": f["recitation_before"] >= 0.9},
        "recitation_after_at_most_0.1": {"value": f["recitation_after"], "pass": f["recitation_after"] <= 0.1},
        "perplexity_at_most_plus_5pct": {"value": f["perplexity_ratio"], "pass": f["perplexity_ratio"] <= 1.05},
        "auroc_example_at_least_0.95": {"value": d["auroc_example"], "pass": d["auroc_example"] >= 0.95},
        "auroc_example_not_below_loss": {"value": [d["auroc_example"], d["auroc_example_loss"]],
                                         "pass": d["auroc_example"] >= d["auroc_example_loss"]},
        "auroc_token_at_least_0.95": {"value": d["auroc_token"]["log_ratio_confidence"],
                                      "pass": d["auroc_token"]["log_ratio_confidence"] >= 0.95},
        "auroc_token_above_loss": {"value": [d["auroc_token"]["log_ratio_confidence"], d["auroc_token"]["loss"]],
                                   "pass": d["auroc_token"]["log_ratio_confidence"] > d["auroc_token"]["loss"]},
    }


if __name__ == "__main__":
    import sys
    res = experiment(sys.argv[1] if len(sys.argv) > 1 else "ci", int(sys.argv[2]) if len(sys.argv) > 2 else 1)
    print(json.dumps(res["targets"], indent=1))
