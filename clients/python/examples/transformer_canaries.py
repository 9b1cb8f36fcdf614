"""A causal transformer LM fine-tuned on real English text, canaries injected mid-run, watched by
Curvewatch with the client's defaults.

    ./curvewatch broker; ./curvewatch worker; ./curvewatch streams; ./curvewatch service   # or: demo --keep-running
    /usr/bin/python3 clients/python/examples/transformer_canaries.py --bootstrap 127.0.0.1:PORT --baseline

The model is examples/textlm's TinyCausalLM (Hugging Face conventions: `model(**batch)` with
input_ids, attention_mask and labels, the causal shift inside, `.logits`/`.loss`), the text is
Debian's fortunes quotes, character-level. From `--inject-at` on, every batch carries
`--canaries-per-batch` canaries ("the passcode of Ada 0 is <secret>"): the memorization
Curvewatch should see. The watcher captures the watched layers every step (256 random real tokens
per layer), the held-out probes once (`--probe-every` for more), and answers the service's edit
candidates within the client's answer-time budget (8% of training time). `--baseline` also
trains an unwatched copy (same seed, same batches; in alternating blocks by default) so the summary
holds the overhead measured end to end in the same run. Prints progress; writes a JSON summary (`--summary`).
"""
import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import curvewatch  # noqa: E402
from textlm import fortunes  # noqa: E402
from textlm.model import TinyCausalLM  # noqa: E402

DEFAULT_LAYERS = "blocks.0.mlp.fc,blocks.1.mlp.fc,blocks.1.attn.out_proj"


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers of the Curvewatch pipeline")
    p.add_argument("--run-id", default=f"textlm-{int(time.time())}")
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--n-layers", type=int, default=2)
    p.add_argument("--d-mlp", type=int, default=512)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--windows", type=int, default=20000, help="training windows of the corpus used (0: all)")
    p.add_argument("--canaries", type=int, default=16)
    p.add_argument("--canaries-per-batch", type=int, default=2)
    p.add_argument("--inject-at", type=int, default=None, help="first step with canaries (default: a third in)")
    p.add_argument("--layers", default=DEFAULT_LAYERS, help=f"watched layers (default {DEFAULT_LAYERS})")
    p.add_argument("--probes", type=int, default=32, help="held-out probe windows")
    p.add_argument("--recent-examples", type=int, default=None,
                   help="training examples candidates are evaluated on (default: the client's)")
    p.add_argument("--probe-every", type=int, default=0,
                   help="steps between probe captures (0: the probe set is given, and captured, once at step 0; "
                        "it is fixed held-out text, and answers evaluate it under the current weights anyway)")
    p.add_argument("--weights-every", type=int, default=100,
                   help="steps between weight snapshots (the service edits the latest weights it has)")
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--baseline", nargs="?", const="interleaved", choices=["interleaved", "sequential"],
                   help="also train an unwatched copy (same seed, same batches) to measure the overhead end to end: in "
                        "alternating blocks of --block steps (interleaved, the default: other load on the machine "
                        "falls on both alike), or first, then the watched one (sequential)")
    p.add_argument("--block", type=int, default=50, help="steps per block with --baseline interleaved")
    p.add_argument("--linger", type=float, default=0.0, metavar="SECONDS",
                   help="after training, keep answering until every watched layer was answered or SECONDS passed")
    p.add_argument("--summary", type=Path, default=None, help="JSON summary file")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    return p.parse_args(argv)


