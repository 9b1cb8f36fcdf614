"""Reuse of the forward pass below an edited layer, without model surgery.

An edit of one layer cannot change the output of a module that completes before that layer
starts. So in the unedited ("now") pass the outputs of the top-most such modules are recorded
(forward hooks, cloned), and in each edited pass those modules' `forward` is replaced, for the
pass only, by a replay of the recorded output (cloned again: the parent may modify it in place).
Only the layers from the edited one upwards run again.

It holds up only if nothing else feeds on the edited weight earlier (tied weights: then no
replay) and the modules are deterministic in eval mode; so the first time a layer is answered,
a replayed unedited pass is compared with the plain one bit for bit, and the layer falls back to
full forward passes for good if they differ. A recorded module that also runs after the edited
layer started (a dropout used twice in a block) replays its recorded calls and runs for real after. The recorded outputs are bounded by `max_bytes` per answer: batches
beyond it run in full.
"""
import contextlib
import dataclasses

import torch

from .hooks import set_forward


class Unrecordable(TypeError):
    """A module output of a kind replay cannot copy."""


def _clone(value):
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(_clone(v) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(_clone(v) for v in value)
    if isinstance(value, dict):
        return type(value)((k, _clone(v)) for k, v in value.items())
    if value is None or isinstance(value, (int, float, bool, str)):
        return value
    if dataclasses.is_dataclass(value):
        return dataclasses.replace(value, **{f.name: _clone(getattr(value, f.name)) for f in dataclasses.fields(value)})
    raise Unrecordable(f"cannot record a module output of type {type(value).__name__}")


def _within(module, owner):
    return module is owner or any(module is m for m in owner.modules())


def _nbytes(value):
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (tuple, list)):
        return sum(_nbytes(v) for v in value)
    if isinstance(value, dict):
        return sum(_nbytes(v) for v in value.values())
    if dataclasses.is_dataclass(value):
        return sum(_nbytes(getattr(value, f.name)) for f in dataclasses.fields(value))
    return 0


class ForwardReplay:
    """Per edited layer: which modules to replay (found and verified once), and one answer's cache."""

    def __init__(self, model, owner, weight, max_bytes):
        self.model = model
        self.owner = owner  # the module that executes the edited weight (the layer, or its attention)
        self.max_bytes = int(max_bytes)
        self.plan = None  # [(name, module)] top-most modules that finish before the owner starts
        self.verified = False
        self.disabled = None  # why replay is off for this layer, or None
        self.replayed_batches = 0
        self.full_batches = 0
        names = {id(m): n for n, m in model.named_modules()}
        owner_name = names.get(id(owner))
        if owner_name is None:
            self.disabled = "the edited layer is not a submodule of the model"
        elif any(p is weight for m in model.modules() if not _within(m, owner) for p in m.parameters(recurse=False)):
            self.disabled = "the edited weight is shared with another module (tied weights)"
        self._owner_name = owner_name or ""
        self._cache = {}
        self._bytes = 0

    def _candidates(self):
        """Modules that may finish before the owner starts: not the owner, its ancestors or descendants."""
        prefix = self._owner_name + "."
        out = []
        for name, m in self.model.named_modules():
            if not name or m is self.owner or name.startswith(prefix) or prefix.startswith(name + "."):
                continue
            out.append((name, m))
        return out

    @contextlib.contextmanager
    def answer(self):
        """One answer: the cache lives inside this block."""
        self._cache, self._bytes = {}, 0
        try:
            yield self
        finally:
            self._cache, self._bytes = {}, 0

    def record(self, index, run):
        """Runs run() (a forward pass of batch `index` under the current weight), recording what the
        edited passes of this batch will replay; returns run()'s result."""
        if self.disabled is not None:
            return run()
        discovering = self.plan is None
        watched = self._candidates() if discovering else self.plan
        outputs = {name: [] for name, _ in watched}
        state = {"started": False, "bytes": 0}

        def starts(module, inputs):
            state["started"] = True
        handles = [self.owner.register_forward_pre_hook(starts)]
        for name, m in watched:
            def done(module, inputs, output, name=name):
                if not state["started"]:
                    outputs[name].append(_clone(output))
                    state["bytes"] += _nbytes(output)
            handles.append(m.register_forward_hook(done))
        try:
            result = run()
        except Unrecordable as e:
            self.disabled = str(e)
            result = None
        finally:
            for h in handles:
                h.remove()
        if result is None and self.disabled is not None:
            return run()
        if discovering:
            recorded = {name for name, calls in outputs.items() if calls}
            self.plan = [(name, m) for name, m in watched if name in recorded
                         and not any(name.startswith(other + ".") for other in recorded)]
            if not state["started"] or not self.plan:
                self.disabled = "no module finishes before the edited layer starts"
                return result
            outputs = {name: outputs[name] for name, _ in self.plan}
            state["bytes"] = sum(_nbytes(v) for calls in outputs.values() for v in calls)
        if self._bytes + state["bytes"] <= self.max_bytes:
            self._cache[index] = outputs
            self._bytes += state["bytes"]
        if not self.verified:
            self._verify(index, run, result)
        return result

    def _verify(self, index, run, plain):
        """A replayed unedited pass must give the plain pass's output bit for bit."""
        if index not in self._cache:
            return
        outputs = {}

        def keep(module, inputs, output, slot):
            outputs[slot] = _clone(output)
        h = self.model.register_forward_hook(lambda m, i, o: keep(m, i, o, "replayed"))
        try:
            self.replay(index, run)
        finally:
            h.remove()
        h = self.model.register_forward_hook(lambda m, i, o: keep(m, i, o, "plain"))
        try:
            run()
        finally:
            h.remove()
        if self.disabled is None and not _equal(outputs.get("replayed"), outputs.get("plain")):
            self.disabled = "a replayed unedited pass differs from the plain one"
        if self.disabled is not None:
            self._cache = {}
        self.verified = True

    def replay(self, index, run):
        """Runs run() with the recorded modules replayed (a full pass when this batch has no cache)."""
        cached = self._cache.get(index) if self.disabled is None else None
        if cached is None:
            self.full_batches += 1
            return run()
        queues = {name: list(calls) for name, calls in cached.items()}
        undo = []
        for name, m in self.plan:
            def replayed(*args, name=name, real=m.forward, **kwargs):
                return _clone(queues[name].pop(0)) if queues[name] else real(*args, **kwargs)
            undo.append(set_forward(m, replayed))
        try:
            result = run()
        finally:
            for u in reversed(undo):
                u()
        self.replayed_batches += 1
        return result


def _equal(a, b):
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if dataclasses.is_dataclass(a) and dataclasses.is_dataclass(b):
        return type(a) is type(b) and all(_equal(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    return a == b
