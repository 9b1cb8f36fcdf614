"""Training run of the noisy-labels study: all-MiniLM-L6-v2's top layer(s) and a head fine-tuned to
classify fortunes quotes by category; the true labels until epoch `inject_at`, then 10% of them
flipped (never, in a clean control: `inject_at` < 0). A sampled-label Fisher pass every
`fisher_every` steps feeds the watched MLP layers' factors; a checkpoint every `refresh_every`
steps (model, factors, recent distinct training ids).

  /usr/bin/python3 -m memorization.minilm_train --out /tmp/minilm-run --seed 1 [--inject-at 4]
from clients/python/examples (MAVEN_OPTS' -Dmaven.repo.local, or ~/.m2, must hold the MiniLM jar).
"""
import argparse
import collections
import hashlib
import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from . import bert as bert_mod
from . import minilm_data
from .kfac import Capture, Factors, sampled_fisher_pass
from .minilm_model import MlpClassifier, TopClassifier, frozen_prefix
from .wordpiece import WordPiece


@dataclass
class MiniLmConfig:
    seed: int = 1
    categories: list = field(default_factory=lambda: list(minilm_data.DEFAULT_CATEGORIES))
    per_class: int = 500
    max_tokens: int = 32
    first_trainable: int = 5
    train_attention: bool = True   # False: only the MLP of layer first_trainable (and the head) is trained
    noise: float = 0.1
    epochs: int = 24
    inject_at: int = 6            # epoch; < 0: clean control
    batch: int = 32
    lr: float = 3e-4
    fisher_every: int = 4
    refresh_every: int = 0        # steps; 0 = once per epoch
    ema_decay: float = 0.95
    recent: int = 512
    cache: str = "/tmp/curvewatch-minilm"

    def watched(self):
        return [f"encoder.layer.{i}.{m}" for i in range(self.first_trainable, 6)
                for m in ("intermediate.dense", "output.dense")]


def features(c, log=print):
    """(train, probes, test) LabelledSets and their cached prefix features {set: (hidden, mask)}."""
    train, probes, test = minilm_data.load(c.categories, c.per_class, noise=c.noise, seed=c.seed)
    onnx_path, tok_path = bert_mod.extract(c.cache)
    through = not getattr(c, "train_attention", True)
    key = hashlib.sha256(json.dumps([c.categories, c.per_class, c.max_tokens, c.first_trainable, through,
                                     sorted(train.texts), probes.texts, test.texts]).encode()).hexdigest()[:16]
    path = Path(c.cache) / f"features-{key}.pt"
    if path.is_file():
        cached = torch.load(path)
        order = [cached["order"][t] for t in train.texts]  # cached in sorted text order: any seed's shuffle reuses it
        cached["train"] = tuple(x[order] for x in cached["train"])
        return (train, probes, test), cached
    tok = WordPiece.from_file(tok_path)
    tok.max_length = c.max_tokens
    model = bert_mod.Bert.from_onnx(onnx_path).eval()
    out, started = {}, time.time()
    by_text = sorted(train.texts)
    for name, texts in (("train", by_text), ("probe", probes.texts), ("test", test.texts)):
        hidden, masks = [], []
        for i in range(0, len(texts), 64):
            b = tok.batch(texts[i:i + 64], length=c.max_tokens)
            hidden.append(frozen_prefix(model, b, c.first_trainable, through))
            masks.append(b["attention_mask"])
        out[name] = (torch.cat(hidden), torch.cat(masks))
        log(f"features {name}: {len(texts)} quotes {time.time() - started:.0f}s")
    out["order"] = {t: i for i, t in enumerate(by_text)}
    torch.save(out, path)
    order = [out["order"][t] for t in train.texts]
    out["train"] = tuple(x[order] for x in out["train"])
    return (train, probes, test), out


def make_model(c):
    onnx_path, _ = bert_mod.extract(c.cache)
    cls = TopClassifier if getattr(c, "train_attention", True) else MlpClassifier
    return cls(bert_mod.Bert.from_onnx(onnx_path), c.first_trainable, len(c.categories), seed=c.seed)


def classifier_logits(batch):
    def fn(model):
        logits = model(hidden_states=batch["hidden_states"], attention_mask=batch["attention_mask"]).logits
        return logits, torch.ones(logits.shape[0], dtype=torch.bool)
    return fn


def train(c, out_dir, log=print):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (train_set, _, _), feats = features(c, log)
    hidden, mask = feats["train"]
    model = make_model(c)
    torch.manual_seed(c.seed)
    opt = torch.optim.Adam(model.parameters(), lr=c.lr)
    names = c.watched()
    mods = dict(model.named_modules())
    factors = {n: Factors(mods[n].in_features, mods[n].out_features, decay=c.ema_decay) for n in names}
    empirical = {n: Factors(mods[n].in_features, mods[n].out_features, decay=c.ema_decay) for n in names}
    capture = Capture(model, names)
    generator = torch.Generator().manual_seed(c.seed + 1000)
    rng = random.Random(c.seed)
    recent = collections.OrderedDict()
    n = len(train_set.texts)
    steps_per_epoch = (n + c.batch - 1) // c.batch
    refresh_every = c.refresh_every or steps_per_epoch
    (out_dir / "config.json").write_text(json.dumps(asdict(c), indent=1))
    step, started = 0, time.time()
    for epoch in range(c.epochs):
        noisy = 0 <= c.inject_at <= epoch
        labels = train_set.labels if noisy else train_set.true_labels
        order = list(range(n))
        rng.shuffle(order)
        for s in range(steps_per_epoch):
            rows = torch.tensor(order[s * c.batch:(s + 1) * c.batch])
            batch = {"hidden_states": hidden[rows], "attention_mask": mask[rows], "labels": labels[rows]}
            model.train()
            if step % c.fisher_every == 0:
                sampled_fisher_pass(model, capture, factors, classifier_logits(batch), batch["attention_mask"] == 1,
                                    generator)
            out = model(**batch)
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            for name, (a, g) in capture.take(batch["attention_mask"] == 1).items():
                empirical[name].add(a, g * len(rows))  # the loss is a mean over the batch's examples
            opt.step()
            for i in rows.tolist():
                recent[f"x{i}"] = step
                recent.move_to_end(f"x{i}")
            while len(recent) > c.recent:
                recent.popitem(last=False)
            step += 1
            if step % refresh_every == 0:
                torch.save({"step": step, "epoch": epoch, "noisy": noisy, "model": model.state_dict(),
                            "factors": {k: f.state() for k, f in factors.items()},
                            "empirical": {k: f.state() for k, f in empirical.items()}, "recent": list(recent.keys())},
                           out_dir / f"ckpt-{step:05d}.pt")
                with torch.no_grad():
                    model.eval()
                    pred = model(hidden_states=hidden, attention_mask=mask).logits.argmax(-1)
                fl = train_set.flipped
                log(f"epoch {epoch} step {step} loss {float(out.loss):.3f} train acc {float((pred == labels).float().mean()):.3f}"
                    f" flipped memorized {float((pred[fl] == train_set.labels[fl]).float().mean()):.3f}"
                    f" {time.time() - started:.0f}s")
    capture.close()
    return model


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    for f, v in asdict(MiniLmConfig()).items():
        if not isinstance(v, list):
            p.add_argument("--" + f.replace("_", "-"), type=type(v), default=v)
    p.add_argument("--categories", nargs="+", default=list(minilm_data.DEFAULT_CATEGORIES))
    a = p.parse_args(argv)
    train(MiniLmConfig(**{k: v for k, v in vars(a).items() if k != "out"}), a.out)


if __name__ == "__main__":
    main()
