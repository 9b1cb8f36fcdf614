"""How the client calls a model and measures each example of a batch (ProbeResult v2).

A batch is what the training loop feeds the model: a tensor (`model(x)`, with targets and a
`loss_fn(out, targets, reduction="none")`), or a dict (`model(**batch)`, Hugging Face style:
`input_ids`, `attention_mask`, `labels` with -100 for ignored targets, the causal shift done
inside the model, an output with `.logits` and `.loss`). Anything else is measured by a
user-supplied `per_example_loss(model, batch)`. Every tensor of a batch whose first dimension is
the batch size is per example; other values are passed through as they are.

Per example the client sends (SERVICE-CONTRACT §1, ProbeResult v2): the loss (mean over its
non-ignored targets), `tokens` (the number of non-ignored targets), the accuracy (share of them
predicted correctly; not measured without class targets) and, for the peak statistic, the
per-token losses.
"""
import collections
import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F


def is_batch(value):
    return isinstance(value, torch.Tensor) or isinstance(value, dict)


def size(batch):
    """Number of examples in a batch (first dimension of its tensors)."""
    if isinstance(batch, torch.Tensor):
        return batch.shape[0]
    if isinstance(batch, dict):
        for v in batch.values():
            if isinstance(v, torch.Tensor) and v.dim() > 0:
                return v.shape[0]
        raise ValueError("a dict batch needs at least one tensor whose first dimension is the example")
    raise TypeError(f"a batch is a tensor or a dict of tensors, not {type(batch).__name__}")


def rows(batch, n):
    """Detached copies of each example's part of the batch (n examples)."""
    if batch is None:
        return [None] * n
    if isinstance(batch, torch.Tensor):
        if batch.shape[0] != n:
            raise ValueError(f"{n} sample ids but a batch of {batch.shape[0]} examples")
        b = batch.detach()
        return [b[i].clone() for i in range(n)]
    per_example = {k: v.detach() for k, v in batch.items() if isinstance(v, torch.Tensor) and v.dim() > 0
                   and v.shape[0] == n}
    if not per_example:
        raise ValueError(f"no tensor of the dict batch has {n} examples (keys {list(batch)})")
    shared = {k: v for k, v in batch.items() if k not in per_example}
    return [dict(shared, **{k: v[i].clone() for k, v in per_example.items()}) for i in range(n)]


def signature(row):
    """Rows with equal signatures stack into one batch."""
    if row is None:
        return None
    if isinstance(row, torch.Tensor):
        return (tuple(row.shape), row.dtype, row.device)
    return tuple((k, (tuple(v.shape), v.dtype, v.device) if isinstance(v, torch.Tensor) else repr(v))
                 for k, v in sorted(row.items()))


def stack(row_list):
    """The batch of rows with one signature."""
    first = row_list[0]
    if first is None:
        return None
    if isinstance(first, torch.Tensor):
        return torch.stack(row_list)
    return {k: torch.stack([r[k] for r in row_list]) if isinstance(v, torch.Tensor) else v for k, v in first.items()}


def call(model, batch):
    return model(**batch) if isinstance(batch, dict) else model(batch)


def logits_of(out):
    """The class scores of a model output: the tensor itself, `.logits`, or out["logits"]."""
    if isinstance(out, torch.Tensor):
        return out
    logits = getattr(out, "logits", None)
    if logits is None and isinstance(out, dict):
        logits = out.get("logits")
    return logits if isinstance(logits, torch.Tensor) else None


