"""`python3 -m curvewatch`: a run's status, its alerts and its snapshots, through the service's REST API.

Standard library only (urllib): it works wherever the package is installed, without Kafka.
"""
import argparse
import hashlib
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from .version import __version__

DEFAULT_SERVICE = "http://127.0.0.1:8080"


class ApiError(RuntimeError):
    """The service answered with an error status (its {"error": ...} text included) or not at all."""


class Api:
    def __init__(self, base, token=None, timeout=30.0):
        self.base = base.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _open(self, path, auth=False, stream=False):
        request = urllib.request.Request(self.base + path)
        if auth:
            if not self.token:
                raise ApiError("this endpoint needs a Bearer token: --token, --token-file or $CURVEWATCH_TOKEN")
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            return urllib.request.urlopen(request, timeout=None if stream else self.timeout)
        except urllib.error.HTTPError as e:
            body = e.read().decode("utf-8", "replace")
            try:
                body = json.loads(body).get("error", body)
            except ValueError:
                pass
            raise ApiError(f"{e.code} from {path}: {body}") from None
        except urllib.error.URLError as e:
            raise ApiError(f"cannot reach the service at {self.base}: {e.reason}") from None

    def get(self, path):
        with self._open(path) as r:
            return json.loads(r.read().decode("utf-8"))

    def events(self, run):
        """(event, data) pairs of the live stream /api/events?run= (Server-Sent Events), as they come."""
        with self._open("/api/events?" + urllib.parse.urlencode({"run": run}), stream=True) as r:
            event, data = None, []
            for raw in r:
                line = raw.decode("utf-8").rstrip("\r\n")
                if not line:
                    if event and data:
                        yield event, json.loads("\n".join(data))
                    event, data = None, []
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())

    def download(self, snapshot_id, target):
        """Writes the snapshot file to target (via a temporary file); returns (bytes, sha256)."""
        path = "/api/snapshots/" + urllib.parse.quote(snapshot_id, safe="") + "/file"
        digest, size = hashlib.sha256(), 0
        partial = Path(str(target) + ".part")
        with self._open(path, auth=True) as r, open(partial, "wb") as out:
            for chunk in iter(lambda: r.read(1 << 20), b""):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
        os.replace(partial, target)
        return size, digest.hexdigest()


def _q(value):
    return urllib.parse.quote(value, safe="")


def _print(obj, as_json):
    if as_json:
        print(json.dumps(obj, indent=2))
        return True
    return False


def cmd_runs(api, args):
    runs = api.get("/api/runs")
    if _print(runs, args.json):
        return 0
    for r in runs:
        print(f"{r['run_id']:30s} {r.get('status', ''):9s} step {r.get('last_step', '')}  {r.get('model', '')} "
              f"({len(r.get('layers', []))} layers, {r.get('firing_alerts', 0)} firing alerts)")
    return 0


def _dead_letters(d):
    """One line of a dead_letters summary ({total, by_reason, by_topic, last_*}), or None when there are none."""
    if not isinstance(d, dict) or not d.get("total"):
        return None
    reasons = ", ".join(f"{code} {n}" for code, n in sorted(d.get("by_reason", {}).items()))
    return (f"{d['total']} dead letter(s) ({reasons}); the latest from {d.get('last_topic', '?')} by "
            f"{d.get('last_component', '?')}: {d.get('last_reason_code', '')}: {d.get('last_reason', '')}")


def cmd_status(api, args):
    run = api.get("/api/runs/" + _q(args.run))
    if _print(run, args.json):
        return 0
    print(f"run {run['run_id']}: {run.get('status', '?')}, model {run.get('model', '?')}, last step "
          f"{run.get('last_step', '?')}")
    dead = 0
    for layer in run.get("layers", []):
        rho = layer.get("calibrated_rho")
        print(f"  {layer['name']}  {layer.get('d_in', '?')} -> {layer.get('d_out', '?')}: {layer.get('status', '?')}")
        print(f"      factors v{layer.get('factor_version', '-')} ({layer.get('factor_tokens', 0)} tokens), calibrated "
              f"rho {'-' if rho is None else rho}, candidates sent {layer.get('candidates_sent', '-')} declined "
              f"{layer.get('candidates_declined', '-')}")
        for key in ("calibration_problem", "warning"):
            if layer.get(key):
                print(f"      {key.replace('_', ' ')}: {layer[key]}")
        line = _dead_letters(layer.get("dead_letters"))
        if line:
            dead += 1
            print(f"      {line}")
    line = _dead_letters(run.get("dead_letters"))
    if line:
        dead += 1
        print(f"  run-level: {line}")
    if not dead:
        print("  dead letters: none")
    return 0


def _alert_line(a):
    return (f"{a.get('status', '?'):8s} {a.get('severity', '?'):8s} run {a.get('run_id')} layer {a.get('layer')} "
            f"step {a.get('step')}: {a.get('summary', '')} (rule {a.get('rule')}, {a.get('signal')} "
            f"{a.get('value')} > {a.get('threshold')})")


