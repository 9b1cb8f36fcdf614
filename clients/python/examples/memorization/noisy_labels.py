"""The paper's noisy-labels experiment on a real pretrained transformer (issue 12): all-MiniLM-L6-v2
(from its ONNX file on Maven Central) fine-tuned to classify fortunes quotes by category; the true
labels until epoch `inject_at`, then 10% of the training labels flipped (never, in the clean
control). Watched at every refresh (once per epoch) by the run-level alarm; at the end edited by
a joint edit of the trainable layer's two MLP matrices, calibrated on held-out probes only.

Two shared cores: the lower layers are frozen and run once (their output cached per quote), the
top layer(s) and the head are trained (minilm_model.TopClassifier); quotes are cut to
`max_tokens` WordPiece tokens.

Measured: per refresh and layer the calibrated ρ (probe accuracy within `tolerance`), the
exceedance alarm, and (for the record) the flipped-label AUROC of the memorization score; the
first alert in the injected run and in the clean control; at the end, for the joint edit: the
flipped examples' predictions (memorized label, true label), clean training and test accuracy
before and after, and detection AUROCs against the loss baseline.
"""
import collections
import json
import random
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from . import minilm_data, scores
from .alarm import ALARM_HOLD, ALARM_THRESHOLD, first_alert, layer_alarms, remember_recent
from .calibrate import FINE_GRID, calibrate_joint
from .canaries import alarm_targets
from .kfac import Basis, Capture, Factors, edited_weight, sampled_fisher_pass, swapped
from .minilm_train import classifier_logits, features, make_model


@dataclass
class NoisyLabelsConfig:
    seed: int = 1
    categories: list = field(default_factory=lambda: list(minilm_data.DEFAULT_CATEGORIES))
    per_class: int = 500
    max_tokens: int = 32
    first_trainable: int = 5
    train_attention: bool = False  # only layer 5's MLP and the head are trained (see the module doc)
    noise: float = 0.1
    epochs: int = 16
    inject_at: int = 6            # epoch; < 0: clean control
    batch: int = 32
    lr: float = 3e-4
    fisher_every: int = 4
    ema_decay: float = 0.95
    factor_kind: str = "cumulative"
    recent: int = 256
    probes: int = 0               # 0: every probe quote of the split
    tolerance: float = 0.01       # probe accuracy, absolute
    refresh_every: int = 40       # live: the service calibrates every 40 trainer steps (pipeline/service.properties)
    cache: str = "/tmp/curvewatch-minilm"

    def watched(self):
        return [f"encoder.layer.{i}.{m}" for i in range(self.first_trainable, 6)
                for m in ("intermediate.dense", "output.dense")]


PRESETS = {
    "full": {},
    "ci": {"per_class": 120, "max_tokens": 24, "epochs": 10, "inject_at": 4, "recent": 128, "lr": 5e-4},
}


def config(size="full", **overrides):
    return NoisyLabelsConfig(**{**PRESETS[size], **overrides})


