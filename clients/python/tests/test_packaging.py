"""The package's build backend (wheel and sdist with the schemas bundled, no network) and the command
line against a stand-in of the service's REST API (the real service: TransformerExampleIT)."""
import base64
import contextlib
import hashlib
import http.server
import io
import json
import os
import sys
import tarfile
import tempfile
import threading
import unittest
import zipfile
from pathlib import Path
from unittest import mock

from curvewatch import _avro, cli
from curvewatch.version import __version__

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "_backend"))
import curvewatch_backend  # noqa: E402


class BackendTest(unittest.TestCase):
    def test_the_wheel_holds_the_modules_the_schemas_and_valid_metadata(self):
        with tempfile.TemporaryDirectory() as d:
            self.assertEqual(curvewatch_backend.get_requires_for_build_wheel(), [])  # nothing to download
            name = curvewatch_backend.build_wheel(d)
            self.assertEqual(name, f"curvewatch-{__version__}-py3-none-any.whl")
            with zipfile.ZipFile(Path(d) / name) as z:
                names = set(z.namelist())
                modules = {f"curvewatch/{p.name}" for p in (ROOT / "curvewatch").glob("*.py")}
                self.assertLessEqual(modules, names)
                listed = _avro.listed_files(_avro.repo_schema_dir())
                self.assertLessEqual({f"curvewatch/schemas/{f}" for f in listed + ["index.txt"]}, names)
                info = f"curvewatch-{__version__}.dist-info"
                metadata = z.read(f"{info}/METADATA").decode()
                self.assertIn(f"Version: {__version__}", metadata)
                self.assertIn("Requires-Dist: confluent-kafka", metadata)
                for line in z.read(f"{info}/RECORD").decode().splitlines():
                    path, digest, size = line.split(",")
                    if digest:
                        data = z.read(path)
                        expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
                        self.assertEqual((digest, int(size)), (f"sha256={expected}", len(data)), path)
                # the packaged schemas give the repository's codecs
                target = Path(d) / "unpacked"
                z.extractall(target)
            with mock.patch.dict(os.environ, {"CURVEWATCH_SCHEMA_DIR": str(target / "curvewatch/schemas")}), \
                    mock.patch.dict(_avro._codecs, clear=True):
                self.assertEqual(_avro.schema_dir(), target / "curvewatch/schemas")
                packaged = _avro.codec("Capture").fingerprint
            self.assertEqual(packaged, _avro.codec("Capture").fingerprint)

    def test_the_sdist_carries_the_schemas_and_builds_a_wheel_on_its_own(self):
        with tempfile.TemporaryDirectory() as d:
            name = curvewatch_backend.build_sdist(d)
            with tarfile.open(Path(d) / name) as tar:
                tar.extractall(Path(d) / "src")
            unpacked = Path(d) / "src" / name[:-len(".tar.gz")]
            self.assertTrue((unpacked / "curvewatch/schemas/index.txt").is_file())
            # the sdist's backend, away from the repository, finds the schemas inside the sdist
            with mock.patch.object(curvewatch_backend, "ROOT", unpacked), \
                    mock.patch.object(curvewatch_backend, "PACKAGE", unpacked / "curvewatch"), \
                    mock.patch.object(curvewatch_backend, "REPO_SCHEMAS", Path(d) / "nowhere"):
                wheel = curvewatch_backend.build_wheel(d)
            with zipfile.ZipFile(Path(d) / wheel) as z:
                self.assertIn("curvewatch/schemas/Capture.v1.avsc", z.namelist())


