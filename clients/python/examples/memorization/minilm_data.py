"""The noisy-labels data: fortunes quotes labelled by their category file, tokenized for MiniLM.

A handful of categories with many quotes; each quote goes to train or held-out by a hash of its
text (stable), the held-out part is split again into probes (the calibration's and the alarm's
reference, what a trainer would send as `probe`) and a test set (accuracy only). Training labels
are flipped for a seeded `noise` share of the training quotes, each to a uniformly drawn other
class. Quotes are cut to `max_tokens` WordPiece tokens ([CLS] and [SEP] included).
"""
import hashlib
import random
from dataclasses import dataclass

import torch

from textlm import fortunes

DEFAULT_CATEGORIES = ("computers", "definitions", "people", "songs-poems")


@dataclass
class LabelledSet:
    texts: list
    labels: torch.Tensor        # the labels trained on (flipped where `flipped`)
    true_labels: torch.Tensor
    flipped: torch.Tensor       # bool


def _bucket(text):
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64


def load(categories=DEFAULT_CATEGORIES, per_class=600, held_out=0.25, probe_share=0.4, noise=0.1, seed=1):
    """(train, probes, test) LabelledSets; per_class caps each category's training quotes (first by
    hash order, so the cap is stable)."""
    quotes, seen = {c: [] for c in categories}, set()
    for category, text in fortunes.read_quotes(categories=categories):
        if text not in seen:
            seen.add(text)
            quotes[category].append(text)
    train, probe, test = [], [], []
    for label, category in enumerate(categories):
        for text in sorted(quotes[category], key=_bucket):
            b = _bucket(text + "#split")
            if b < held_out * probe_share:
                probe.append((text, label))
            elif b < held_out:
                test.append((text, label))
            else:
                train.append((text, label))
        # cap the training quotes of this class
    by_class = {}
    for text, label in train:
        by_class.setdefault(label, []).append((text, label))
    train = [x for label in sorted(by_class) for x in by_class[label][:per_class]]
    rng = random.Random(seed)
    rng.shuffle(train)
    flipped = torch.zeros(len(train), dtype=torch.bool)
    flipped[rng.sample(range(len(train)), int(round(noise * len(train))))] = True
    true = torch.tensor([lab for _, lab in train])
    labels = true.clone()
    k = len(categories)
    for i in torch.nonzero(flipped).flatten().tolist():
        labels[i] = (true[i] + rng.randrange(1, k)) % k

    def plain(items):
        t = torch.tensor([lab for _, lab in items])
        return LabelledSet([x for x, _ in items], t, t.clone(), torch.zeros(len(items), dtype=torch.bool))
    return LabelledSet([x for x, _ in train], labels, true, flipped), plain(probe), plain(test)
