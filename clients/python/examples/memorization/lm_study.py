"""Offline exploration of the canaries study's checkpoints (lm_train): for a checkpoint, every
watched layer x ρ: probe loss/accuracy, held-out perplexity, recitation, and how well each score
separates canaries from clean training examples, per example and per secret token.

  /usr/bin/python3 -m memorization.lm_study --run /tmp/lm-inj --ckpt 1200 --out sweep.json
"""
import argparse
import json
from pathlib import Path

import numpy as np
import torch

from . import scores
from .kfac import Basis, Factors, edited_weight, swapped
from .lm_eval import LmEval, recitation, secret_positions
from .lm_train import LmConfig, corpus, make_model

GRID = [1 - g for g in np.exp(np.linspace(np.log(0.4), np.log(1e-5), 19))]


def bases_of(ck, kind="cumulative"):
    """Eigenbases per layer from a checkpoint's factors. kind: cumulative | ema (sampled-label
    Fisher passes), empirical | empirical-ema (the training pass's own gradients), mixed (both
    passes' tokens pooled, cumulative: what a worker accumulating every capture holds)."""
    sampled = {n: Factors.from_state(s) for n, s in ck["factors"].items()}
    if kind in ("cumulative", "ema"):
        return {n: Basis.of(*f.get(kind)) for n, f in sampled.items()}
    empirical = {n: Factors.from_state(s) for n, s in ck["empirical"].items()}
    if kind in ("empirical", "empirical-ema"):
        return {n: Basis.of(*f.get("ema" if kind.endswith("ema") else "cumulative")) for n, f in empirical.items()}
    if kind == "mixed":
        return {n: Basis.of((f.sum_a + empirical[n].sum_a) / (f.count + empirical[n].count),
                            (f.sum_g + empirical[n].sum_g) / (f.count + empirical[n].count)) for n, f in sampled.items()}
    raise ValueError(f"unknown factor kind {kind}")


class Study:
    def __init__(self, run_dir, probes=128, eval_windows=512):
        self.run_dir = Path(run_dir)
        cfg = json.loads((self.run_dir / "config.json").read_text())
        self.c = LmConfig(**cfg)
        self.split, self.canaries = corpus(self.c)
        self.probes = self.split.held_out[:probes]
        self.evalset = self.split.held_out[probes:probes + eval_windows]
        self.canary_texts = [k.text for k in self.canaries]

    def load(self, step):
        ck = torch.load(self.run_dir / f"ckpt-{step:05d}.pt")
        model = make_model(self.c)
        model.load_state_dict(ck["model"])
        return model, ck, ck["recent"]

    def texts(self, ids):
        return [self.canaries[int(i[1:])].text if i[0] == "c" else self.split.train[int(i[1:])] for i in ids]

    def bases(self, ck, kind="cumulative"):
        return bases_of(ck, kind)


def secret_token_scores(stats_now, stats_edited, ids, study):
    """Per-token (increase, -loss now) for secret positions of canary rows (positives) and every
    valid position of clean rows (negatives)."""
    inc = (stats_edited.losses - stats_now.losses)
    pos_inc, pos_loss, neg_inc, neg_loss = [], [], [], []
    for row, sid in enumerate(ids):
        if sid[0] == "c":
            pos = secret_positions(study.canaries[int(sid[1:])], study.c.seq_len)
            pos_inc += inc[row, pos].tolist()
            pos_loss += (-stats_now.losses[row, pos]).tolist()
        else:
            v = stats_now.valid[row]
            neg_inc += inc[row][v].tolist()
            neg_loss += (-stats_now.losses[row][v]).tolist()
    return {"auroc_token_edit": scores.auroc(pos_inc, neg_inc), "auroc_token_loss": scores.auroc(pos_loss, neg_loss)}


def example_scores(stats_now, stats_edited, ks=(4, 8, 12, 16)):
    out = {"loss": -scores.mean_loss(stats_now.losses, stats_now.valid),
           "mean": scores.mean_increase(stats_now.losses, stats_edited.losses, stats_now.valid)}
    for k in ks:
        out[f"peak{k}"] = scores.peak(stats_now.losses, stats_edited.losses, stats_now.valid, k)
    return out