class NoisyLabels:
    def __init__(self, c, log=print):
        self.c = c
        (self.train, self.probes, self.test), feats = features(c, log)
        self.hidden, self.mask = feats["train"]
        self.probe_x = tuple(t[:c.probes] if c.probes else t for t in feats["probe"])
        self.probe_y = self.probes.labels[:c.probes] if c.probes else self.probes.labels
        self.test_x, self.test_y = feats["test"], self.test.labels
        self.model = make_model(c)
        self.modules = dict(self.model.named_modules())
        self.factors = {n: Factors(self.modules[n].in_features, self.modules[n].out_features, c.ema_decay)
                        for n in c.watched()}
        self.recent = collections.OrderedDict()
        self.noisy = False

    def labels(self):
        return self.train.labels if self.noisy else self.train.true_labels

    @torch.no_grad()
    def logits(self, hidden, mask):
        self.model.eval()
        return torch.cat([self.model(hidden_states=hidden[i:i + 256], attention_mask=mask[i:i + 256]).logits
                          for i in range(0, len(hidden), 256)])

    def bases(self):
        return {n: Basis.of(*f.get(self.c.factor_kind)) for n, f in self.factors.items()}

    def edited(self, bases, rhos):
        return {l: edited_weight(self.modules[l].weight, bases[l], r) for l, r in rhos.items() if r < 1.0}

    def probe_accuracy(self):
        return float((self.logits(*self.probe_x).argmax(-1) == self.probe_y).float().mean())

    def probe_cost(self, weights, accuracy_now):
        """Probe accuracy drop under the edited weights, from the unedited `accuracy_now`."""
        with swapped(self.model, weights):
            return accuracy_now - self.probe_accuracy()

    def outcome(self):
        """Predictions of every training quote and of the test set."""
        pred = self.logits(self.hidden, self.mask).argmax(-1)
        fl = self.train.flipped
        return {"flipped_memorized": float((pred[fl] == self.train.labels[fl]).float().mean()),
                "flipped_true": float((pred[fl] == self.train.true_labels[fl]).float().mean()),
                "clean_train_accuracy": float((pred[~fl] == self.train.true_labels[~fl]).float().mean()),
                "test_accuracy": float((self.logits(*self.test_x).argmax(-1) == self.test_y).float().mean())}


def train(c, log=print, on_refresh=None):
    run = NoisyLabels(c, log)
    torch.manual_seed(c.seed)
    opt = torch.optim.Adam(run.model.parameters(), lr=c.lr)
    capture = Capture(run.model, c.watched())
    capture.enabled = False
    generator = torch.Generator().manual_seed(c.seed + 1000)
    rng = random.Random(c.seed)
    n = len(run.train.texts)
    step, started = 0, time.time()
    for epoch in range(c.epochs):
        run.noisy = 0 <= c.inject_at <= epoch
        labels = run.labels()
        order = list(range(n))
        rng.shuffle(order)
        for s in range(0, n, c.batch):
            rows = torch.tensor(order[s:s + c.batch])
            batch = {"hidden_states": run.hidden[rows], "attention_mask": run.mask[rows], "labels": labels[rows]}
            run.model.train()
            if step % c.fisher_every == 0:
                capture.enabled = True
                sampled_fisher_pass(run.model, capture, run.factors, classifier_logits(batch),
                                    batch["attention_mask"] == 1, generator)
                capture.enabled = False
            loss = run.model(**batch).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            remember_recent(run.recent, rows.tolist(), step, c.recent)
            step += 1
        if on_refresh is not None:
            on_refresh(run, epoch, step)
        log(f"epoch {epoch} step {step} loss {float(loss):.3f} {time.time() - started:.0f}s")
    capture.close()
    return run


def example_scores(run, weights, rows, labels):
    """Per example log((loss_edited + c)/(loss_now + c)) of the training rows and of the probes."""
    def losses(x, m, y):
        return F.cross_entropy(run.logits(x, m), y, reduction="none")
    now_t, now_p = losses(run.hidden[rows], run.mask[rows], labels[rows]), losses(*run.probe_x, run.probe_y)
    with swapped(run.model, weights):
        ed_t, ed_p = losses(run.hidden[rows], run.mask[rows], labels[rows]), losses(*run.probe_x, run.probe_y)
    return (scores.token_log_ratio(now_t[:, None], ed_t[:, None])[:, 0].numpy(),
            scores.token_log_ratio(now_p[:, None], ed_p[:, None])[:, 0].numpy(), now_t.numpy())


def refresh(run, epoch, step):
    c = run.c
    rows = torch.tensor(list(run.recent))
    labels = run.labels()
    flipped = (run.train.flipped[rows] & run.noisy).numpy()
    acc_now = run.probe_accuracy()
    bases = run.bases()
    layers = layer_alarms(c.watched(), lambda rhos: run.edited(bases, rhos), FINE_GRID, c.tolerance,
                          lambda weights: run.probe_cost(weights, acc_now),
                          lambda weights: example_scores(run, weights, rows, labels)[:2], flipped, "flipped_over")
    return {"step": step, "epoch": epoch, "noisy": run.noisy, "flipped_recent": int(flipped.sum()), "recent": len(rows),
            "layers": layers}


