"""load_snapshot: paths stay inside the snapshot store, size and sha256 are checked, Conv1D layout."""
import hashlib
import os
import tempfile
import unittest
from pathlib import Path

import torch

from curvewatch import SnapshotError, _avro, load_snapshot, save_file
from helpers import Mlp


def event(uri, data, **changes):
    e = {"snapshot_id": "snap-1", "run_id": "run-1", "step": 40, "idempotency_key": "k-1", "uri": uri,
         "sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data), "dtype": "FLOAT32",
         "layers": [{"layer": "fc2", "rho": 0.9}], "factor_versions": {"fc2": 3}, "code_version": "test",
         "created_ms": 1}
    e.update(changes)
    return e


class LoadSnapshotTest(unittest.TestCase):
    def setUp(self):
        self._dir = tempfile.TemporaryDirectory()
        self.base = Path(self._dir.name)
        self.root = self.base / "store"
        (self.root / "run-1").mkdir(parents=True)
        torch.manual_seed(0)
        self.model = Mlp(conv=True)  # fc2 is Conv1D: its weight is stored d_in x d_out in the model
        self.edited_fc2 = torch.randn(5, 5)  # as the service writes it: d_out x d_in
        self.path = self.root / "run-1" / "snap-1.safetensors"
        save_file({"fc2.weight": self.edited_fc2, "fc2.bias": self.model.fc2.bias.detach()}, self.path,
                  {"curvewatch.run_id": "run-1", "rho.fc2": "0.9"})
        self.data = self.path.read_bytes()

    def tearDown(self):
        self._dir.cleanup()

    def test_a_failed_event_is_refused_with_its_reason_and_no_file_is_read(self):
        failed = event("", b"", status="FAILED", reason="NOT_READY: layer fc2 has no calibrated rho yet", sha256="",
                       size_bytes=0)
        raw = _avro.codec("SnapshotEvent").encode(failed)
        for source in (failed, raw):
            with self.assertRaisesRegex(SnapshotError, "k-1.*failed: NOT_READY: layer fc2 has no calibrated rho yet"):
                load_snapshot(source, self.root)
        rollback = event("run-1/snap-1.safetensors", self.data, kind="ROLLBACK", restores="snap-0")
        self.assertIn("fc2.weight", load_snapshot(rollback, self.root))

    def test_an_event_loads_into_the_model_with_conv1d_transposed_back(self):
        raw = _avro.codec("SnapshotEvent").encode(event("run-1/snap-1.safetensors", self.data))
        for source in (event("run-1/snap-1.safetensors", self.data), raw):
            state, meta = load_snapshot(source, self.root, model=self.model, with_metadata=True)
            self.assertEqual(meta["rho.fc2"], "0.9")
            missing, unexpected = self.model.load_state_dict(state, strict=False)
            self.assertEqual(unexpected, [])
            self.assertIn("fc1.weight", missing)
            self.assertTrue(torch.equal(self.model.fc2.weight.detach(), self.edited_fc2.t()))
        # without a model the tensors come as stored (d_out x d_in)
        self.assertTrue(torch.equal(load_snapshot(event(str(self.path.relative_to(self.root)), self.data),
                                                  self.root)["fc2.weight"], self.edited_fc2))

    def test_an_events_uri_is_the_grammar_only_and_a_path_by_hand_may_be_absolute_or_a_file_uri(self):
        # docs/SPEC-SHARED-RULES.md: a record's uri is exactly <run_id>/<snapshot_id>.safetensors (Java SnapshotUris);
        # a path the caller passes by hand is the caller's own input and may name the file in the store any way
        for uri in (self.path.as_uri(), str(self.path), "run-1/./snap-1.safetensors"):
            with self.subTest(uri=uri):
                with self.assertRaisesRegex(SnapshotError, "run_id>/<snapshot_id>|cannot name a file"):
                    load_snapshot(event(uri, self.data), self.root)
                self.assertIn("fc2.bias", load_snapshot(uri, self.root))
        with self.assertRaisesRegex(SnapshotError, "not the event's own"):
            load_snapshot(event("run-1/snap-1.safetensors", self.data, snapshot_id="snap-2"), self.root)

    def test_paths_leaving_the_store_are_refused(self):
        outside = self.base / "outside.safetensors"
        save_file({"fc2.weight": torch.zeros(5, 5)}, outside)
        (self.root / "run-1" / "link.safetensors").symlink_to(outside)
        (self.root / "dirlink").symlink_to(self.base / "elsewhere", target_is_directory=True)
        (self.base / "elsewhere").mkdir()
        (self.base / "elsewhere" / "snap-1.safetensors").write_bytes(self.data)
        # events in the grammar whose file lies outside through a link
        for uri, sid, run in (("run-1/link.safetensors", "link", "run-1"), ("dirlink/snap-1.safetensors", "snap-1",
                                                                            "dirlink")):
            with self.subTest(uri=uri):
                with self.assertRaisesRegex(SnapshotError, "outside the snapshot store"):
                    load_snapshot(event(uri, self.data, snapshot_id=sid, run_id=run), self.root)
        # outside the grammar, as an event's uri and as a path by hand
        for uri in ("../outside.safetensors", "run-1/../../outside.safetensors", str(outside), outside.as_uri(),
                    "file://evil.example/x", "https://example.com/x.safetensors", "s3://bucket/x", "", ".",
                    "run-1/\0x"):
            with self.subTest(uri=uri):
                with self.assertRaises(SnapshotError):
                    load_snapshot(event(uri, self.data), self.root)
                with self.assertRaises(SnapshotError):
                    load_snapshot(uri, self.root)

    def test_size_and_sha256_are_checked_on_the_bytes_read(self):
        uri = "run-1/snap-1.safetensors"
        with self.assertRaisesRegex(SnapshotError, "sha256"):
            load_snapshot(event(uri, self.data, sha256="0" * 64), self.root)
        with self.assertRaisesRegex(SnapshotError, "bytes"):
            load_snapshot(event(uri, self.data, size_bytes=len(self.data) + 1), self.root)
        tampered = bytearray(self.data)
        tampered[-1] ^= 1
        expected = event(uri, self.data)
        self.path.write_bytes(bytes(tampered))  # same size, other content
        with self.assertRaisesRegex(SnapshotError, "sha256"):
            load_snapshot(expected, self.root)
        # a plain path: checked only against what the caller says
        self.assertIn("fc2.weight", load_snapshot(uri, self.root))
        with self.assertRaisesRegex(SnapshotError, "sha256"):
            load_snapshot(uri, self.root, sha256=expected["sha256"])

    def test_tensors_must_fit_the_model(self):
        for tensors, reason in (({"fc9.weight": torch.zeros(5, 5)}, "not in the model"),
                                ({"fc1.weight": torch.zeros(6, 5)}, r"is \(6, 5\)")):
            with self.subTest(reason=reason):
                save_file(tensors, self.path)
                data = self.path.read_bytes()
                with self.assertRaisesRegex(SnapshotError, reason):
                    load_snapshot(event("run-1/snap-1.safetensors", data), self.root, model=self.model)
        self.path.write_bytes(b"\x10" + b"\0" * 7 + b"not json")
        with self.assertRaisesRegex(SnapshotError, "not a valid safetensors"):
            load_snapshot("run-1/snap-1.safetensors", self.root)
        os.mkdir(self.root / "run-1" / "adir")
        with self.assertRaises((SnapshotError, OSError)):
            load_snapshot("run-1/adir", self.root)


if __name__ == "__main__":
    unittest.main()