class Service(http.server.BaseHTTPRequestHandler):
    """A stand-in for the service's REST API (SERVICE-CONTRACT §5 shapes)."""
    snapshot = b"safetensors bytes"
    routes = {
        "/api/runs/r1": {"run_id": "r1", "status": "RUNNING", "model": "m", "last_step": 7, "layers": [
            {"name": "blocks.1.mlp.fc", "d_in": 4, "d_out": 8, "factor_version": -1, "factor_tokens": 0,
             "calibrated_rho": None, "status": "no factors: 1560 dead letter(s), the latest from captures: KEY_MISMATCH",
             "dead_letters": {"total": 1560, "by_reason": {"KEY_MISMATCH": 1560}, "by_topic": {"captures": 1560},
                              "last_reason_code": "KEY_MISMATCH", "last_reason": "key belongs to partition 2 of 4",
                              "last_topic": "curvewatch.captures", "last_component": "worker-1", "last_ms": 1}},
            {"name": "blocks.0.mlp.fc", "d_in": 4, "d_out": 8, "factor_version": 3, "factor_tokens": 96,
             "calibrated_rho": 0.9, "status": "calibrated", "calibration_problem": "constant probe loss",
             "dead_letters": {"total": 0, "by_reason": {}, "by_topic": {}}}],
            "dead_letters": {"total": 0, "by_reason": {}, "by_topic": {}}},
        "/api/runs/r1/snapshots": [{"snapshot_id": "s1", "step": 5, "sha256": hashlib.sha256(snapshot).hexdigest(),
                                    "size_bytes": len(snapshot), "layers": [{"layer": "fc", "rho": 0.9}],
                                    "idempotency_key": "k"}],
        "/api/alerts?run=r1&limit=50": [{"status": "FIRING", "severity": "CRITICAL", "run_id": "r1", "layer": "fc",
                                         "step": 5, "summary": "gap jump", "rule": "gap-jump",
                                         "signal": "memorization_gap", "value": 0.3, "threshold": 0.1}],
    }

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/api/snapshots/s1/file":
            if self.headers.get("Authorization") != "Bearer t0k":
                return self._send(401, json.dumps({"error": "missing or wrong Bearer token"}).encode())
            return self._send(200, self.snapshot, "application/octet-stream")
        if self.path.startswith("/api/events"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            alert = dict(self.routes["/api/alerts?run=r1&limit=50"][0], step=9)
            self.wfile.write(b": ping\n\nevent: signal\ndata: {}\n\nevent: alert\ndata: " + json.dumps(alert).encode()
                             + b"\n\n")
            self.wfile.flush()
            return None
        if self.path in self.routes:
            return self._send(200, json.dumps(self.routes[self.path]).encode())
        return self._send(404, json.dumps({"error": f"unknown run '{self.path}'"}).encode())

    def _send(self, code, body, kind="application/json"):
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class CliTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Service)
        threading.Thread(target=cls.server.serve_forever, daemon=True).start()
        cls.url = f"http://127.0.0.1:{cls.server.server_address[1]}"

    @classmethod
    def tearDownClass(cls):
        cls.server.shutdown()
        cls.server.server_close()

    def run_cli(self, *argv):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(["--service", self.url, *argv])
        return code, out.getvalue(), err.getvalue()

    def test_status_shows_layers_and_dead_letters(self):
        code, out, _ = self.run_cli("status", "r1")
        self.assertEqual(code, 0)
        self.assertIn("no factors: 1560 dead letter(s)", out)
        self.assertIn("1560 dead letter(s) (KEY_MISMATCH 1560); the latest from curvewatch.captures by worker-1: "
                      "KEY_MISMATCH: key belongs to partition 2 of 4", out)
        self.assertIn("calibration problem: constant probe loss", out)
        self.assertNotIn("dead letters: none", out)
        code, _, err = self.run_cli("status", "nope")
        self.assertEqual(code, 1)
        self.assertIn("404", err)

    def test_alerts_and_following_the_live_stream(self):
        code, out, _ = self.run_cli("alerts", "--run", "r1")
        self.assertEqual((code, out.count("CRITICAL")), (0, 1))
        code, out, _ = self.run_cli("alerts", "--run", "r1", "--follow", "--max-alerts", "1")
        self.assertEqual(code, 0)
        self.assertIn("step 5", out)
        self.assertIn("step 9", out)  # the one from the live stream

    def test_download_needs_the_token_and_checks_the_listed_sha256(self):
        with tempfile.TemporaryDirectory() as d:
            target = Path(d) / "s1.safetensors"
            code, _, err = self.run_cli("download", "s1", "-o", str(target))
            self.assertEqual(code, 1)
            self.assertIn("Bearer token", err)
            code, _, err = self.run_cli("download", "s1", "-o", str(target), "--token", "wrong")
            self.assertIn("401", err)
            code, out, _ = self.run_cli("download", "s1", "-o", str(target), "--token", "t0k", "--run", "r1")
            self.assertEqual((code, target.read_bytes()), (0, Service.snapshot))
            self.assertIn("as listed", out)
            with mock.patch.dict(Service.routes["/api/runs/r1/snapshots"][0], {"sha256": "0" * 64}):
                code, _, err = self.run_cli("download", "s1", "-o", str(target), "--token", "t0k", "--run", "r1")
            self.assertEqual(code, 1)
            self.assertIn("file removed", err)
            self.assertFalse(target.exists())

    def test_help_and_version(self):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), self.assertRaises(SystemExit):
            cli.main(["--version"])
        self.assertIn(__version__, out.getvalue())


if __name__ == "__main__":
    unittest.main()
