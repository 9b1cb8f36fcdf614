"""Following snapshots: a watched run applies its edited snapshots between steps (or only verifies
them) and reports each to the live guard as a GuardDecision, with the Java SnapshotFollower's rules."""
import hashlib
import os
import tempfile
import unittest
from pathlib import Path
from unittest import mock

import torch

from curvewatch import Publisher, Watcher, _avro, save_file, snapshot_follower
from curvewatch.partitioning import partition_for_key
from helpers import FakeConsumer, Mlp, RecordingProducer

RUN = "run-1"
SNAPSHOTS = "curvewatch.snapshots"
DECISIONS = "curvewatch.guard-decisions"
PARTITIONS = {"curvewatch." + t: n for t, n in (("captures", 4), ("weights", 4), ("runs", 1), ("probe-results", 4),
                                                  ("guard-decisions", 1))}


class FollowSnapshotsTest(unittest.TestCase):
    def setUp(self):
        self._dir = tempfile.TemporaryDirectory()
        self.root = Path(self._dir.name) / "store"
        (self.root / RUN).mkdir(parents=True)
        torch.manual_seed(0)
        self.model = Mlp(conv=True)  # fc2 is Conv1D: stored d_in x d_out in the model, d_out x d_in in snapshots
        self.events = _avro.codec("SnapshotEvent")
        self.decisions_codec = _avro.codec("GuardDecision")

    def tearDown(self):
        self._dir.cleanup()

    def watcher(self, **options):
        self.producer, self.consumer = RecordingProducer(partitions=PARTITIONS), FakeConsumer()
        options.setdefault("apply_snapshots", True)
        w = Watcher(self.model, ["fc1", "fc2"], RUN, publisher=Publisher({}, producer=self.producer),
                    consumer=self.consumer, snapshot_dir=str(self.root), **options)
        self.addCleanup(w.close)
        return w

    def snapshot(self, sid, tensors, step=40, run=RUN, rhos=None, **changes):
        """Writes <root>/<run>/<sid>.safetensors with the client's writer; returns its SnapshotEvent."""
        path = self.root / run / f"{sid}.safetensors"
        save_file(tensors, path, {"curvewatch.run_id": run})
        data = path.read_bytes()
        layers = sorted({name.rpartition(".")[0] for name in tensors})
        event = {"snapshot_id": sid, "run_id": run, "step": step, "idempotency_key": f"k-{sid}",
                 "uri": f"{run}/{sid}.safetensors", "sha256": hashlib.sha256(data).hexdigest(),
                 "size_bytes": len(data), "dtype": "FLOAT32",
                 "layers": [{"layer": layer, "rho": (rhos or {}).get(layer, 0.9)} for layer in layers],
                 "factor_versions": {layer: 1 for layer in layers}, "code_version": "test", "created_ms": 1}
        event.update(changes)
        return event

    def push(self, event, key=RUN):
        self.consumer.push(key, self.events.encode(event), topic=SNAPSHOTS)

    def decisions(self):
        out = []
        for (topic, key, value), partition in zip(self.producer.messages, self.producer.partitions):
            if topic == DECISIONS:
                self.assertEqual(RUN.encode(), key, "keyed by the run, as Java's CapturePublisher.publishGuardDecision")
                self.assertEqual(partition_for_key(key, 1), partition)
                out.append(self.decisions_codec.decode(value))
        return out

    def test_an_edited_snapshot_is_applied_after_the_step_and_reported_applied(self):
        w = self.watcher()
        opt = torch.optim.Adam(self.model.parameters(), lr=0.01)
        self.model(torch.randn(3, 6)).sum().backward()
        opt.step()
        moments = opt.state[self.model.fc1.weight]["exp_avg"].clone()
        fc1_weight = self.model.fc1.weight
        edited_fc1, edited_fc2 = torch.randn(5, 6), torch.randn(5, 5)
        self.push(self.snapshot("snap-1", {"fc1.weight": edited_fc1, "fc1.bias": torch.ones(5),
                                           "fc2.weight": edited_fc2}, rhos={"fc1": 0.8, "fc2": 0.7}))
        w.step(7)
        self.assertTrue(torch.equal(self.model.fc1.weight.detach(), edited_fc1))
        self.assertTrue(torch.equal(self.model.fc1.bias.detach(), torch.ones(5)))
        self.assertTrue(torch.equal(self.model.fc2.weight.detach(), edited_fc2.t()), "Conv1D's layout restored")
        self.assertIs(fc1_weight, self.model.fc1.weight, "copied into the parameter: the optimizer still holds it")
        self.assertTrue(torch.equal(moments, opt.state[self.model.fc1.weight]["exp_avg"]), "Adam's moments are kept")
        [d] = self.decisions()
        self.assertEqual(("APPLIED", 7, "snap-1", "k-snap-1", "trainer:" + RUN, RUN),
                         (d["action"], d["step"], d["snapshot_id"], d["idempotency_key"], d["source"], d["run_id"]))
        self.assertIsNone(d["layer"], "a snapshot of two layers is about the run")
        self.assertEqual([{"layer": "fc1", "rho": 0.8}, {"layer": "fc2", "rho": 0.7}], d["layers"])
        self.assertIn("after step 7", d["reason"])
        summary = w.snapshots()
        self.assertEqual(1, summary["counts"]["applied"])
        self.assertEqual([("snap-1", 7, 40, ["fc1", "fc2"])],
                         [(a["snapshot_id"], a["applied_after_step"], a["snapshot_step"], a["layers"])
                          for a in summary["applications"]])

    def test_a_snapshot_is_applied_once_and_an_older_edit_is_refused_as_stale(self):
        w = self.watcher()
        first = self.snapshot("snap-1", {"fc1.weight": torch.randn(5, 6)}, step=40)
        self.push(first)
        w.step(10)
        with torch.no_grad():
            self.model.fc1.weight.add_(1.0)  # training goes on from the edited weights
        trained = self.model.fc1.weight.detach().clone()
        self.push(first)  # published again (a retry): not loaded again, which would undo the training since
        self.push(self.snapshot("snap-0", {"fc1.weight": torch.randn(5, 6)}, step=30))
        self.push(self.snapshot("snap-2", {"fc2.weight": torch.randn(5, 5)}, step=30))  # another layer: not stale
        with self.assertWarnsRegex(RuntimeWarning, "snap-0 refused .stale"):
            w.step(11)
        self.assertTrue(torch.equal(self.model.fc1.weight.detach(), trained))
        decisions = self.decisions()
        self.assertEqual([("APPLIED", "snap-1", 10), ("REFUSED", "snap-0", 11), ("APPLIED", "snap-2", 11)],
                         [(d["action"], d["snapshot_id"], d["step"]) for d in decisions])
        self.assertEqual("fc1", decisions[1]["layer"])
        self.assertTrue(decisions[1]["reason"].startswith("stale: edits fc1 as of step 30"), decisions[1]["reason"])
        counts = w.snapshots()["counts"]
        self.assertEqual((2, 1, 1), (counts["applied"], counts["duplicates"], counts["refused"]))

    def test_bad_snapshots_are_refused_with_the_reason_and_leave_the_model_as_it_was(self):
        w = self.watcher()
        before = {k: v.clone() for k, v in self.model.state_dict().items()}
        outside = Path(self._dir.name) / "elsewhere.safetensors"
        save_file({"fc1.weight": torch.randn(5, 6)}, outside)
        linked = self.snapshot("linked", {"fc1.weight": torch.randn(5, 6)})  # then replaced by a link out of the store
        (self.root / RUN / "linked.safetensors").unlink()
        os.symlink(outside, self.root / RUN / "linked.safetensors")
        cases = [
            ("sha256", self.snapshot("bad-digest", {"fc1.weight": torch.randn(5, 6)}, sha256="0" * 64)),
            ("size", self.snapshot("bad-size", {"fc1.weight": torch.randn(5, 6)}, size_bytes=12)),
            ("path", self.snapshot("bad-uri", {"fc1.weight": torch.randn(5, 6)}, uri=f"{RUN}/../{RUN}/bad-uri.safetensors")),
            ("path", linked),
            ("missing", dict(self.snapshot("gone", {"fc1.weight": torch.randn(5, 6)}), uri=f"{RUN}/none.safetensors",
                             snapshot_id="none")),
            ("shape", self.snapshot("bad-shape", {"fc1.weight": torch.randn(6, 6)})),
            ("unknown-tensor", self.snapshot("not-watched", {"out.weight": torch.randn(4, 5)})),
            ("non-finite", self.snapshot("nan", {"fc1.weight": torch.full((5, 6), float("nan"))})),
            ("layers", self.snapshot("listed", {"fc1.weight": torch.randn(5, 6)}, layers=[{"layer": "fc2", "rho": 0.9}])),
        ]
        for _, event in cases:
            self.push(event)
        with self.assertWarns(RuntimeWarning):
            w.step(3)
        for name, tensor in self.model.state_dict().items():
            self.assertTrue(torch.equal(before[name], tensor), name)
        decisions = self.decisions()
        self.assertEqual(["REFUSED"] * len(cases), [d["action"] for d in decisions])
        for (reason, event), d in zip(cases, decisions):
            self.assertEqual(event["snapshot_id"], d["snapshot_id"])
            self.assertTrue(d["reason"].startswith(reason + ": "), f"{event['snapshot_id']}: {d['reason']}")
            self.assertLess(len(d["reason"]), 512)
        self.assertEqual(len(cases), w.snapshots()["counts"]["refused"])

    def test_a_run_that_only_verifies_reports_not_applied(self):
        w = self.watcher(apply_snapshots=False)
        before = self.model.fc1.weight.detach().clone()
        self.push(self.snapshot("snap-1", {"fc1.weight": torch.randn(5, 6)}))
        w.step(5)
        self.assertTrue(torch.equal(self.model.fc1.weight.detach(), before))
        [d] = self.decisions()
        self.assertEqual(("NOT_APPLIED", 5, "fc1"), (d["action"], d["step"], d["layer"]))
        self.assertIn("only verifies", d["reason"])

    def test_other_runs_and_failed_requests_are_not_reported(self):
        w = self.watcher()
        (self.root / "run-2").mkdir()
        self.push(self.snapshot("theirs", {"fc1.weight": torch.randn(5, 6)}, run="run-2"), key="run-2")
        self.push(self.snapshot("theirs-unkeyed", {"fc1.weight": torch.randn(5, 6)}, run="run-2"), key=None)
        self.push(dict(self.snapshot("failed", {"fc1.weight": torch.randn(5, 6)}), status="FAILED", uri="",
                       sha256="", size_bytes=0, reason="NOT_READY: no eigenbasis"))
        with self.assertWarnsRegex(RuntimeWarning, "NOT_READY"):
            w.step(1)
        self.assertEqual([], self.decisions())
        counts = w.snapshots()["counts"]
        self.assertEqual((2, 1), (counts["other_runs"], counts["failed_requests"]))

    def test_remembered_ids_are_bounded(self):
        w = self.watcher()
        with mock.patch.object(snapshot_follower, "REMEMBERED_SNAPSHOTS", 3):
            for i in range(6):
                self.push(self.snapshot(f"s{i}", {"fc2.bias": torch.zeros(5), "fc2.weight": torch.randn(5, 5)},
                                        step=40 + i))
            w.step(2)
        self.assertEqual(6, w.snapshots()["counts"]["applied"])
        self.assertEqual(["s3", "s4", "s5"], list(w._snapshots._handled))

    def test_options(self):
        consumer = FakeConsumer()
        publisher = Publisher({}, producer=RecordingProducer(partitions=PARTITIONS))
        with self.assertRaisesRegex(ValueError, "snapshot_dir"):
            Watcher(self.model, ["fc1"], RUN, publisher=publisher, consumer=consumer, apply_snapshots=True)
        w = Watcher(self.model, ["fc1"], RUN, publisher=publisher, consumer=consumer)
        self.addCleanup(w.close)
        self.assertIsNone(w.snapshots(), "without snapshot_dir nothing is followed")


if __name__ == "__main__":
    unittest.main()
