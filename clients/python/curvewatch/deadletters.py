"""Dead letters of this run's records: why a layer has no factors, said where the user looks.

Every component that cannot process a record sends it to `<prefix>dead-letters` with a reason,
keyed by the record's original key (`run/layer` for captures and weights, `run` for probe results
and runs). The watcher follows that topic from the moment it starts and keeps the ones keyed by
its run: counted by topic, layer and reason code, warned about once per kind with the reason
(e.g. every capture of a layer refused with KEY_MISMATCH: the layer can never get factors), and
listed by `Watcher.dead_letters()`.
"""
import warnings

from . import _avro


class DeadLetters:
    def __init__(self, run_id, prefix):
        self.run_id = run_id
        self.prefix = prefix
        self._key = run_id.encode("utf-8")
        self._layer_prefix = self._key + b"/"
        self._codec = _avro.codec("DeadLetter")
        self._kinds = {}  # (topic, layer, reason_code) -> {"count", "reason", "component"}
        self.undecodable = 0

    def ours(self, key):
        return key is not None and (key == self._key or key.startswith(self._layer_prefix))

    def receive(self, key, value):
        """One record of the dead-letters topic; returns True if it concerns this run."""
        if not self.ours(key):
            return False
        layer = key[len(self._layer_prefix):].decode("utf-8", "replace") if key != self._key else ""
        try:
            d = self._codec.decode(value)
        except Exception as e:  # noqa: BLE001 - a dead letter we cannot read is still reported
            self.undecodable += 1
            d = {"topic": "?", "reason_code": "UNREADABLE", "reason": f"the dead letter itself did not decode: {e}",
                 "component": "?"}
        topic = d["topic"][len(self.prefix):] if d["topic"].startswith(self.prefix) else d["topic"]
        kind = (topic, layer, d["reason_code"])
        entry = self._kinds.get(kind)
        if entry is None:
            entry = self._kinds[kind] = {"count": 0, "reason": d["reason"], "component": d["component"]}
            what = f"layer {layer!r}" if layer else "run-level"
            consequence = " (this is why that layer has no factors)" if topic == "captures" else ""
            warnings.warn(f"curvewatch: {what} {topic} records of run {self.run_id!r} are dead-lettered by "
                          f"{d['component']}: {d['reason_code']}: {d['reason']}{consequence}; see w.dead_letters()",
                          RuntimeWarning, stacklevel=4)
        entry["count"] += 1
        return True

    def summary(self):
        """[{topic, layer, reason_code, count, reason, component}], most frequent first."""
        rows = [{"topic": t, "layer": layer, "reason_code": code, **entry}
                for (t, layer, code), entry in self._kinds.items()]
        return sorted(rows, key=lambda r: -r["count"])

    def total(self):
        return sum(e["count"] for e in self._kinds.values())
