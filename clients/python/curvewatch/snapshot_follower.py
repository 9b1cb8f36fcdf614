"""Following the run's edited snapshots, and telling the live guard what became of each one.

The Python side of the Java trainer's SnapshotFollower (SERVICE-CONTRACT §4): the watcher's consumer
hands over this run's SnapshotEvents; between steps, on the training thread, each is verified with
`snapshots.load_snapshot` (uri grammar, sha256, size, tensors of watched layers with the model's
shapes) and, with apply_snapshots=True, loaded into the model (`load_state_dict(strict=False)`: the
tensors are copied into the parameters, so an optimizer keeps its state, Adam's moments included).
Every snapshot handled is reported on guard-decisions as a GuardDecision (source `trainer:<run>`):
APPLIED with the step after which it was loaded (the service re-arms its alerts on it), REFUSED with
the reason, NOT_APPLIED when the run only verifies. As in Java: a snapshot id is handled once
(REMEMBERED_SNAPSHOTS ids remembered, the oldest forgotten first; a repeat is counted, not reported), a
snapshot edited from weights older than those of the last one applied to any of its layers is refused
(`stale`: loading it would undo that one), FAILED events (edit requests the service could not serve) are
counted and skipped, and other runs' snapshots are not even decoded.
"""
import collections
import math
import uuid
import warnings

import torch

from . import _avro
from .limits import ID_PATTERN
from .records import now_ms
from .snapshots import SnapshotError, load_snapshot

REMEMBERED_SNAPSHOTS = 10_000
# Events taken from Kafka but not yet handled (step() handles them all); more are counted and dropped.
MAX_PENDING = 1024
MAX_REASON = 512  # GuardDecision.reason: under 512 characters (ContractChecks.MAX_GUARD_REASON)
_RUN_METADATA = "curvewatch.run_id"


