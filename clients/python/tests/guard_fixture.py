"""Run by the Java PythonGuardIT: a tiny watched fine-tune that applies the service's edited snapshots.

usage: guard_fixture.py BOOTSTRAP SNAPSHOT_DIR RUN_ID OUT_JSON
Trains helpers.Mlp with watch(..., snapshot_dir=SNAPSHOT_DIR, apply_snapshots=True), publishing
weights every step; prints "trained" once the service can have factors and weights, then trains on
(one step every 50 ms: a trainer's pace, nothing waits on it) until a snapshot was applied, prints
"applied <snapshot_id> <step>" and writes OUT_JSON: the application, and the largest difference between
the model's weights right after it and the snapshot file's tensors (0: the file is what training goes on
from). Gives up after 240 s (exit 2).
"""
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import curvewatch  # noqa: E402
from helpers import Mlp  # noqa: E402

DEADLINE_SECONDS = 240
TRAINED_STEPS = 12


def main(bootstrap, snapshot_dir, run_id, out):
    torch.manual_seed(11)
    model = Mlp(d_in=6, hidden=5, classes=4)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(64, 6), torch.randint(0, 4, (64,))
    deadline = time.monotonic() + DEADLINE_SECONDS
    with curvewatch.watch(model, ["fc1", "fc2"], run_id, bootstrap, weights_every=1, snapshot_dir=snapshot_dir,
                          apply_snapshots=True) as w:
        step = 0
        while time.monotonic() < deadline:
            idx = torch.randint(0, 64, (16,))
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()  # the update first: a snapshot loaded in w.step() is exactly what the next step starts from
            opt.zero_grad()
            w.step(step, sample_ids=[f"s{i}" for i in idx.tolist()])
            applications = w.snapshots()["applications"]
            if applications:
                a = applications[0]
                stored = curvewatch.load_file(Path(snapshot_dir) / run_id / f"{a['snapshot_id']}.safetensors")
                own = model.state_dict()
                diff = max(float((own[name] - tensor).abs().max()) for name, tensor in stored.items())
                Path(out).write_text(json.dumps({"application": a, "max_abs_diff": diff, "tensors": sorted(stored),
                                                 "summary": w.snapshots()}))
                print(f"applied {a['snapshot_id']} {a['applied_after_step']}", flush=True)
                return 0
            if step == TRAINED_STEPS:
                print("trained", flush=True)
            step += 1
            time.sleep(0.05)
    print(f"no snapshot applied within {DEADLINE_SECONDS} s: {w.snapshots()}", flush=True)
    return 2


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
