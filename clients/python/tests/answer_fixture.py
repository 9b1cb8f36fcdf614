"""Run by the Java PythonClientIT: a tiny fine-tune that answers the edit candidates Java sends.

usage: answer_fixture.py BOOTSTRAP OUT_DIR RUN_ID
Trains 6 steps (captures of fc1 and fc2, a Conv1D), sends a probe batch, flushes and prints
"ready <captures>"; then, with training paused (so the weights stay those written out), keeps
calling w.step() until it has answered two candidates and refused one (or 90 s passed). Writes
OUT_DIR/answered.json: the model's parameters in their own layouts, the training pool and probe
examples with their ids, the ids trained on in order, and the answerer's counters.
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

RECENT = 40


def main(bootstrap, out, run_id):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(3)
    model = Mlp(d_in=8, hidden=12, classes=4, conv=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    pool_x, pool_y = torch.randn(60, 8), torch.randint(0, 4, (60,))
    probe_x, probe_y = torch.randn(8, 8), torch.randint(0, 4, (8,))
    probe_ids = [f"p{i}" for i in range(8)]
    trained = []
    # no answer-time budget: this fixture checks the answers' values, and pauses training to give them
    with curvewatch.watch(model, ["fc1", "fc2"], run_id, bootstrap=bootstrap, answer_candidates=True,
                          recent_examples=RECENT, answer_budget=float("inf")) as w:
        for step in range(6):
            idx = torch.randint(0, 60, (16,))
            ids = [f"t{i}" for i in idx.tolist()]
            trained += ids
            F.cross_entropy(model(pool_x[idx]), pool_y[idx]).backward()
            w.step(step, sample_ids=ids, inputs=pool_x[idx], targets=pool_y[idx])
            opt.step()
            opt.zero_grad()
        w.probe(model, probe_x, probe_y, F.cross_entropy, 6, probe_ids)
        if w.publisher.flush(60):
            raise SystemExit("captures not delivered within 60 s")
        print(f"ready {w.records - 1}", flush=True)  # every record but the RunInfo is a capture
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and (w.candidates.answered < 2 or w.candidates.refused < 1):
            w.step(6)  # nothing captured: only polls and answers; the weights do not change any more
            time.sleep(0.02)
        counts = w.candidates.counts()
    (out / "answered.json").write_text(json.dumps({
        "run_id": run_id, "counts": counts, "recent_examples": RECENT, "trained_ids": trained,
        "parameters": {k: {"shape": list(v.shape), "data": v.reshape(-1).tolist()} for k, v in model.state_dict().items()},
        "examples": {**{f"t{i}": {"x": pool_x[i].tolist(), "y": int(pool_y[i])} for i in range(60)},
                     **{pid: {"x": probe_x[i].tolist(), "y": int(probe_y[i])} for i, pid in enumerate(probe_ids)}},
        "probe_ids": probe_ids}))
    print(f"answered {counts}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