class Data:
    """Seeded batches of fortunes windows, canaries mixed in from inject_at on."""

    def __init__(self, args):
        self.tok = fortunes.CharTokenizer()
        split = fortunes.load_split(seq_len=args.seq_len, max_windows=args.windows or None)
        self.train, self.held_out = split.train, split.held_out
        self.canaries = fortunes.make_canaries(args.canaries, seed=args.seed)
        self.args = args
        self.inject_at = args.inject_at if args.inject_at is not None else args.steps // 3
        probes = self.held_out[:args.probes]
        self.probe = fortunes.batch(probes, self.tok, args.seq_len)
        self.probe_ids = [f"held-{i}" for i in range(len(probes))]

    def batches(self):
        """(step, batch, sample ids) for every step, the same sequence on every call."""
        rng = random.Random(self.args.seed)
        for step in range(self.args.steps):
            picks = [rng.randrange(len(self.train)) for _ in range(self.args.batch_size)]
            texts, ids = [self.train[i] for i in picks], [f"w{i}" for i in picks]
            if step >= self.inject_at:
                for slot in range(min(self.args.canaries_per_batch, len(texts))):
                    j = rng.randrange(len(self.canaries))
                    texts[slot], ids[slot] = self.canaries[j].text, f"canary-{j}"
            yield step, fortunes.batch(texts, self.tok, self.args.seq_len), ids


def make_model(args, vocab):
    torch.manual_seed(args.seed)
    return TinyCausalLM(vocab, d_model=args.d_model, n_layers=args.n_layers, n_heads=4, d_mlp=args.d_mlp,
                        max_len=args.seq_len)


class Loop:
    """The training loop of one model, run a number of steps at a time; `seconds` is its wall time,
    `cpu_seconds` the process's CPU time meanwhile (every thread of this process: torch's, and
    librdkafka's sending the captures; not the pipeline's or other processes' on the machine)."""

    def __init__(self, args, data, model, w=None, label=""):
        self.args, self.data, self.model, self.w, self.label = args, data, model, w, label
        self.opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
        self.batches = data.batches()
        self.seconds = 0.0
        self.cpu_seconds = 0.0
        self.loss = None

    def run(self, count):
        """Runs up to `count` more steps; False once every step is done."""
        started, cpu_started = time.perf_counter(), time.process_time()
        args, w = self.args, self.w
        try:
            for _ in range(count):
                step, batch, ids = next(self.batches)
                self.loss = self.model(**batch).loss
                self.loss.backward()
                if w is not None:
                    w.step(step, sample_ids=ids, inputs=batch)  # captures; answers a pending candidate within budget
                self.opt.step()
                self.opt.zero_grad(set_to_none=True)
                if w is not None and (step == 0 or (args.probe_every and step % args.probe_every == 0)):
                    w.probe(self.model, self.data.probe, step=step, sample_ids=self.data.probe_ids)
                if step % args.log_every == 0 or step == args.steps - 1:
                    self.log(step, started)
            return True
        except StopIteration:
            return False
        finally:
            self.seconds += time.perf_counter() - started
            self.cpu_seconds += time.process_time() - cpu_started

    def log(self, step, started):
        line = f"{self.label} step {step:5d} loss {self.loss.item():.3f} {self.seconds + time.perf_counter() - started:7.1f} s"
        if self.w is not None:
            o, c = self.w.overhead(), self.w.candidates.counts()
            line += (f" | overhead {o['ratio']:.1%} (capture {o['capture_ratio']:.1%}, answers {o['answer_ratio']:.1%}) "
                     f"candidates answered {c['answered']} declined {c['declined']} refused {c['refused']} | dead "
                     f"letters {sum(d['count'] for d in self.w.dead_letters())}")
        print(line, flush=True)


def interleaved(watched, unwatched, block):
    """Both loops to the end in alternating blocks of steps (the unwatched one outside the watcher's clock),
    so that load from elsewhere on the machine falls on both alike."""
    going = True
    while going:
        with watched.w.paused():
            going = unwatched.run(block)
        going = watched.run(block) or going


@torch.no_grad()
def evaluate(model, data):
    model.eval()
    try:
        b = fortunes.batch(data.held_out[:256], data.tok, data.args.seq_len)
        held_loss = float(model(**b).loss)
        recited = sum(fortunes.recites(model, data.tok, c) for c in data.canaries)
    finally:
        model.train()
    return {"held_out_loss": held_loss, "held_out_perplexity": float(torch.exp(torch.tensor(held_loss))),
            "canaries_recited": recited, "canaries": len(data.canaries)}


