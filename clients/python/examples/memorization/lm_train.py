"""Training run of the canaries study: TinyCausalLM on fortunes windows, canaries mixed into some
rows of every batch from `inject_at` on (none in a clean control), a sampled-label Fisher pass every
`fisher_every` steps feeding each watched layer's factors, and a checkpoint every `refresh_every`
steps (model, factors, the most recent distinct training ids) that the analysis reads back.

Command (one run; `--inject-at -1` is the clean control):
  /usr/bin/python3 -m memorization.lm_train --out /tmp/lm-run --seed 1 [--inject-at 500] [--steps 1200]
from clients/python/examples.
"""
import argparse
import collections
import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from textlm import fortunes
from textlm.model import TinyCausalLM

from .kfac import Capture, Factors, sampled_fisher_pass

MLP_LAYERS = ("blocks.0.mlp.fc", "blocks.0.mlp.proj", "blocks.1.mlp.fc", "blocks.1.mlp.proj")


@dataclass
class LmRun:
    """The LM study's shared run: model shape, data, canaries and the Fisher cadence (LmConfig, CanariesConfig)."""
    seed: int = 1
    steps: int = 1200
    inject_at: int = 500          # < 0: clean control
    batch: int = 32
    canary_rows: int = 4
    canaries: int = 16
    secret_len: int = 12
    seq_len: int = 64
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    d_mlp: int = 512
    lr: float = 2e-3
    fisher_every: int = 5
    refresh_every: int = 50
    ema_decay: float = 0.95       # per Fisher pass (every fisher_every steps)


@dataclass
class LmConfig(LmRun):
    recent: int = 512
    max_windows: int = 0          # 0 = the whole corpus
    layers: list = field(default_factory=lambda: list(MLP_LAYERS))

def make_model(c):
    torch.manual_seed(c.seed)
    return TinyCausalLM(fortunes.CharTokenizer().vocab_size, d_model=c.d_model, n_layers=c.n_layers,
                        n_heads=c.n_heads, d_mlp=c.d_mlp, max_len=c.seq_len)


def corpus(c):
    split = fortunes.load_split(c.seq_len, max_windows=c.max_windows or None)
    return split, fortunes.make_canaries(c.canaries, c.secret_len, seed=c.seed)


def lm_logits(batch):
    """logits_fn for the Fisher pass: next-token logits of the positions that have a target."""
    def fn(model):
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        logits = out.logits[:, :-1]
        mask = batch["labels"][:, 1:] != -100
        return logits.reshape(-1, logits.shape[-1]), mask.reshape(-1)
    return fn


class Batches:
    """Seeded epochs over the training windows; canary rows from `inject_at` on, cycling over the
    canaries. Each row carries a sample id: `t<window index>` or `c<canary index>`."""

    def __init__(self, c, train, canaries):
        self.c, self.train, self.canaries = c, train, canaries
        self.rng = random.Random(c.seed)
        self.order, self.pos = [], 0
        self.tok = fortunes.CharTokenizer()

    def _next_window(self):
        if self.pos >= len(self.order):
            self.order = list(range(len(self.train)))
            self.rng.shuffle(self.order)
            self.pos = 0
        self.pos += 1
        return self.order[self.pos - 1]

    def at(self, step):
        injected = 0 <= self.c.inject_at <= step
        rows = self.c.canary_rows if injected else 0
        ids, texts = [], []
        for r in range(self.c.batch):
            if r < rows:
                k = (step * rows + r) % len(self.canaries)
                ids.append(f"c{k}")
                texts.append(self.canaries[k].text)
            else:
                i = self._next_window()
                ids.append(f"t{i}")
                texts.append(self.train[i])
        return ids, fortunes.batch(texts, self.tok, self.c.seq_len)


def train(c, out_dir, log=print):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    split, canaries = corpus(c)
    model = make_model(c)
    opt = torch.optim.Adam(model.parameters(), lr=c.lr)
    batches = Batches(c, split.train, canaries)
    dims = {n: (m.in_features, m.out_features) for n, m in model.named_modules() if n in c.layers}
    factors = {n: Factors(*dims[n], decay=c.ema_decay) for n in c.layers}
    empirical = {n: Factors(*dims[n], decay=c.ema_decay) for n in c.layers}  # the training pass's own g
    capture = Capture(model, c.layers)
    generator = torch.Generator().manual_seed(c.seed + 1000)
    recent = collections.OrderedDict()
    started, losses = time.time(), []
    (out_dir / "config.json").write_text(json.dumps(asdict(c), indent=1))
    for step in range(c.steps):
        ids, batch = batches.at(step)
        model.train()
        if step % c.fisher_every == 0:
            sampled_fisher_pass(model, capture, factors, lm_logits(batch), batch["attention_mask"] == 1, generator)
        out = model(**batch)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        targets = int((batch["labels"][:, 1:] != -100).sum())  # the mean's denominator: g x targets = per-token g
        for name, (a, g) in capture.take(batch["attention_mask"] == 1).items():
            empirical[name].add(a, g * targets)
        opt.step()
        losses.append(float(out.loss))
        for sid in ids:
            recent[sid] = step
            recent.move_to_end(sid)
        while len(recent) > c.recent:
            recent.popitem(last=False)
        if (step + 1) % c.refresh_every == 0 or step + 1 == c.steps:
            torch.save({"step": step, "model": model.state_dict(),
                        "factors": {n: f.state() for n, f in factors.items()},
                        "empirical": {n: f.state() for n, f in empirical.items()},
                        "recent": list(recent.keys()), "train_loss": losses[-c.refresh_every:]},
                       out_dir / f"ckpt-{step + 1:05d}.pt")
            log(f"step {step + 1} loss {sum(losses[-50:]) / len(losses[-50:]):.3f} "
                f"{time.time() - started:.0f}s")
    capture.close()
    return model


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    for f, v in asdict(LmConfig()).items():
        if f != "layers":
            p.add_argument("--" + f.replace("_", "-"), type=type(v), default=v)
    a = p.parse_args(argv)
    c = LmConfig(**{k: v for k, v in vars(a).items() if k != "out"})
    train(c, a.out)


if __name__ == "__main__":
    main()
