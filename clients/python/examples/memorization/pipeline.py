"""A throwaway Curvewatch pipeline for the live experiments: `./curvewatch broker`, `worker`,
`streams` and `service` as child processes on free ports under one data directory, the service
with `pipeline/service.properties`, `pipeline/alert-rules.properties` and an edit token. Stopped (SIGTERM, then kill) on exit.

    with Pipeline(Path("/tmp/cw-exp")) as p:
        p.bootstrap, p.url, p.token
"""
import os
import re
import secrets
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[4]
SERVICE_PROPERTIES = Path(__file__).resolve().parent / "pipeline" / "service.properties"
ALERT_RULES = Path(__file__).resolve().parent / "pipeline" / "alert-rules.properties"


class Pipeline:
    def __init__(self, data_dir, heap={"broker": "1g", "worker": "1g", "streams": "512m", "service": "2g"}, log=print):
        self.dir = Path(data_dir)
        self.heap, self.log = heap, log
        self.procs = []
        self.token = secrets.token_hex(16)
        self.bootstrap = self.url = None

    def _start(self, name, *args, ready=None, timeout=180):
        env = {**os.environ, "CURVEWATCH_JAVA_OPTS": f"-Xmx{self.heap[name]}"}
        out = open(self.dir / f"{name}.log", "w")
        p = subprocess.Popen([str(REPO / "curvewatch"), name, *args], stdout=out, stderr=subprocess.STDOUT, env=env,
                             start_new_session=True)
        self.procs.append((name, p, out))
        if ready is None:
            return None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(ready, (self.dir / f"{name}.log").read_text())
            if m:
                return m.group(1)
            if p.poll() is not None:
                raise RuntimeError(f"{name} exited ({p.returncode}): see {self.dir / (name + '.log')}")
            time.sleep(0.5)
        raise TimeoutError(f"{name} not ready within {timeout} s: see {self.dir / (name + '.log')}")

    def __enter__(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            self.bootstrap = self._start("broker", "--data-dir", str(self.dir / "broker"), "--port", "0",
                                         "--controller-port", "0", ready=r"bootstrap=(\S+)")
            self._start("worker", "--bootstrap", self.bootstrap, "--instance-id", "experiments-worker")
            self._start("streams", "--bootstrap", self.bootstrap, "--set", f"state.dir={self.dir / 'streams'}")
            self.url = self._start("service", "--bootstrap", self.bootstrap, "--http-port", "0", "--config",
                                   str(SERVICE_PROPERTIES), "--snapshot-dir", str(self.dir / "snapshots"),
                                   "--set", f"auth.tokens={self.token}", "--set", f"alerts.rules.file={ALERT_RULES}", ready=r"curvewatch service: (http://\S+)")
            self._await_health(180)
            self.log(f"pipeline: broker {self.bootstrap}, service {self.url} (logs in {self.dir})")
            return self
        except BaseException:
            self.__exit__(None, None, None)
            raise

    def _await_health(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url.rstrip("/") + "/health", timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(1)
        raise TimeoutError(f"the service at {self.url} was not healthy within {timeout} s")

    def __exit__(self, *exc):
        for name, p, out in reversed(self.procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(60)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
            out.close()
        self.procs = []
        return False
