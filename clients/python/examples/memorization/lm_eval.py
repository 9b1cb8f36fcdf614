"""Per-token evaluation of the character LM: losses, the mask of real targets and whether each
target is the argmax, for any list of texts, plus strict recitation of canaries.

Strict recitation (greedy decoding after the prefix reproduces every secret character) is read off
one teacher-forced pass: greedy decoding reproduces the secret exactly when, given the true prefix
at every position, the argmax is the true next character (the contexts are then identical). A
test checks this against `fortunes.recites`.
"""
from dataclasses import dataclass

import torch

from textlm import fortunes
from textlm.model import token_losses


@dataclass
class TokenStats:
    losses: torch.Tensor   # N x (T-1) float64, 0 where not valid
    valid: torch.Tensor    # N x (T-1) bool
    correct: torch.Tensor  # N x (T-1) bool

    def select(self, rows):
        return TokenStats(self.losses[rows], self.valid[rows], self.correct[rows])

    @property
    def tokens(self):
        return self.valid.sum(1)

    def mean_loss(self):
        """Token-weighted mean loss (log perplexity)."""
        return float(self.losses.sum() / self.valid.sum())

    def accuracy(self):
        return float((self.correct & self.valid).sum() / self.valid.sum())

    @staticmethod
    def cat(parts):
        return TokenStats(*(torch.cat([getattr(p, f) for p in parts]) for f in ("losses", "valid", "correct")))


class LmEval:
    def __init__(self, model, seq_len, batch_size=128):
        self.model, self.seq_len, self.batch_size = model, seq_len, batch_size
        self.tok = fortunes.CharTokenizer()
        self._batches = {}

    def _batch(self, texts):
        key = id(texts)
        if key not in self._batches:
            self._batches[key] = (texts, [fortunes.batch(texts[i:i + self.batch_size], self.tok, self.seq_len)
                                          for i in range(0, len(texts), self.batch_size)])
        return self._batches[key][1]

    @torch.no_grad()
    def stats(self, texts):
        training = self.model.training
        self.model.eval()
        parts = []
        try:
            for b in self._batch(texts):
                logits = self.model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
                losses, valid = token_losses(logits, b["labels"])
                correct = logits[:, :-1].argmax(-1) == b["labels"][:, 1:]
                parts.append(TokenStats(losses.double(), valid, correct & valid))
        finally:
            self.model.train(training)
        return TokenStats.cat(parts)


def secret_positions(canary, seq_len):
    """Indices into the per-token loss row (target t+1 predicted at t) of the secret's characters."""
    start = len(canary.prefix)  # BOS + prefix occupy tokens 0..len(prefix); secret token i is at len(prefix)+1+i
    return [start + i for i in range(len(canary.secret)) if start + i < seq_len - 1]


def recitation(stats, canaries, seq_len):
    """Per canary, True when every secret character is the argmax given the true prefix."""
    out = []
    for row, c in enumerate(canaries):
        pos = secret_positions(c, seq_len)
        out.append(bool(stats.correct[row, pos].all()))
    return out
