"""The canaries study over refreshes: at every checkpoint of a run (lm_train), per watched layer,
the calibrated ρ (probes only: token-weighted probe loss within `tolerance` nats, bisected over
the grid), the per-example scores of the recent training examples and of the probes at that ρ and
at a fixed alarm ρ, the exceedance alarm statistics and the canary AUROCs (for the record: the
alarm never sees which examples are canaries).

  /usr/bin/python3 -m memorization.lm_series --run /tmp/lm-inj --out series.json
"""
import numpy as np
import torch

from . import scores, series
from .kfac import edits, swapped
from .lm_eval import LmEval, secret_positions
from .lm_study import Study

SCORE_KS = (8, 16)


def per_example(now, edited):
    out = {"mean": scores.mean_increase(now.losses, edited.losses, now.valid).numpy(),
           "loss": -scores.mean_loss(now.losses, now.valid).numpy()}
    for name, fn in (("inc", scores.token_increase), ("lr", scores.token_log_ratio), ("lra", scores.token_memorization)):
        per_token = fn(now.losses, edited.losses)
        for k in SCORE_KS:
            out[f"{name}{k}"] = scores.top_k_mean(per_token, now.valid, k).numpy()
    return out


def token_aurocs(study, ids, now, edited):
    """Per-token AUROC, secret characters of the canary rows vs every target of the clean rows."""
    secret = torch.zeros_like(now.valid)
    for row, sid in enumerate(ids):
        if sid[0] == "c":
            secret[row, secret_positions(study.canaries[int(sid[1:])], study.c.seq_len)] = True
    clean = torch.tensor([i[0] != "c" for i in ids])[:, None] & now.valid
    per_token = {"loss": -now.losses, "inc": scores.token_increase(now.losses, edited.losses),
                 "lr": scores.token_log_ratio(now.losses, edited.losses),
                 "lra": scores.token_memorization(now.losses, edited.losses)}
    return {k: scores.auroc(v[secret].numpy(), v[clean].numpy()) for k, v in per_token.items()}


def refresh(study, step, kind, tolerance, alarm_rho, layers, recent_n=None):
    model, factors, recent = study.load(step)
    recent = recent[-recent_n:] if recent_n else recent
    ev = LmEval(model, study.c.seq_len)
    texts = study.texts(recent)
    canary = np.array([i[0] == "c" for i in recent])
    now = {"probe": ev.stats(study.probes), "recent": ev.stats(texts)}
    base_loss = now["probe"].mean_loss()
    bases = study.bases(factors, kind)
    modules = dict(model.named_modules())
    out = {"step": step, "canaries_recent": int(canary.sum()), "probe_loss": base_loss, "layers": {}}
    for layer in layers:
        weight = edits(modules[layer].weight, bases[layer])

        def probe_dloss(rho):
            with swapped(model, {layer: weight(rho)}):
                return ev.stats(study.probes).mean_loss() - base_loss
        entry = series.calibration(probe_dloss, 1.0, tolerance, 0.0, bases[layer])
        for label, rho in (("calibrated", entry["rho"]),) + ((("alarm", alarm_rho),) if alarm_rho < 1 else ()):
            if rho >= 1.0:
                continue
            with swapped(model, {layer: weight(rho)}):
                ed = {"probe": ev.stats(study.probes), "recent": ev.stats(texts)}
            tr, pr = per_example(now["recent"], ed["recent"]), per_example(now["probe"], ed["probe"])
            res = {"rho": rho, "probe_dloss": ed["probe"].mean_loss() - base_loss,
                   "token_auroc": token_aurocs(study, recent, now["recent"], ed["recent"]) if canary.any() else None}
            for name in tr:
                r = {"auroc": scores.auroc(tr[name][canary], tr[name][~canary]) if canary.any() else None,
                     "train_mean": float(tr[name].mean()), "probe_mean": float(pr[name].mean())}
                if name != "loss":
                    r.update(series.exceedances(tr[name], pr[name], canary, "canaries_over"))
                res[name] = r
            entry["at"][label] = res
        out["layers"][layer] = entry
    return out


def main(argv=None):
    p = series.arguments(tolerance=float(np.log(1.05)))
    p.add_argument("--probes", type=int, default=256)
    p.add_argument("--recent", type=int, default=0, help="the n most recent distinct training examples (0: all kept)")
    a = p.parse_args(argv)
    study = Study(a.run, probes=a.probes)
    steps = series.checkpoint_steps(a)
    results = []
    for step in steps:
        results.append(refresh(study, step, a.kind, a.tolerance, a.alarm_rho, a.layers or study.c.layers, a.recent))
        r = results[-1]
        brief = {l[7:]: (round(e["rho"], 4), {lab: (x["lra8"]["auroc"], x["lra8"]["q1.0"]["count"], x["lra8"]["q1.0"]["canaries_over"],
                                                   round(x["lra8"]["q1.0"]["p_value"], 5)) for lab, x in e["at"].items()})
                 for l, e in r["layers"].items()}
        print(step, brief, flush=True)
        series.write(a, results)


if __name__ == "__main__":
    main()
