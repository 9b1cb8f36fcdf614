"""What watching costs the transformer example's model, without Kafka: capture per step, and one
answer to an edit candidate, each as a ratio to a training step measured in the same run.

    /usr/bin/python3 clients/python/bench/costs.py capture [--steps 120]
    /usr/bin/python3 clients/python/bench/costs.py answer [--repeats 3]

capture: two copies of the model (same seed, same batches) train in alternating blocks of 10 steps,
one plain, one watched (3 layers, the client's defaults, a producer that drops the records after
encoding them); the CPU seconds of each (time.process_time: the training thread, torch here runs
one) give the capture overhead without the broker, robust to other load drifting between blocks.
answer: one answer to a 19-candidate EditCandidate (random spectra and bases) per configuration,
repeated, interleaved: ALL over 512 recent examples (the old default), BISECT over 512, BISECT over
128 (the new default) without and with forward replay; in seconds and in training steps.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "examples"))
sys.path.insert(0, str(HERE.parent / "tests"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from curvewatch import Publisher, Watcher  # noqa: E402
from helpers import FakeConsumer, RecordingProducer  # noqa: E402
from test_candidates import candidate, encoded, keep_mass_tau, spectrum  # noqa: E402
from textlm import fortunes  # noqa: E402
from textlm.model import TinyCausalLM  # noqa: E402

LAYERS = ["blocks.0.mlp.fc", "blocks.1.mlp.fc", "blocks.1.attn.out_proj"]
RHOS = list(1 - np.logspace(np.log10(0.4), -5, 19))  # the service's grid, most aggressive first


class Sink(RecordingProducer):
    """Takes records and forgets them (the encoding is done; Kafka is not measured here)."""

    def produce(self, topic, key=None, value=None, on_delivery=None, partition=None):
        if on_delivery:
            on_delivery(None, None)


def model_and_data(batch_size, steps):
    tok = fortunes.CharTokenizer()
    split = fortunes.load_split(seq_len=64, max_windows=20000)
    torch.manual_seed(0)
    model = TinyCausalLM(tok.vocab_size, d_model=128, n_layers=2, n_heads=4, d_mlp=512, max_len=64)
    g = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(steps):
        picks = torch.randint(0, len(split.train), (batch_size,), generator=g).tolist()
        batches.append((fortunes.batch([split.train[i] for i in picks], tok, 64), [f"w{i}" for i in picks]))
    return tok, split, model, batches


def capture(args):
    tok, split, plain, batches = model_and_data(32, args.steps)
    watched = TinyCausalLM(tok.vocab_size, d_model=128, n_layers=2, n_heads=4, d_mlp=512, max_len=64)
    watched.load_state_dict(plain.state_dict())
    w = Watcher(watched, LAYERS, "bench", publisher=Publisher({}, producer=Sink()), consumer=FakeConsumer(),
                answer_candidates=True)
    opts = {id(m): torch.optim.AdamW(m.parameters(), lr=1e-3) for m in (plain, watched)}
    cpu = {"plain": 0.0, "watched": 0.0}
    for block in range(0, args.steps, 10):
        for name, model in (("plain", plain), ("watched", watched)) if block % 20 == 0 else \
                (("watched", watched), ("plain", plain)):
            started = time.process_time()
            for step in range(block, min(block + 10, args.steps)):
                batch, ids = batches[step]
                model(**batch).loss.backward()
                if name == "watched":
                    w.step(step, sample_ids=ids, inputs=batch)
                opts[id(model)].step()
                opts[id(model)].zero_grad(set_to_none=True)
            cpu[name] += time.process_time() - started
    w.close()
    print(f"{args.steps} steps of 32 x 64 tokens, 3 layers, tokens_per_step 512: CPU plain {cpu['plain']:.2f} s, "
          f"watched {cpu['watched']:.2f} s: capture +{cpu['watched'] / cpu['plain'] - 1:.1%} (client clock: "
          f"{w.overhead()['capture_seconds']:.2f} s)")


def answer(args):
    tok, split, model, batches = model_and_data(32, 20)
    probe = fortunes.batch(split.held_out[:32], tok, 64)
    configs = [("ALL", 512, 0), ("BISECT", 512, 0), ("BISECT", 128, 0), ("BISECT", 128, 256 << 20)]
    rng = np.random.default_rng(0)
    spectra = {}
    times = {(layer, c): [] for layer in LAYERS for c in configs}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    step_times = []
    for repeat in range(args.repeats):
        for layer in LAYERS:
            for search, recent, replay in configs:
                w = Watcher(model, [layer], "bench", publisher=Publisher({}, producer=Sink()), consumer=FakeConsumer(),
                            answer_candidates=True, answer_budget=float("inf"), recent_examples=recent,
                            replay_bytes=replay)
                w.probe(model, probe, step=0, sample_ids=[f"p{i}" for i in range(32)], capture=False)
                train = fortunes.batch(split.train[:recent], tok, 64)
                w.step(0, sample_ids=[f"t{i}" for i in range(recent)], inputs=train)
                d_in, d_out = w.candidates.layers[layer]
                if layer not in spectra:
                    spectra[layer] = spectrum(d_out, rng) + spectrum(d_in, rng)
                lam, ug, mu, ua = spectra[layer]
                record = candidate(f"c{repeat}", layer, ug, ua, lam, mu, RHOS,
                                   [keep_mass_tau(lam, mu, r) for r in RHOS], run="bench", dtype="FLOAT32")
                record["search"] = search
                for i in range(2):  # the first answer of a layer also verifies replay once: time the second
                    w.consumer.push("bench", encoded(dict(record, candidate_id=f"c{repeat}-{i}")))
                    started = time.perf_counter()
                    w.answer_candidates()
                    elapsed = time.perf_counter() - started
                times[(layer, (search, recent, replay))].append(elapsed)
                w.close()
        for batch, _ in batches[:5]:  # the peer: training steps, measured between the answers
            started = time.perf_counter()
            model(**batch).loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            step_times.append(time.perf_counter() - started)
    step = statistics.median(step_times)
    print(f"training step (32 x 64 tokens): median {step:.3f} s of {len(step_times)}")
    for layer in LAYERS:
        for search, recent, replay in configs:
            t = statistics.median(times[(layer, (search, recent, replay))])
            print(f"  {layer:24s} {search:6s} recent {recent:3d} replay {'on ' if replay else 'off'}: "
                  f"median {t:.2f} s = {t / step:.1f} training steps")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    c = sub.add_parser("capture")
    c.add_argument("--steps", type=int, default=120)
    c.set_defaults(fn=capture)
    a = sub.add_parser("answer")
    a.add_argument("--repeats", type=int, default=3)
    a.set_defaults(fn=answer)
    args = p.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