@dataclass
class Stats:
    """Per example of one batch: loss (mean over its valid targets), tokens (valid targets),
    accuracy (share predicted correctly, or None: not measured), and the per-token losses and
    validity (n, T) behind them (T = 1 for one target per example)."""
    loss: torch.Tensor
    tokens: torch.Tensor
    accuracy: Optional[torch.Tensor]
    token_losses: torch.Tensor
    valid: torch.Tensor

    @staticmethod
    def of(token_losses, valid, hits=None):
        valid = valid.to(token_losses.device)
        count = valid.sum(dim=1)
        denominator = count.clamp(min=1).to(torch.float64)
        loss = (token_losses.to(torch.float64) * valid).sum(dim=1) / denominator
        accuracy = None if hits is None else (hits.to(valid.device) & valid).sum(dim=1).to(torch.float64) / denominator
        return Stats(loss, count, accuracy, token_losses, valid)

    def detached_cpu(self):
        return Stats(self.loss.detach().cpu(), self.tokens.cpu(), None if self.accuracy is None else self.accuracy.cpu(),
                     self.token_losses.detach().float().cpu(), self.valid.cpu())

    @staticmethod
    def cat(parts):
        width = max(p.token_losses.shape[1] for p in parts)

        def pad(t, fill):
            return t if t.shape[1] == width else F.pad(t, (0, width - t.shape[1]), value=fill)
        return Stats(torch.cat([p.loss for p in parts]), torch.cat([p.tokens for p in parts]),
                     None if any(p.accuracy is None for p in parts) else torch.cat([p.accuracy for p in parts]),
                     torch.cat([pad(p.token_losses, 0.0) for p in parts]), torch.cat([pad(p.valid, False) for p in parts]))