def cmd_alerts(api, args):
    query = {k: v for k, v in (("run", args.run), ("status", args.status), ("limit", args.limit)) if v}
    alerts = api.get("/api/alerts?" + urllib.parse.urlencode(query))
    if not args.follow:
        if not _print(alerts, args.json):
            for a in alerts:
                print(_alert_line(a))
        return 0
    if not args.run:
        raise ApiError("--follow needs --run (the live stream is per run)")
    for a in reversed(alerts):
        print(json.dumps(a) if args.json else _alert_line(a), flush=True)
    deadline = None if args.seconds is None else time.monotonic() + args.seconds
    seen = 0
    for event, data in api.events(args.run):
        if event == "alert":
            print(json.dumps(data) if args.json else _alert_line(data), flush=True)
            seen += 1
        if (args.max_alerts and seen >= args.max_alerts) or (deadline and time.monotonic() > deadline):
            break
    return 0


def cmd_snapshots(api, args):
    snaps = api.get(f"/api/runs/{_q(args.run)}/snapshots")
    if _print(snaps, args.json):
        return 0
    for s in snaps:
        layers = ", ".join(f"{x['layer']} rho {x['rho']}" for x in s.get("layers", []))
        print(f"{s['snapshot_id']}  step {s.get('step')}  {s.get('size_bytes')} bytes  {layers}  "
              f"(key {s.get('idempotency_key')})")
    return 0


def cmd_download(api, args):
    target = Path(args.output or f"{args.snapshot_id}.safetensors")
    expected = None
    if args.run:
        listed = [s for s in api.get(f"/api/runs/{_q(args.run)}/snapshots") if s["snapshot_id"] == args.snapshot_id]
        if not listed:
            raise ApiError(f"run {args.run} has no snapshot {args.snapshot_id}")
        expected = listed[0]
    size, sha = api.download(args.snapshot_id, target)
    if expected is not None and (expected.get("sha256", sha).lower() != sha or expected.get("size_bytes", size) != size):
        target.unlink()
        raise ApiError(f"downloaded {size} bytes with sha256 {sha}, the run lists {expected.get('size_bytes')} bytes "
                       f"with sha256 {expected.get('sha256')}: file removed")
    print(f"wrote {target} ({size} bytes, sha256 {sha}{', as listed' if expected else ''})")
    return 0


def parser():
    p = argparse.ArgumentParser(prog="python3 -m curvewatch",
                                description="Curvewatch's PyTorch client: a run's status, alerts and snapshots through "
                                            "the service's REST API. Watching a training loop is a library call: "
                                            "curvewatch.watch(model, layers, run_id, bootstrap=...).")
    p.add_argument("--version", action="version", version=f"curvewatch {__version__}")
    p.add_argument("--service", default=os.environ.get("CURVEWATCH_SERVICE", DEFAULT_SERVICE),
                   help=f"the service's base URL (env CURVEWATCH_SERVICE; default {DEFAULT_SERVICE})")
    p.add_argument("--json", action="store_true", help="print the service's JSON")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("runs", help="list the runs the service knows").set_defaults(fn=cmd_runs)
    s = sub.add_parser("status", help="a run's layers (factors, calibrated rho) and its dead letters")
    s.add_argument("run")
    s.set_defaults(fn=cmd_status)
    a = sub.add_parser("alerts", help="alerts, newest first; --follow tails a run's live stream")
    a.add_argument("--run")
    a.add_argument("--status", choices=["FIRING", "RESOLVED"])
    a.add_argument("--limit", type=int, default=50)
    a.add_argument("--follow", action="store_true", help="keep printing new alerts of --run as they arrive")
    a.add_argument("--seconds", type=float, default=None, help="with --follow: stop after this long")
    a.add_argument("--max-alerts", type=int, default=0, help="with --follow: stop after this many new alerts")
    a.set_defaults(fn=cmd_alerts)
    ls = sub.add_parser("snapshots", help="a run's edited snapshots")
    ls.add_argument("run")
    ls.set_defaults(fn=cmd_snapshots)
    d = sub.add_parser("download", help="download a snapshot's safetensors file (needs a Bearer token)")
    d.add_argument("snapshot_id")
    d.add_argument("-o", "--output", help="file to write (default <snapshot id>.safetensors)")
    d.add_argument("--run", help="check size and sha256 against the run's snapshot list")
    d.add_argument("--token", help="Bearer token (or --token-file, or env CURVEWATCH_TOKEN)")
    d.add_argument("--token-file", type=Path)
    d.set_defaults(fn=cmd_download)
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    token = getattr(args, "token", None) or os.environ.get("CURVEWATCH_TOKEN")
    if getattr(args, "token_file", None):
        token = args.token_file.read_text().strip()
    try:
        return args.fn(Api(args.service, token), args)
    except ApiError as e:
        print(f"curvewatch: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
