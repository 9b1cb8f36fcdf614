"""The noisy-labels study over refreshes: at every checkpoint of a run (minilm_train), per watched
layer, the calibrated ρ (probe accuracy within `tolerance`, bisected over the grid: probes only),
the per-example scores of the recent training examples and of the probes at that ρ and at a fixed
alarm ρ, the exceedance alarm statistics, the flipped-label AUROCs (for the record), and what the
calibrated edit does to the whole training set and the test set.

  /usr/bin/python3 -m memorization.minilm_series --run /tmp/minilm-inj --out series.json
"""
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from . import scores, series
from .kfac import Basis, Factors, edits, swapped
from .minilm_train import MiniLmConfig, features, make_model


class MiniLmStudy:
    def __init__(self, run_dir):
        self.run_dir = Path(run_dir)
        self.c = MiniLmConfig(**json.loads((self.run_dir / "config.json").read_text()))
        (self.train, self.probes, self.test), self.feats = features(self.c, log=lambda *_: None)
        self.index = {f"x{i}": i for i in range(len(self.train.texts))}
        # the edit's outcome is measured on every flipped example and a fixed sample of 300 clean ones
        clean = torch.nonzero(~self.train.flipped).flatten()
        g = torch.Generator().manual_seed(0)
        self.outcome_rows = torch.cat([torch.nonzero(self.train.flipped).flatten(),
                                       clean[torch.randperm(len(clean), generator=g)[:300]]]).sort().values

    def load(self, step):
        ck = torch.load(self.run_dir / f"ckpt-{step:05d}.pt")
        model = make_model(self.c)
        model.load_state_dict(ck["model"])
        return model.eval(), {n: Factors.from_state(s) for n, s in ck["factors"].items()}, ck

    @torch.no_grad()
    def logits(self, model, which, rows=None):
        hidden, mask = self.feats[which]
        if rows is not None:
            hidden, mask = hidden[rows], mask[rows]
        return torch.cat([model(hidden_states=hidden[i:i + 256], attention_mask=mask[i:i + 256]).logits
                          for i in range(0, len(hidden), 256)])


def outcome(study, model, labels_in_force):
    rows = study.outcome_rows
    pred = study.logits(model, "train", rows).argmax(-1)
    fl = study.train.flipped[rows]
    true, given = study.train.true_labels[rows], study.train.labels[rows]
    return {"flipped_memorized": float((pred[fl] == given[fl]).float().mean()),
            "flipped_true": float((pred[fl] == true[fl]).float().mean()),
            "clean_train_acc": float((pred[~fl] == true[~fl]).float().mean()),
            "train_acc_in_force": float((pred == labels_in_force[rows]).float().mean()),
            "test_acc": float((study.logits(model, "test").argmax(-1) == study.test.labels).float().mean())}


def refresh(study, step, kind, tolerance, alarm_rho, layers, with_outcome=True):
    model, factors, ck = study.load(step)
    noisy = ck["noisy"]
    labels = study.train.labels if noisy else study.train.true_labels
    rows = torch.tensor([study.index[i] for i in ck["recent"]])
    flipped_recent = (study.train.flipped[rows] & noisy).numpy()
    y_recent, y_probe = labels[rows], study.probes.labels
    now = {"recent": study.logits(model, "train", rows), "probe": study.logits(model, "probe")}
    loss_now = {"recent": F.cross_entropy(now["recent"], y_recent, reduction="none"),
                "probe": F.cross_entropy(now["probe"], y_probe, reduction="none")}
    acc_now = float((now["probe"].argmax(-1) == y_probe).float().mean())
    out = {"step": step, "epoch": ck["epoch"], "noisy": noisy, "flipped_recent": int(flipped_recent.sum()),
           "probe_acc": acc_now,
           "now": outcome(study, model, labels) if with_outcome else None, "layers": {}}
    modules = dict(model.named_modules())
    for layer in layers:
        basis = Basis.of(*factors[layer].get(kind))
        weight = edits(modules[layer].weight, basis)

        def accuracy_change(rho):
            with swapped(model, {layer: weight(rho)}):
                return float((study.logits(model, "probe").argmax(-1) == y_probe).float().mean()) - acc_now
        entry = series.calibration(accuracy_change, -1.0, tolerance, 1e-9, basis)
        for label, rho in (("calibrated", entry["rho"]), ("alarm", alarm_rho)):
            if rho >= 1.0:
                continue
            with swapped(model, {layer: weight(rho)}):
                ed = {"recent": study.logits(model, "train", rows), "probe": study.logits(model, "probe")}
                res = {"rho": rho, "outcome": outcome(study, model, labels) if with_outcome else None}
            ed_loss = {k: F.cross_entropy(ed[k], y, reduction="none") for k, y in (("recent", y_recent), ("probe", y_probe))}
            for name, fn in (("exact", scores.token_increase), ("lr", scores.token_log_ratio)):
                tr = fn(loss_now["recent"][:, None], ed_loss["recent"][:, None])[:, 0].numpy()
                pr = fn(loss_now["probe"][:, None], ed_loss["probe"][:, None])[:, 0].numpy()
                r = {"auroc": scores.auroc(tr[flipped_recent], tr[~flipped_recent]) if flipped_recent.any() else None,
                     "auroc_loss": scores.auroc(-loss_now["recent"].numpy()[flipped_recent],
                                                -loss_now["recent"].numpy()[~flipped_recent]) if flipped_recent.any() else None,
                     "train_mean": float(tr.mean()), "probe_mean": float(pr.mean())}
                r.update(series.exceedances(tr, pr, flipped_recent, "flipped_over"))
                res[name] = r
            entry["at"][label] = res
        out["layers"][layer] = entry
    return out


def main(argv=None):
    p = series.arguments(tolerance=0.01)
    p.add_argument("--outcome-every", type=int, default=4, help="measure the edit's effect every n-th refresh (and the last)")
    a = p.parse_args(argv)
    study = MiniLmStudy(a.run)
    steps = series.checkpoint_steps(a)
    results = []
    for step in steps:
        r = refresh(study, step, a.kind, a.tolerance, a.alarm_rho, a.layers or study.c.watched(),
                    with_outcome=(step == steps[-1] or a.outcome_every and len(results) % a.outcome_every == 0))
        results.append(r)
        print(step, r["epoch"], r["flipped_recent"], json.dumps(r["now"]), {
            l: (round(e["rho"], 5), {lab: (x["outcome"] and (x["outcome"]["flipped_true"], x["outcome"]["flipped_memorized"],
                                           x["outcome"]["test_acc"]), x["exact"]["auroc"], x["lr"]["auroc"], x["lr"]["q1.0"]["count"], x["lr"]["q1.0"]["flipped_over"], round(x["lr"]["q1.0"]["p_value"], 6))
                                     for lab, x in e["at"].items()}) for l, e in r["layers"].items()}, flush=True)
        series.write(a, results)


if __name__ == "__main__":
    main()
