"""A short PyTorch fine-tune with flipped labels, watched by Curvewatch end to end.

    ./curvewatch broker &                      # prints bootstrap=127.0.0.1:PORT
    /usr/bin/python3 clients/python/examples/flipped_labels.py --bootstrap 127.0.0.1:PORT

Generated 10-class data (no download), 10% of the training labels flipped; every step publishes
per-token captures of the two hidden layers, a sampled-label (true Fisher) pass every 5 steps,
held-out probes every 10 steps, and weights every 20 steps. It answers the service's edit
candidates (per-example losses under each candidate edit, on the latest probe batch and the 128
most recent training examples) inside w.step(); --no-answer turns that off.
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import curvewatch  # noqa: E402


def make_data(n, d, classes, generator):
    centers = torch.randn(classes, d, generator=generator) * 2.0
    y = torch.randint(0, classes, (n,), generator=generator)
    x = centers[y] + torch.randn(n, d, generator=generator)
    return x, y


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--run-id", default=f"flipped-{int(time.time())}")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--noise", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-answer", action="store_true", help="do not answer the service's edit candidates")
    p.add_argument("--linger", type=float, default=0.0, metavar="SECONDS",
                   help="after training, keep answering edit candidates until one is answered or SECONDS passed")
    args = p.parse_args()

    g = torch.Generator().manual_seed(args.seed)
    x, y_true = make_data(2000, 32, 10, g)
    probe_x, probe_y = make_data(200, 32, 10, g)
    flip = torch.rand(len(y_true), generator=g) < args.noise
    y = torch.where(flip, (y_true + torch.randint(1, 10, y_true.shape, generator=g)) % 10, y_true)

    model = nn.Sequential(nn.Linear(32, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    with curvewatch.watch(model, ["0", "2"], args.run_id, bootstrap=args.bootstrap, weights_every=20,
                          tokens_per_step=256, model_name="mlp-flipped-labels",
                          config={"noise": args.noise, "seed": args.seed}, answer_candidates=not args.no_answer) as w:
        for step in range(args.steps):
            idx = torch.randint(0, len(x), (64,), generator=g)
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            # inputs/targets: kept (the 128 most recent examples, the default) to evaluate the service's edit candidates on
            w.step(step, sample_ids=[f"train-{i}" for i in idx.tolist()], inputs=x[idx], targets=y[idx])
            opt.step()
            opt.zero_grad()
            if step % 5 == 0:
                w.fisher_pass(model, x[idx], step, sample_ids=[f"train-{i}" for i in idx.tolist()])
            if step % 10 == 0:
                w.probe(model, probe_x[:32], probe_y[:32], F.cross_entropy, step, [f"probe-{i}" for i in range(32)])
                answers = f" candidates {w.candidates.counts()}" if w.candidates else ""
                print(f"step {step:4d} loss {loss.item():.3f} records {w.records} "
                      f"delivered {w.publisher.delivered} dropped {w.publisher.dropped}{answers}", flush=True)
        deadline = time.monotonic() + args.linger
        while w.candidates and not w.candidates.answered and time.monotonic() < deadline:
            w.answer_candidates()  # never waits for Kafka: the pause is ours
            time.sleep(0.05)
    print(f"run {args.run_id}: done, {w.publisher.delivered} records delivered"
          + (f", edit candidates {w.candidates.counts()} ({w.candidates.seconds:.2f} s answering)" if w.candidates else ""))


if __name__ == "__main__":
    main()
