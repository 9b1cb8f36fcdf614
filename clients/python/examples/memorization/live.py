"""The transformer experiments through the live pipeline (issue 12): the same training as the
offline engines (canaries.py, noisy_labels.py), watched by `curvewatch.watch` against a running
broker, worker, streams app and service. The service calibrates every watched layer on the probes
the trainer sends, publishes the alarm (`memorization_outliers`) and raises alerts; at the end the
experiment asks the service for an edit of the edit layers at their calibrated ρ, loads the
snapshot and measures it.

Service settings the experiments assume (the integration test passes them; with ./curvewatch
service use --set): `calibration.loss.tolerance` = ln(1.05) / (number of edit layers) for the
canaries (the joint edit of 4 layers then stays within +5% perplexity), `calibration.tolerance`
= 0.01 / 2 for noisy labels, and the candidate pacing of the experiment's refresh cadence.
"""
import json
import time
import urllib.request

import numpy as np
import torch

import curvewatch
from textlm import fortunes

from . import canaries as canaries_mod
from .kfac import swapped
from .lm_eval import recitation
from .lm_train import Batches


def _get(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def _post(url, body, token):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json",
                                          **({"Authorization": f"Bearer {token}"} if token else {})})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, json.loads(r.read() or b"{}")


class Service:
    def __init__(self, url, token):
        self.url, self.token = url.rstrip("/"), token

    def points(self, run_id, layer, name):
        r = _get(f"{self.url}/api/runs/{run_id}/signals?layer={layer}&name={name}")
        return [p for s in r.get("series", []) for p in s["points"]]

    def alerts(self, run_id):
        return _get(f"{self.url}/api/alerts?run={run_id}&limit=1000")

    def layer(self, run_id, layer):
        for l in _get(f"{self.url}/api/runs/{run_id}")["layers"]:
            if l["name"] == layer:
                return l
        return None

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
            state = curvewatch.load_snapshot(target.name, d, model=model)
        return {name[:-len(".weight")]: t for name, t in state.items() if name.endswith(".weight")}

    def edit(self, run_id, layers, key, timeout=120):
        status, body = _post(f"{self.url}/api/runs/{run_id}/edits",
                             {"layers": [{"layer": l} for l in layers], "idempotency_key": key, "reason": "issue 12 experiment"},
                             self.token)
        if status != 202:
            raise RuntimeError(f"edit request answered {status}: {body}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for s in _get(f"{self.url}/api/runs/{run_id}/snapshots"):
                if s.get("idempotency_key") == key:
                    if s.get("status", "WRITTEN") != "WRITTEN":
                        raise RuntimeError(f"edit failed: {s}")
                    return s
            time.sleep(0.5)
        raise TimeoutError(f"no snapshot for edit {key} within {timeout} s")


def _await_calibrations(w, svc, run_id, layers, after_step, timeout):
    """Answers candidates until every layer has a valid calibration measured at or after after_step."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        w.answer_candidates()
        done = all(any(p["step"] >= after_step and p["value"] == 1.0 for p in svc.points(run_id, l, "calibration_valid"))
                   for l in layers)
        if done:
            return True
        time.sleep(0.2)
    return False


def _series(svc, run_id, layers):
    """The alarm as the service published it: [{step, layers: {layer: entry}}] by step."""
    by_step = {}
    for layer in layers:
        for p in svc.points(run_id, layer, "memorization_outliers"):
            a = p.get("attributes", {})
            by_step.setdefault(p["step"], {})[layer] = {
                "surprise": p["value"], "count": int(a.get("count", 0)), "expected": a.get("expected"),
                "p_value": a.get("p_value"), "threshold": a.get("threshold"), "rho": a.get("rho")}
    return [{"step": s, "layers": by_step[s]} for s in sorted(by_step)]


def _first_alert(svc, run_id):
    steps = [a["step"] for a in svc.alerts(run_id) if a.get("rule") == "memorization-outliers" and a.get("status") == "FIRING"]
    return min(steps) if steps else None


def run_canaries(c, bootstrap, svc, run_id, log=print):
    run = canaries_mod.Canaries(c, log)
    opt = torch.optim.Adam(run.model.parameters(), lr=c.lr)
    batches = Batches(c, run.split.train, run.canaries)
    probe_batch = fortunes.batch(run.probes, run.ev.tok, c.seq_len)
    probe_ids = [f"p{i}" for i in range(len(run.probes))]
    # the training steps' captures (EMPIRICAL) and the Fisher passes' (SAMPLED) both reach the worker's
    # factors: the "mixed" kind of the offline study (within a few points of sampled-only there)
    with curvewatch.watch(run.model, layers=c.layers, run_id=run_id, bootstrap=bootstrap, answer_candidates=True,
                          recent_examples=c.recent, weights_every=c.refresh_every, seed=c.seed) as w:
        w.probe(run.model, probe_batch, step=0, sample_ids=probe_ids, capture=False)
        for step in range(c.steps):
            ids, batch = batches.at(step)
            run.model.train()
            if step % c.fisher_every == 0:
                w.fisher_pass(run.model, batch, step, sample_ids=ids)
            loss = run.model(**batch).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            w.step(step, sample_ids=ids, inputs=batch)
            opt.step()
            for sid in ids:
                run.recent[sid] = step
                run.recent.move_to_end(sid)
            while len(run.recent) > c.recent:
                run.recent.popitem(last=False)
            if (step + 1) % c.refresh_every == 0:
                w.probe(run.model, probe_batch, step=step, sample_ids=probe_ids, capture=False)
                log(f"{run_id} step {step + 1} loss {float(loss):.3f} candidates {w.candidates.counts()}")
        for layer in c.layers:  # the final weights: the edit is of the model as it ends
            w.publish_weights(layer, c.steps - 1)
        calibrated = _await_calibrations(w, svc, run_id, c.edit_layers, c.steps - c.refresh_every, 300)
        overhead = w.overhead()
    refreshes = _series(svc, run_id, c.layers)
    final = _final_canaries(run, svc, run_id) if calibrated else {"error": "not every edit layer was calibrated"}
    return {"config": canaries_mod.asdict(c), "run_id": run_id, "refreshes": refreshes,
            "first_alert": _first_alert(svc, run_id), "final": final, "overhead": overhead}


def _final_canaries(run, svc, run_id):
    c = run.c
    snap = svc.edit(run_id, c.edit_layers, f"{run_id}-final")
    weights = svc.weights(snap, run.model)
    ids = list(run.recent)
    texts = run.texts(ids)
    canary_texts = [k.text for k in run.canaries]
    now = {"eval": run.ev.stats(run.evalset), "canary": run.ev.stats(canary_texts), "recent": run.ev.stats(texts),
           "probe": run.ev.stats(run.probes)}
    with swapped(run.model, weights):
        ed = {"eval": run.ev.stats(run.evalset), "canary": run.ev.stats(canary_texts), "recent": run.ev.stats(texts),
              "probe": run.ev.stats(run.probes)}
    rec_b = float(np.mean(recitation(now["canary"], run.canaries, c.seq_len)))
    rec_a = float(np.mean(recitation(ed["canary"], run.canaries, c.seq_len)))
    ppl_b, ppl_a = float(np.exp(now["eval"].mean_loss())), float(np.exp(ed["eval"].mean_loss()))
    return {"snapshot": snap, "rhos": {x["layer"]: x["rho"] for x in snap["layers"]},
            "recitation_before": rec_b, "recitation_after": rec_a, "perplexity_before": ppl_b, "perplexity_after": ppl_a,
            "perplexity_ratio": ppl_a / ppl_b,
            "before_after": {"strict recitation": (rec_b, rec_a), "held-out perplexity / 10": (ppl_b / 10, ppl_a / 10)},
            "detection": canaries_mod.detection(run, ids, now["recent"], ed["recent"], now["probe"], ed["probe"])}


def experiment(name, size, seed, bootstrap, service, token, run_prefix, log=print):
    svc = Service(service, token)
    if name != "canaries":
        raise NotImplementedError("--live runs the canaries experiment; noisy-labels runs offline (see the README)")
    c = canaries_mod.config(size, seed=seed)
    injected = run_canaries(c, bootstrap, svc, f"{run_prefix}-injected", log)
    clean = run_canaries(canaries_mod.config(size, seed=seed, inject_at=-1), bootstrap, svc, f"{run_prefix}-clean", log)
    return {"experiment": "transformer-canaries", "size": size, "seed": seed, "injected": injected, "clean": clean,
            "targets": canaries_mod.targets(injected, clean)}
