"""The transformer experiments through the live pipeline (issue 12): the same training as the
offline engines (canaries.py, noisy_labels.py), watched by `curvewatch.watch` against a running
broker, worker, streams app and service. The trainer answers the service's edit candidates on its
probes and recent training examples as they come; the service calibrates every watched layer,
publishes the run-level alarm (`memorization_outliers`) and raises alerts (the
`memorization-outliers` rule of `pipeline/alert-rules.properties`). At the end the experiment asks the service for ONE edit of the edit
layers at their calibrated ρ (the service shares the tolerance between them by their probe costs,
`JointEdit`), downloads the snapshot, checks its sha256 and measures it.

A refresh here is one calibration of a layer by the service (one alarm evaluation). The service
settings the experiments need, with their reasons, are in `pipeline/service.properties` (the
integration test and `pipeline.py` both read it); everything else is the shipped default.
"""
import json
import time
import urllib.error
import urllib.request
from dataclasses import asdict

import numpy as np
import torch

import curvewatch
from textlm import fortunes

from . import canaries as canaries_mod
from . import noisy_labels as noisy_mod
from . import scores
from .alarm import ALARM_THRESHOLD, remember_recent
from .kfac import swapped
from .lm_eval import recitation
from .lm_train import Batches

ALARM_SIGNAL = "memorization_outliers"
OUTLIERS_RULE = "memorization-outliers"
CANDIDATE_TIMEOUT_S = 180  # = calibration.timeout.ms of pipeline/service.properties