def final_edit(run):
    c = run.c
    bases = run.bases()
    acc_now = run.probe_accuracy()
    cal = calibrate_joint(c.watched(), lambda rhos: run.probe_cost(run.edited(bases, rhos), acc_now), FINE_GRID, c.tolerance)
    weights = run.edited(bases, cal["rhos"])
    before = run.outcome()
    with swapped(run.model, weights):
        after = run.outcome()
    out = {"rhos": cal["rhos"], "probe_cost": cal["cost"], "calibration_rounds": len(cal["rounds"]),
           "before": before, "after": after,
           "before_after": {k.replace("_", " "): (before[k], after[k]) for k in before}}
    rows = torch.arange(len(run.train.texts))
    out["detection"] = detection(run, *example_scores(run, weights, rows, run.labels()))
    return out


def detection(run, train_scores, probe_scores, loss_now):
    """AUROCs of the flipped training examples among all training examples: the memorization score
    (log ratio of the example's loss under the edit) against the loss baseline; None in a clean run."""
    fl = run.train.flipped.numpy() & run.noisy
    if not fl.any():
        return None
    return {"flipped": int(fl.sum()), "clean": int((~fl).sum()),
            "auroc_example": scores.auroc(train_scores[fl], train_scores[~fl]),
            "auroc_example_loss": scores.auroc(-loss_now[fl], -loss_now[~fl]),
            "exceedance": scores.exceedance(train_scores, probe_scores, 1.0),
            "roc": {"example_score": [list(map(float, x)) for x in scores.roc_curve(train_scores[fl], train_scores[~fl])],
                    "example_loss": [list(map(float, x)) for x in scores.roc_curve(-loss_now[fl], -loss_now[~fl])]}}


def run_one(c, log=print):
    refreshes = []
    run = train(c, log, on_refresh=lambda r, epoch, step: refreshes.append(refresh(r, epoch, step)))
    series = [(r["step"], {l: (e["surprise"] if e else None) for l, e in r["layers"].items()}) for r in refreshes]
    injection = refreshes[c.inject_at - 1]["step"] if c.inject_at > 0 else (0 if c.inject_at == 0 else None)
    return {"config": asdict(c), "refreshes": refreshes, "injection_step": injection,
            "first_alert": first_alert(series, ALARM_THRESHOLD, ALARM_HOLD),
            "final": final_edit(run)}


def experiment(size="full", seed=1, log=print, **overrides):
    injected = run_one(config(size, seed=seed, **overrides), log)
    clean = run_one(config(size, seed=seed, **{**overrides, "inject_at": -1}), log)
    return {"experiment": "minilm-noisy-labels", "size": size, "seed": seed, "injected": injected, "clean": clean,
            "targets": targets(injected, clean)}


def targets(injected, clean):
    f = injected["final"]
    if "error" in f:
        return {**alarm_targets(injected, clean), "edit": {"value": f["error"], "pass": False}}
    b, a = f["before"], f["after"]
    d = f["detection"]
    return {
        **alarm_targets(injected, clean),
        "flipped_memorized_before_at_least_0.9": {"value": b["flipped_memorized"], "pass": b["flipped_memorized"] >= 0.9},
        "flipped_true_after_at_least_0.8": {"value": a["flipped_true"], "pass": a["flipped_true"] >= 0.8},
        "flipped_memorized_after_at_most_0.05": {"value": a["flipped_memorized"], "pass": a["flipped_memorized"] <= 0.05},
        "test_accuracy_not_lower": {"value": [b["test_accuracy"], a["test_accuracy"]],
                                    "pass": a["test_accuracy"] >= b["test_accuracy"]},
        "auroc_example_not_below_loss": {"value": d and [d["auroc_example"], d["auroc_example_loss"]],
                                         "pass": bool(d) and d["auroc_example"] >= d["auroc_example_loss"]},
    }


if __name__ == "__main__":
    import sys
    res = experiment(sys.argv[1] if len(sys.argv) > 1 else "ci", int(sys.argv[2]) if len(sys.argv) > 2 else 1)
    print(json.dumps(res["targets"], indent=1))