class SnapshotFollower:
    """Verifies (and with apply=True loads) the run's snapshots; `report` gets each GuardDecision encoded."""

    def __init__(self, run_id, model, layers, root, apply, report):
        self.run_id = run_id
        self.model = model
        self.layers = frozenset(layers)
        self.root = root
        self.apply = bool(apply)
        self._report = report
        self._codec = _avro.codec("SnapshotEvent")
        self._decisions = _avro.codec("GuardDecision")
        self._pending = collections.deque()
        self._handled = collections.OrderedDict()  # snapshot id -> sha256, insertion order (bounded)
        self._applied_step = {}  # layer -> step of the weights the last snapshot applied to it was edited from
        self.applications = collections.deque(maxlen=100)  # the latest snapshots applied
        self.counts = collections.Counter()
        self.refusal_reasons = collections.Counter()

    # -- from the consumer ------------------------------------------------------------------------
    def receive(self, key, value):
        """One record of topic snapshots (key = run id; a record without key is kept if its run is ours)."""
        if key is not None and key != self.run_id.encode("utf-8"):
            self.counts["other_runs"] += 1
            return
        try:
            event = self._codec.decode(value)
        except Exception as e:  # noqa: BLE001 - any undecodable record is refused, never raised into training
            self._refuse("?", "format", f"undecodable snapshot event: {e}")
            return
        if key is None and event.get("run_id") != self.run_id:
            self.counts["other_runs"] += 1
            return
        if len(self._pending) >= MAX_PENDING:
            self.counts["dropped_pending"] += 1
            warnings.warn(f"curvewatch: more than {MAX_PENDING} snapshot events waiting for step(); "
                          f"{event.get('snapshot_id')} dropped", RuntimeWarning)
            return
        self._pending.append(event)

    # -- on the training thread -------------------------------------------------------------------
    def handle_pending(self, step):
        """Verifies (and applies) every pending event in order, each taken out first; returns those applied."""
        done = []
        while self._pending:
            applied = self._handle(self._pending.popleft(), int(step))
            if applied is not None:
                done.append(applied)
        return done

    def _handle(self, e, step):
        sid = e["snapshot_id"]
        if e.get("status", "WRITTEN") == "FAILED":
            self.counts["failed_requests"] += 1
            warnings.warn(f"curvewatch: edit request {e.get('idempotency_key')} failed at the service ({sid}): "
                          f"{e.get('reason')}; nothing to load", RuntimeWarning)
            return None
        sha = (e.get("sha256") or "").lower()
        if sid in self._handled:
            self.counts["duplicates"] += 1
            return None
        try:
            state = self._verify(e)
        except SnapshotError as r:
            return self._refused(e, step, r.reason, str(r))
        except Exception as r:  # noqa: BLE001 - training goes on; the guard hears why
            return self._refused(e, step, "format", repr(r))
        layers = sorted({name.rpartition(".")[0] for name in state})
        if not self.apply:
            self._remember(sid, sha)
            self.counts["verified_only"] += 1
            self._send(e, sid, "NOT_APPLIED", step, "verified, not applied: this run only verifies snapshots "
                       "(watch(..., apply_snapshots=False))")
            return None
        for layer in layers:
            last = self._applied_step.get(layer)
            if last is not None and e["step"] < last:
                return self._refused(e, step, "stale", f"edits {layer} as of step {e['step']}, older than the "
                                     f"snapshot last applied to it (step {last})")
        self._remember(sid, sha)  # before loading: a load that fails half way is not retried with the same file
        try:
            with torch.no_grad():
                self.model.load_state_dict(state, strict=False)
        except Exception as ex:  # noqa: BLE001
            self.counts["load_failures"] += 1
            return self._refused(e, step, "load", f"loading failed: {ex!r}")
        for layer in layers:
            self._applied_step[layer] = e["step"]
        applied = {"snapshot_id": sid, "applied_after_step": step, "snapshot_step": e["step"], "layers": layers,
                   "rhos": {lr["layer"]: lr["rho"] for lr in e.get("layers", [])}, "sha256": sha}
        self.applications.append(applied)
        self.counts["applied"] += 1
        self._send(e, sid, "APPLIED", step, f"loaded after step {step} (weights edited from step {e['step']}): "
                   "training continues from the edited weights")
        return applied

    def _verify(self, e):
        """The snapshot's tensors fitted to the model, after the checks Java's SnapshotStore.verify makes."""
        if e.get("run_id") != self.run_id:
            raise SnapshotError(f"snapshot {e['snapshot_id']} is for run {e.get('run_id')!r}, not {self.run_id!r}", "run")
        state, metadata = load_snapshot(e, self.root, model=self.model, with_metadata=True)
        file_run = (metadata or {}).get(_RUN_METADATA)
        if file_run is not None and file_run != self.run_id:
            raise SnapshotError(f"the snapshot holds weights of run {file_run!r}, not {self.run_id!r}", "run")
        for name, tensor in state.items():
            layer, _, leaf = name.rpartition(".")
            if layer not in self.layers or leaf not in ("weight", "bias"):
                raise SnapshotError(f"snapshot holds tensor {name!r}, not a weight or bias of a watched layer",
                                    "unknown-tensor")
            if not bool(torch.isfinite(tensor).all()):
                raise SnapshotError(f"tensor {name!r} has non-finite values", "non-finite")
        weights = {name[:-len(".weight")] for name in state if name.endswith(".weight")}
        if not weights:
            raise SnapshotError("the snapshot holds no <layer>.weight of a watched layer", "format")
        biases = {name[:-len(".bias")] for name in state if name.endswith(".bias")}
        if not biases <= weights:
            raise SnapshotError(f"the snapshot holds biases of {sorted(biases - weights)} without their weights", "format")
        listed = {lr["layer"] for lr in e.get("layers", [])}
        if listed and listed != weights:
            raise SnapshotError(f"the event lists layers {sorted(listed)} but the file holds weights of "
                                f"{sorted(weights)}", "layers")
        return state

    def _refused(self, e, step, reason, message):
        self._refuse(e["snapshot_id"], reason, message)
        self._send(e, e["snapshot_id"], "REFUSED", step, f"{reason}: {message}")
        return None

    def _refuse(self, sid, reason, message):
        self.counts["refused"] += 1
        self.refusal_reasons[reason] += 1
        warnings.warn(f"curvewatch: snapshot {sid} refused ({reason}): {message}", RuntimeWarning)

    def _remember(self, sid, sha):
        self._handled[sid] = sha
        if len(self._handled) > REMEMBERED_SNAPSHOTS:
            self._handled.popitem(last=False)

    def _send(self, e, sid, action, step, reason):
        layers = [{"layer": lr["layer"], "rho": float(lr["rho"])} for lr in e.get("layers", [])
                  if ID_PATTERN.fullmatch(lr["layer"]) and math.isfinite(lr["rho"]) and lr["rho"] <= 1]
        decision = {"id": str(uuid.uuid4()), "run_id": self.run_id,
                    "layer": layers[0]["layer"] if len(layers) == 1 else None, "step": max(0, step),
                    "action": action, "reason": reason if len(reason) < MAX_REASON else reason[:MAX_REASON - 1],
                    "source": "trainer:" + self.run_id, "rule": None, "alert_fingerprint": None,
                    "idempotency_key": _valid_id(e.get("idempotency_key")), "snapshot_id": _valid_id(sid),
                    "layers": layers, "details": {}, "created_ms": now_ms()}
        try:
            self._report(self._decisions.encode(decision))
        except Exception as ex:  # noqa: BLE001 - a lost report never stops training
            self.counts["report_failures"] += 1
            warnings.warn(f"curvewatch: could not report {action} of {sid} to the guard: {ex}", RuntimeWarning)

    def summary(self):
        """Counts (applied, refused, verified_only, duplicates, failed_requests, other_runs, ...), refusal
        reasons, and the latest applications (snapshot_id, applied_after_step, snapshot_step, layers, rhos)."""
        return {"counts": dict(self.counts), "refusal_reasons": dict(self.refusal_reasons),
                "applications": list(self.applications)}


def _valid_id(value):
    return value if isinstance(value, str) and ID_PATTERN.fullmatch(value) else None