def _get(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def _post(url, body, token):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json",
                                          **({"Authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:  # a 4xx carries the service's reason: the caller reports it
        body = e.read()
        try:
            return e.code, json.loads(body or b"{}")
        except ValueError:
            return e.code, {"error": body.decode(errors="replace")}


class EditRefused(RuntimeError):
    """The service answered the edit request with a 4xx (e.g. 409: no calibrated ρ leaves room in the tolerance)."""


class Service:
    """The few REST calls the experiments make."""

    def __init__(self, url, token):
        self.url, self.token = url.rstrip("/"), token

    def points(self, run_id, layer, name):
        r = _get(f"{self.url}/api/runs/{run_id}/signals?layer={layer}&name={name}&limit=1000")
        return sorted((p for s in r.get("series", []) for p in s["points"]), key=lambda p: p["step"])

    def alerts(self, run_id):
        return _get(f"{self.url}/api/alerts?run={run_id}&limit=1000")

    def top_scores(self, run_id, layer, kind="PEAK"):
        return _get(f"{self.url}/api/runs/{run_id}/scores?layer={layer}&kind={kind}&top=200")

    def run(self, run_id):
        return _get(f"{self.url}/api/runs/{run_id}")

    def weights(self, snap, model):
        """{layer: edited weight} of a WRITTEN snapshot, downloaded and checked against its sha256."""
        import tempfile
        from pathlib import Path
        from curvewatch.cli import Api
        with tempfile.TemporaryDirectory() as d:
            target = Path(d) / "edited.safetensors"
            size, sha = Api(self.url, self.token).download(snap["snapshot_id"], target)
            if sha != snap["sha256"].lower() or size != snap["size_bytes"]:
                raise RuntimeError(f"snapshot {snap['snapshot_id']}: {size} bytes sha256 {sha}, listed {snap}")
            state = curvewatch.load_file(str(target))
        return {name[:-len(".weight")]: t for name, t in state.items() if name.endswith(".weight")}

    def edit(self, run_id, layers, key, timeout=180):
        """One edit of `layers` at their calibrated ρ; the snapshot once written."""
        deadline = time.monotonic() + timeout
        while True:  # the final weights published at the end may not have reached the service yet: NOT_READY
            status, body = _post(f"{self.url}/api/runs/{run_id}/edits",
                                 {"layers": [{"layer": l} for l in layers], "idempotency_key": key,
                                  "reason": "issue 12 experiment: the calibrated joint edit"}, self.token)
            if status != 409 or "NOT_READY" not in str(body) or time.monotonic() > deadline:
                break
            time.sleep(2)
        if status != 202:
            raise EditRefused(f"the edit request of {layers} answered {status}: {body}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for s in _get(f"{self.url}/api/runs/{run_id}/snapshots"):
                if s.get("idempotency_key") == key:
                    if s.get("status", "WRITTEN") != "WRITTEN":
                        raise RuntimeError(f"edit failed: {s}")
                    return s
            time.sleep(0.5)
        raise TimeoutError(f"no snapshot for edit {key} within {timeout} s")


def await_calibrations(w, svc, run_id, layers, after_step, timeout):
    """Answers candidates until every layer has a calibration measured at or after after_step."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        w.answer_candidates()
        if all(any(p["step"] >= after_step for p in svc.points(run_id, l, "calibration_valid")) for l in layers):
            return True
        time.sleep(0.2)
    return False


def series(svc, run_id, layers):
    """The alarm as the service published it: [{step, layers: {layer: entry}}] by step, one entry per
    calibration (a refresh) of each layer."""
    by_step = {}
    for layer in layers:
        for p in svc.points(run_id, layer, ALARM_SIGNAL):
            a = p.get("attributes", {})
            by_step.setdefault(p["step"], {})[layer] = {
                "surprise": p["value"], "count": int(a.get("count", 0)), "expected": a.get("expected"),
                "p_value": a.get("p_value"), "threshold": a.get("threshold"), "rho": a.get("rho"),
                "train_examples": a.get("train_examples"), "probe_examples": a.get("probe_examples")}
    return [{"step": s, "layers": by_step[s]} for s in sorted(by_step)]


def alerts_of(svc, run_id):
    """Every alert of the run (any rule) with its step, rule, layer, status."""
    return sorted(({"step": a.get("step"), "rule": a.get("rule"), "layer": a.get("layer"), "status": a.get("status"),
                    "severity": a.get("severity"), "value": a.get("value")} for a in svc.alerts(run_id)),
                  key=lambda a: (a["step"] if a["step"] is not None else -1))


def firings(listed, refreshes, threshold=ALARM_THRESHOLD):
    """Every alert as FIRING at the step it fired. The service lists an alert once, in its latest
    state, so a RESOLVED one no longer says when it fired: the memorization-outliers rule's firings
    (a threshold rule, for=1: every refresh above the threshold) are read off the alarm series;
    another rule's alert counts at its listed step (a RESOLVED one fired at or before it)."""
    out = [{"step": r["step"], "rule": OUTLIERS_RULE, "layer": layer, "status": "FIRING", "value": e["surprise"]}
           for r in refreshes for layer, e in r["layers"].items() if e and e["surprise"] > threshold]
    out += [{**a, "status": "FIRING"} for a in listed if a["rule"] != OUTLIERS_RULE]
    return sorted(out, key=lambda a: (a["step"] if a["step"] is not None else -1))


def first_alert(alerts):
    steps = [a["step"] for a in alerts if a["status"] == "FIRING"]
    return min(steps) if steps else None


def service_auroc(svc, run_id, layer, positive):
    """AUROC of the service's own PEAK scores (its latest calibration of the layer) for the sample ids
    `positive` among the scored training examples; None without both kinds."""
    top = svc.top_scores(run_id, layer)
    ids = [x["sample_id"] for x in top.get("top", [])]
    vals = np.array([x["score"] for x in top.get("top", [])])
    pos = np.array([i in positive for i in ids])
    if not pos.any() or pos.all():
        return None
    return {"step": top.get("step"), "rho": top.get("rho"), "examples": len(ids), "positives": int(pos.sum()),
            "auroc": scores.auroc(vals[pos], vals[~pos])}


def _watch(model, layers, run_id, bootstrap, recent, seed, config):
    # answer_budget inf: the experiments measure what the method can do; the answer time is reported (overhead)
    return curvewatch.watch(model, layers=layers, run_id=run_id, bootstrap=bootstrap, answer_candidates=True,
                            recent_examples=recent, seed=seed, answer_budget=float("inf"),
                            candidate_timeout=CANDIDATE_TIMEOUT_S,
                            config={k: json.dumps(v) for k, v in config.items()})


def _watched_step(w, model, opt, step, batch, ids, fisher_every):
    """One training step as a trainer using the client runs it: every `fisher_every` steps a
    true-Fisher capture pass (labels sampled from the model), then the step with the watch's hook
    between backward and the update. Returns the loss."""
    model.train()
    if step % fisher_every == 0:
        w.fisher_pass(model, batch, step, sample_ids=ids)
    loss = model(**batch).loss
    opt.zero_grad(set_to_none=True)
    loss.backward()
    w.step(step, sample_ids=ids, inputs=batch)
    opt.step()
    return loss


# -- canaries ----------------------------------------------------------------------------------------

def run_canaries(c, bootstrap, svc, run_id, log=print):
    run = canaries_mod.Canaries(c, log)
    opt = torch.optim.Adam(run.model.parameters(), lr=c.lr)
    batches = Batches(c, run.split.train, run.canaries)
    probe_batch = fortunes.batch(run.probes, run.ev.tok, c.seq_len)
    started = time.time()
    with _watch(run.model, c.layers, run_id, bootstrap, c.recent, c.seed, asdict(c)) as w:
        w.probe(run.model, probe_batch, step=0, sample_ids=[f"p{i}" for i in range(len(run.probes))], capture=False)
        for step in range(c.steps):
            ids, batch = batches.at(step)
            loss = _watched_step(w, run.model, opt, step, batch, ids, c.fisher_every)
            remember_recent(run.recent, ids, step, c.recent)
            if (step + 1) % c.refresh_every == 0:
                log(f"{run_id} step {step + 1} loss {float(loss):.3f} {time.time() - started:.0f}s answers "
                    f"{w.candidates.counts()}")
        for layer in c.layers:  # the final weights: the edit is of the model as it ends
            w.publish_weights(layer, c.steps - 1)
        calibrated = await_calibrations(w, svc, run_id, c.edit_layers, c.steps - 2 * c.refresh_every, 600)
        overhead = w.overhead()
        canary_ids = {i for i in run.recent if i[0] == "c"}
        final = _final_canaries(run, svc, run_id, canary_ids) if calibrated else \
            {"error": "not every edit layer was calibrated near the end"}
    listed, refreshes = alerts_of(svc, run_id), series(svc, run_id, c.layers)
    alerts = firings(listed, refreshes)
    return {"config": asdict(c), "run_id": run_id, "injection_step": c.inject_at if c.inject_at >= 0 else None,
            "refreshes": refreshes, "alerts": alerts, "alerts_listed": listed, "first_alert": first_alert(alerts),
            "final": final, "overhead": overhead,
            "seconds": round(time.time() - started, 1)}


def _final_canaries(run, svc, run_id, canary_ids):
    c = run.c
    service_detection = {l: service_auroc(svc, run_id, l, canary_ids) for l in c.layers}
    try:
        snap = svc.edit(run_id, c.edit_layers, f"{run_id}-final")
    except EditRefused as e:
        return {"error": str(e), "service_detection": service_detection}
    weights = svc.weights(snap, run.model)
    ids = list(run.recent)
    texts = run.texts(ids)
    canary_texts = [k.text for k in run.canaries]
    sets = {"eval": run.evalset, "canary": canary_texts, "recent": texts, "probe": run.probes}
    now = {k: run.ev.stats(v) for k, v in sets.items()}
    with swapped(run.model, weights):
        ed = {k: run.ev.stats(v) for k, v in sets.items()}
    rec_b = float(np.mean(recitation(now["canary"], run.canaries, c.seq_len)))
    rec_a = float(np.mean(recitation(ed["canary"], run.canaries, c.seq_len)))
    ppl_b, ppl_a = float(np.exp(now["eval"].mean_loss())), float(np.exp(ed["eval"].mean_loss()))
    rhos = {x["layer"]: x["rho"] for x in snap["layers"]}
    return {"snapshot": {k: snap.get(k) for k in ("snapshot_id", "step", "sha256", "size_bytes", "layers")},
            "rhos": {l: rhos.get(l, 1.0) for l in c.edit_layers},
            "probe_cost": float(ed["probe"].mean_loss() - now["probe"].mean_loss()),
            "recitation_before": rec_b, "recitation_after": rec_a, "perplexity_before": ppl_b, "perplexity_after": ppl_a,
            "perplexity_ratio": ppl_a / ppl_b,
            "before_after": {"strict recitation": (rec_b, rec_a), "held-out perplexity / 10": (ppl_b / 10, ppl_a / 10)},
            "service_detection": service_detection,
            "detection": canaries_mod.detection(run, ids, now["recent"], ed["recent"], now["probe"], ed["probe"])}


# -- noisy labels ------------------------------------------------------------------------------------

def run_noisy(c, bootstrap, svc, run_id, log=print):
    run = noisy_mod.NoisyLabels(c, log)
    torch.manual_seed(c.seed)
    opt = torch.optim.Adam(run.model.parameters(), lr=c.lr)
    rng = noisy_mod.random.Random(c.seed)
    n = len(run.train.texts)
    probe = {"hidden_states": run.probe_x[0], "attention_mask": run.probe_x[1], "labels": run.probe_y}
    layers = c.watched()
    step, started, epoch_steps = 0, time.time(), []
    with _watch(run.model, layers, run_id, bootstrap, c.recent, c.seed, asdict(c)) as w:
        w.probe(run.model, probe, step=0, sample_ids=[f"p{i}" for i in range(len(run.probe_y))], capture=False)
        for epoch in range(c.epochs):
            run.noisy = 0 <= c.inject_at <= epoch
            labels = run.labels()
            epoch_steps.append(step)
            order = list(range(n))
            rng.shuffle(order)
            for s in range(0, n, c.batch):
                rows = torch.tensor(order[s:s + c.batch])
                ids = [f"t{i}" for i in rows.tolist()]
                batch = {"hidden_states": run.hidden[rows], "attention_mask": run.mask[rows], "labels": labels[rows]}
                loss = _watched_step(w, run.model, opt, step, batch, ids, c.fisher_every)
                remember_recent(run.recent, rows.tolist(), step, c.recent)
                step += 1
            log(f"{run_id} epoch {epoch} step {step} loss {float(loss):.3f} {time.time() - started:.0f}s answers "
                f"{w.candidates.counts()}")
        for layer in layers:
            w.publish_weights(layer, step - 1)
        calibrated = await_calibrations(w, svc, run_id, layers, step - 2 * c.refresh_every, 600)
        overhead = w.overhead()
        flipped_ids = {f"t{i}" for i in run.recent if run.noisy and bool(run.train.flipped[i])}
        final = _final_noisy(run, svc, run_id, layers, flipped_ids) if calibrated else \
            {"error": "not every edit layer was calibrated near the end"}
    listed, refreshes = alerts_of(svc, run_id), series(svc, run_id, layers)
    alerts = firings(listed, refreshes)
    injection_step = epoch_steps[c.inject_at] if 0 <= c.inject_at < len(epoch_steps) else None
    return {"config": asdict(c), "run_id": run_id, "injection_step": injection_step, "epoch_steps": epoch_steps,
            "refreshes": refreshes, "alerts": alerts, "alerts_listed": listed, "first_alert": first_alert(alerts), "final": final,
            "overhead": overhead, "seconds": round(time.time() - started, 1)}


def _final_noisy(run, svc, run_id, layers, flipped_ids):
    service_detection = {l: service_auroc(svc, run_id, l, flipped_ids) for l in layers}
    try:
        snap = svc.edit(run_id, layers, f"{run_id}-final")
    except EditRefused as e:
        return {"error": str(e), "service_detection": service_detection}
    weights = svc.weights(snap, run.model)
    before = run.outcome()
    probe_before = run.probe_accuracy()
    with swapped(run.model, weights):
        after = run.outcome()
        probe_after = run.probe_accuracy()
    rows = torch.arange(len(run.train.texts))
    train_scores, probe_scores, loss_now = noisy_mod.example_scores(run, weights, rows, run.labels())
    rhos = {x["layer"]: x["rho"] for x in snap["layers"]}
    return {"snapshot": {k: snap.get(k) for k in ("snapshot_id", "step", "sha256", "size_bytes", "layers")},
            "rhos": {l: rhos.get(l, 1.0) for l in layers}, "probe_cost": probe_before - probe_after,
            "before": before, "after": after,
            "before_after": {k.replace("_", " "): (before[k], after[k]) for k in before},
            "service_detection": service_detection,
            "detection": noisy_mod.detection(run, train_scores, probe_scores, loss_now)}


def rescore(result):
    """A result written before firings() existed (its "alerts" are the listed ones): every run's
    firings from its alarm series and listed alerts, and the targets again."""
    for name in ("injected", "clean"):
        run = result[name]
        run["alerts_listed"] = run.get("alerts_listed", run["alerts"])
        run["alerts"] = firings(run["alerts_listed"], run["refreshes"])
        run["first_alert"] = first_alert(run["alerts"])
    module = canaries_mod if result["experiment"] == "transformer-canaries" else noisy_mod
    result["targets"] = module.targets(result["injected"], result["clean"])
    return result


def experiment(name, size, seed, bootstrap, service, token, run_prefix, log=print, **overrides):
    """The injected run and its clean control through the pipeline, and the targets."""
    svc = Service(service, token)
    if name == "canaries":
        injected = run_canaries(canaries_mod.config(size, seed=seed, **overrides), bootstrap, svc, f"{run_prefix}-injected", log)
        clean = run_canaries(canaries_mod.config(size, seed=seed, **{**overrides, "inject_at": -1}), bootstrap, svc,
                             f"{run_prefix}-clean", log)
        return {"experiment": "transformer-canaries", "size": size, "seed": seed, "injected": injected, "clean": clean,
                "targets": canaries_mod.targets(injected, clean)}
    injected = run_noisy(noisy_mod.config(size, seed=seed, **overrides), bootstrap, svc, f"{run_prefix}-injected", log)
    clean = run_noisy(noisy_mod.config(size, seed=seed, **{**overrides, "inject_at": -1}), bootstrap, svc,
                      f"{run_prefix}-clean", log)
    return {"experiment": "minilm-noisy-labels", "size": size, "seed": seed, "injected": injected, "clean": clean,
            "targets": noisy_mod.targets(injected, clean)}