class Measure:
    """Runs the model on a batch and measures every example (loss, tokens, accuracy, token losses).

    Three ways, in this order: `per_example_loss(model, batch)` when given (returns a tensor of n
    losses, or a dict with "loss" and optionally "tokens", "accuracy", "token_losses", "valid");
    a dict batch with labels (`targets` or batch["labels"]): cross-entropy of the output's logits
    per target, targets < 0 ignored, shifted by `label_shift` positions for sequences ("auto":
    the shift whose mean loss equals the model's own `.loss`, 1 when the model reports none, as a
    causal LM's labels are its input ids); otherwise `loss_fn(out, targets, reduction="none")`.
    """

    def __init__(self, loss_fn=None, per_example_loss=None, label_shift="auto"):
        if label_shift not in ("auto", 0, 1):
            raise ValueError(f"label_shift must be 'auto', 0 or 1, got {label_shift!r}")
        self.loss_fn = loss_fn
        self.per_example_loss = per_example_loss
        self.label_shift = label_shift

    def can_measure(self, batch, targets):
        return (self.per_example_loss is not None or self.loss_fn is not None
                or (isinstance(batch, dict) and (targets is not None or "labels" in batch)))

    def __call__(self, model, batch, targets=None):
        """Stats of the batch, with the autograd graph when gradients are enabled."""
        n = size(batch)
        if self.per_example_loss is not None:
            return self._custom(self.per_example_loss(model, batch), n)
        out = call(model, batch)
        if isinstance(batch, dict) and (targets is not None or "labels" in batch) and self.loss_fn is None:
            return self._labels(out, batch["labels"] if targets is None else targets, n)
        if self.loss_fn is None:
            raise ValueError("cannot measure this batch: pass loss_fn= (for model(inputs) with targets), a dict batch "
                             "with labels, or per_example_loss=")
        return self._loss_fn(out, targets, n)

    @staticmethod
    def _custom(result, n):
        if isinstance(result, torch.Tensor):
            result = {"loss": result}
        loss = result["loss"].reshape(n)
        token_losses = result.get("token_losses")
        valid = result.get("valid")
        if token_losses is None:
            token_losses, valid = loss.reshape(n, 1), torch.ones(n, 1, dtype=torch.bool, device=loss.device)
        elif valid is None:
            valid = torch.ones_like(token_losses, dtype=torch.bool)
        tokens = result.get("tokens")
        tokens = valid.sum(dim=1) if tokens is None else torch.as_tensor(tokens).reshape(n)
        accuracy = result.get("accuracy")
        return Stats(loss.to(torch.float64), tokens, None if accuracy is None else accuracy.reshape(n).to(torch.float64),
                     token_losses, valid.bool())

    def _labels(self, out, labels, n):
        logits = logits_of(out)
        if logits is None:
            raise ValueError("the model's output has no logits (a tensor, .logits or ['logits']): pass per_example_loss=")
        if labels.dim() == 1 and logits.dim() == 2:  # one class per example
            return self._cross_entropy(logits, labels.reshape(n, 1), n, 0)
        if tuple(labels.shape) != tuple(logits.shape[:-1]):
            raise ValueError(f"labels {tuple(labels.shape)} do not fit logits {tuple(logits.shape)}: pass per_example_loss=")
        shift = self._shift(out, logits, labels, n)
        return self._cross_entropy(logits.reshape(n, -1, logits.shape[-1]), labels.reshape(n, -1), n, shift)

    def _shift(self, out, logits, labels, n):
        if self.label_shift != "auto":
            return self.label_shift
        reported = getattr(out, "loss", None)
        if reported is None and isinstance(out, dict):
            reported = out.get("loss")
        if not isinstance(reported, torch.Tensor) or reported.numel() != 1:
            self.label_shift = 1
            return 1
        flat_logits, flat_labels = logits.reshape(n, -1, logits.shape[-1]), labels.reshape(n, -1)
        means = {}
        for shift in (1, 0):
            s = self._cross_entropy(flat_logits, flat_labels, n, shift)
            means[shift] = float((s.token_losses.double() * s.valid).sum() / s.valid.sum().clamp(min=1))
            if math.isclose(means[shift], float(reported), rel_tol=1e-4, abs_tol=1e-5):
                self.label_shift = shift
                return shift
        raise ValueError(f"the model's loss {float(reported):.6g} is neither the mean next-token cross-entropy "
                         f"({means[1]:.6g}, labels shifted by one) nor the aligned one ({means[0]:.6g}): pass "
                         "label_shift= or per_example_loss=")

    @staticmethod
    def _cross_entropy(logits, labels, n, shift):
        if shift:
            logits, labels = logits[:, :-shift], labels[:, shift:]
        valid = labels >= 0
        flat = logits.reshape(-1, logits.shape[-1])
        target = labels.reshape(-1).clamp(min=0).to(flat.device)
        token_losses = F.cross_entropy(flat.float(), target, reduction="none").reshape(n, -1)
        hits = flat.detach().argmax(dim=-1).reshape(n, -1) == target.reshape(n, -1)
        return Stats.of(token_losses * valid.to(token_losses.device), valid, hits)

    def _loss_fn(self, out, targets, n):
        loss = self.loss_fn(out, targets, reduction="none")
        per = loss.reshape(n, -1)
        integer = isinstance(targets, torch.Tensor) and not targets.dtype.is_floating_point \
            and targets.dtype != torch.bool
        if integer and targets.numel() == per.numel():
            valid = (targets.reshape(n, -1) >= 0).to(per.device)
        else:
            valid = torch.ones_like(per, dtype=torch.bool)
        logits = logits_of(out)
        hits = None
        if integer and logits is not None and logits.dtype.is_floating_point \
                and tuple(logits.shape[:-1]) == tuple(targets.shape):
            hits = (logits.detach().argmax(dim=-1) == targets).reshape(n, -1)
        return Stats.of(per * valid, valid, hits)


def grouped(items, batch_size):
    """(ids, inputs, targets) batches of (id, input row, target row) items, in order within each
    group of rows that stack together (equal shapes), at most batch_size each."""
    groups = collections.OrderedDict()
    for sid, x, y in items:
        groups.setdefault((signature(x), signature(y)), []).append((sid, x, y))
    for members in groups.values():
        for lo in range(0, len(members), batch_size):
            part = members[lo:lo + batch_size]
            yield [m[0] for m in part], stack([m[1] for m in part]), stack([m[2] for m in part])