def sweep(study, step, layers=None, rhos=GRID, kind="cumulative"):
    model, factors, recent = study.load(step)
    ev = LmEval(model, study.c.seq_len)
    recent_texts = study.texts(recent)
    is_canary = np.array([i[0] == "c" for i in recent])
    sets = {"probe": study.probes, "eval": study.evalset, "recent": recent_texts, "canary": study.canary_texts}
    now = {k: ev.stats(v) for k, v in sets.items()}
    base = {"probe_loss": now["probe"].mean_loss(), "probe_acc": now["probe"].accuracy(),
            "eval_ppl": float(np.exp(now["eval"].mean_loss())),
            "recitation": float(np.mean(recitation(now["canary"], study.canaries, study.c.seq_len))),
            "canaries_recent": int(is_canary.sum())}
    bases = study.bases(factors, kind)
    rows = []
    for layer in layers or study.c.layers:
        for rho in rhos:
            w = edited_weight(dict(model.named_modules())[layer].weight, bases[layer], rho)
            with swapped(model, {layer: w}):
                ed = {k: ev.stats(v) for k, v in sets.items()}
            row = {"layer": layer, "rho": float(rho),
                   "probe_dloss": ed["probe"].mean_loss() - base["probe_loss"],
                   "probe_dacc": ed["probe"].accuracy() - base["probe_acc"],
                   "eval_ppl_ratio": float(np.exp(ed["eval"].mean_loss())) / base["eval_ppl"],
                   "recitation": float(np.mean(recitation(ed["canary"], study.canaries, study.c.seq_len)))}
            sc_train = example_scores(now["recent"], ed["recent"])
            sc_probe = example_scores(now["probe"], ed["probe"])
            for name, v in sc_train.items():
                v = v.numpy()
                row[f"auroc_ex_{name}"] = scores.auroc(v[is_canary], v[~is_canary])
                if name != "loss":
                    row[f"exc95_{name}"] = scores.exceedance(v[~is_canary], sc_probe[name].numpy(), 0.95)["share"]
                    row[f"exc95all_{name}"] = scores.exceedance(v, sc_probe[name].numpy(), 0.95)["p_value"]
            row.update(secret_token_scores(now["recent"], ed["recent"], recent, study))
            rows.append(row)
            print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
    return {"step": step, "kind": kind, "base": base, "rows": rows}


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--run", required=True)
    p.add_argument("--ckpt", type=int, required=True)
    p.add_argument("--kind", default="cumulative")
    p.add_argument("--layers", nargs="*")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    res = sweep(Study(a.run), a.ckpt, a.layers, kind=a.kind)
    Path(a.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()


def joint_edits(study, step, subsets, kind="cumulative", tolerance=float(np.log(1.05)), mode="loss", grid=None, rounds=1):
    """For each subset of layers: the probes-only joint calibration (calibrate.calibrate_joint) and
    what the edit does: probe cost, held-out perplexity, recitation."""
    from .calibrate import FINE_GRID, calibrate_joint, remembered
    grid = grid or FINE_GRID
    model, factors, recent = study.load(step)
    ev = LmEval(model, study.c.seq_len)
    bases = study.bases(factors, kind)
    modules = dict(model.named_modules())
    probe_now, eval_now, canary_now = ev.stats(study.probes), ev.stats(study.evalset), ev.stats(study.canary_texts)
    weights = {}

    def weight(layer, rho):
        if (layer, rho) not in weights:
            weights[(layer, rho)] = edited_weight(modules[layer].weight, bases[layer], rho)
        return weights[(layer, rho)]

    def cost(stats):
        return (stats.mean_loss() - probe_now.mean_loss()) if mode == "loss" else (probe_now.accuracy() - stats.accuracy())

    @remembered  # across the subsets too
    def cost_joint(rhos):
        with swapped(model, {l: weight(l, r) for l, r in rhos.items()}):
            return cost(ev.stats(study.probes))
    out = {"step": step, "kind": kind, "mode": mode, "tolerance": tolerance,
           "recitation_now": float(np.mean(recitation(canary_now, study.canaries, study.c.seq_len))),
           "eval_ppl_now": float(np.exp(eval_now.mean_loss())), "subsets": []}
    for subset in subsets:
        cal = calibrate_joint(subset, cost_joint, grid, tolerance, rounds)
        edited = {l: r for l, r in cal["rhos"].items() if r < 1.0}
        with swapped(model, {l: weight(l, r) for l, r in edited.items()}):
            ev_ed, can_ed = ev.stats(study.evalset), ev.stats(study.canary_texts)
        row = {"layers": subset, "rhos": cal["rhos"], "probe_cost": cal["cost"], "rounds": cal["rounds"],
               "eval_ppl_ratio": float(np.exp(ev_ed.mean_loss() - eval_now.mean_loss())),
               "recitation": float(np.mean(recitation(can_ed, study.canaries, study.c.seq_len)))}
        out["subsets"].append(row)
        print(json.dumps(row), flush=True)
    return out