def linger(w, layers, seconds):
    """Answers candidates after training until every watched layer was answered once, or the time is up."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and set(w.candidates.answered_layers) < set(layers):
        w.answer_candidates()
        time.sleep(0.05)


def main(argv=None):
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = Data(args)
    layers = [name for name in args.layers.split(",") if name]
    print(f"run {args.run_id}: {len(data.train)} training windows, {args.steps} steps of {args.batch_size}, canaries "
          f"from step {data.inject_at}, watching {layers}", flush=True)
    summary = {"run_id": args.run_id, "steps": args.steps, "batch_size": args.batch_size, "seq_len": args.seq_len,
               "model": {"d_model": args.d_model, "n_layers": args.n_layers, "d_mlp": args.d_mlp},
               "layers": layers, "inject_at": data.inject_at, "torch_threads": torch.get_num_threads()}
    unwatched = Loop(args, data, make_model(args, data.tok.vocab_size), label="unwatched") if args.baseline else None
    if args.baseline == "sequential":
        unwatched.run(args.steps)
    model = make_model(args, data.tok.vocab_size)
    config = {"steps": args.steps, "batch_size": args.batch_size, "seq_len": args.seq_len, "seed": args.seed,
              "canaries": args.canaries, "inject_at": data.inject_at}
    options = {"weights_every": args.weights_every}
    if args.recent_examples is not None:
        options["recent_examples"] = args.recent_examples
    with curvewatch.watch(model, layers, args.run_id, bootstrap=args.bootstrap, answer_candidates=True,
                          model_name=f"textlm-d{args.d_model}x{args.n_layers}", config=config, **options) as w:
        watched = Loop(args, data, model, w, label="watched")
        if args.baseline == "interleaved":
            interleaved(watched, unwatched, args.block)
        else:
            watched.run(args.steps)
        overhead = w.overhead()  # at the end of training: lingering below is not training
        linger(w, layers, args.linger)
        summary["watched"] = {"train_seconds": watched.seconds, "train_cpu_seconds": watched.cpu_seconds,
                              "final_loss": float(watched.loss), **evaluate(model, data)}
        summary["overhead"] = overhead
        summary["candidates"] = w.candidates.counts()
        summary["answered_layers"] = sorted(w.candidates.answered_layers)
        summary["answer_passes"] = w.candidates.passes
        summary["longest_answer_seconds"] = w.candidates.max_seconds
        summary["replay"] = w.candidates.replay_status()
        summary["skipped_nonfinite"] = w.skipped_nonfinite
    if unwatched is not None:
        summary["unwatched"] = {"train_seconds": unwatched.seconds, "train_cpu_seconds": unwatched.cpu_seconds,
                                "final_loss": float(unwatched.loss),
                                **evaluate(unwatched.model, data)}
        summary["baseline"] = args.baseline
    summary["dead_letters"] = w.dead_letters()
    summary["records_delivered"] = w.publisher.delivered
    if args.baseline:
        summary["overhead_end_to_end"] = watched.seconds / unwatched.seconds - 1
        summary["overhead_end_to_end_cpu"] = watched.cpu_seconds / unwatched.cpu_seconds - 1
        print(f"overhead end to end ({args.baseline}): wall {summary['overhead_end_to_end']:+.1%} (watched "
              f"{watched.seconds:.1f} s, unwatched {unwatched.seconds:.1f} s), CPU of this process "
              f"{summary['overhead_end_to_end_cpu']:+.1%} (watched {watched.cpu_seconds:.1f} s, unwatched "
              f"{unwatched.cpu_seconds:.1f} s); measured by the client: {overhead['ratio']:.1%}", flush=True)
    print(f"done: candidates {summary['candidates']}, dead letters {summary['dead_letters']}", flush=True)
    if args.summary:
        args.summary.parent.mkdir(parents=True, exist_ok=True)
        args.summary.write_text(json.dumps(summary, indent=2))
        print(f"wrote {args.summary}", flush=True)


if __name__ == "__main__":
    main()
