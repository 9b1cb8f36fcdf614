"""The examples edit candidates are evaluated on: the probe batch and the recent training examples."""
import collections

import torch

from . import batches

from .limits import MAX_TRAINING_EXAMPLES as MAX_RECENT_EXAMPLES
# Default: 128 recent examples. Under BISECT the training examples are evaluated at the candidate
# found and the train_candidates only, so their count sets most of an answer's cost; 128 examples
# of a 64-token LM are ~8,000 targets, enough for the memorization gap's mean (its standard error
# is the spread of per-example edit sensitivities over sqrt(128)), and the service's top-example
# lists come from them. Raise it (up to 512) for rare memorized examples.
DEFAULT_RECENT_EXAMPLES = 128


class RecentExamples:
    """The most recent distinct training examples (by sample id), at most `capacity`.

    A repeated id replaces its older copy (so its label is the one trained on now); beyond the
    capacity the oldest goes. Each example is a detached copy of its rows of the inputs (a tensor
    or a dict batch) and targets (None for dict batches carrying labels), on the device they came
    from: memory is at most capacity x (bytes of one example's rows).
    """

    def __init__(self, capacity=DEFAULT_RECENT_EXAMPLES):
        if not 0 < int(capacity) <= MAX_RECENT_EXAMPLES:
            raise ValueError(f"recent_examples must be in 1..{MAX_RECENT_EXAMPLES}, got {capacity}")
        self.capacity = int(capacity)
        self._items = collections.OrderedDict()

    def add(self, sample_ids, inputs, targets=None):
        """inputs: a batch (tensor or dict) or a list of micro-batches; targets likewise (or None)."""
        if isinstance(inputs, (list, tuple)):
            parts = list(zip(inputs, targets if targets is not None else [None] * len(inputs)))
        else:
            parts = [(inputs, targets)]
        ids = [str(s) for s in sample_ids]
        total = sum(batches.size(x) for x, _ in parts)
        if total != len(ids):
            raise ValueError(f"{len(ids)} sample ids but {total} examples in inputs")
        offset = 0
        for x, y in parts:
            if not batches.is_batch(x) or (y is not None and not isinstance(y, torch.Tensor)):
                raise TypeError("inputs must be tensors or dict batches whose first dimension is the example, "
                                "targets tensors (or None)")
            n = batches.size(x)
            for sid, xr, yr in zip(ids[offset:offset + n], batches.rows(x, n), batches.rows(y, n)):
                self._items.pop(sid, None)
                self._items[sid] = (xr, yr)
                if len(self._items) > self.capacity:
                    self._items.popitem(last=False)
            offset += n

    def __len__(self):
        return len(self._items)

    def ids(self):
        return list(self._items)

    def items(self):
        """(sample id, input row, target row) of every kept example, oldest first."""
        return [(sid, x, y) for sid, (x, y) in self._items.items()]

    def batches(self, batch_size):
        """(ids, inputs, targets) batches, oldest first, examples of equal shapes stacked together."""
        return batches.grouped(self.items(), batch_size)


class ProbeSet:
    """The held-out probe examples (a copy of the latest probe batch)."""

    def __init__(self, inputs, targets, sample_ids):
        if not batches.is_batch(inputs) or (targets is not None and not isinstance(targets, torch.Tensor)):
            raise TypeError("probe inputs must be a tensor or dict batch whose first dimension is the example")
        self.ids = [str(s) for s in sample_ids]
        n = batches.size(inputs)
        if n != len(self.ids) or (targets is not None and targets.shape[0] != n):
            raise ValueError(f"{len(self.ids)} probe ids but {n} examples")
        self.items = list(zip(self.ids, batches.rows(inputs, n), batches.rows(targets, n)))

    def batches(self, batch_size):
        return batches.grouped(self.items, batch_size)
