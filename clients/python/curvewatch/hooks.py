"""Per-token capture of layer inputs a and output-gradients g on watched linear layers.

A forward hook keeps the layer input and registers a hook on the layer output's gradient, so each
call of the layer (each micro-batch of a step with gradient accumulation) gets its own (a, g) pair,
however the backward passes are interleaved. Every leading dimension (batch, sequence) is a token.
Hugging Face's Conv1D stores W as (d_in, d_out) and computes s = a W + b: the same a and g, but its
weight must be transposed to the (d_out, d_in) layout of the contract.

`nn.MultiheadAttention` calls its `out_proj` through the weight (`F.linear(x, out_proj.weight, ...)`),
never as a module, so module hooks there never fire: `OutProjCapture` wraps the attention's forward
and, for the duration of that call only, sees the `F.linear` call that uses out_proj's weight.

A layer that runs twice in one forward pass (tied or reused weights: a second call starts before
the first one's gradient arrived, and both get one) is refused rather than paired by guess.

`ForwardContext` wraps the watched model's own forward and holds the padding mask of the current
call (`attention_mask` of `model(**batch)` by default), so padded tokens are never captured.
"""
import math
import time
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


def is_transposed(module):
    """True for Hugging Face Conv1D-style layers (weight d_in x d_out, attribute nf = d_out)."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf")


def dims(module):
    """(d_in, d_out) of a watched layer."""
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    if is_transposed(module):
        return module.weight.shape[0], module.weight.shape[1]
    raise TypeError(f"cannot watch {type(module).__name__}: only nn.Linear and Conv1D-style layers")


def weight_out_in(module):
    """The weight as d_out x d_in, detached, on the CPU."""
    w = module.weight.detach()
    return (w.t() if is_transposed(module) else w).to("cpu", torch.float32).contiguous()


def attention_owner(model, name):
    """The nn.MultiheadAttention whose out_proj `name` is, or None."""
    parent_name, _, leaf = name.rpartition(".")
    if leaf != "out_proj":
        return None
    parent = model.get_submodule(parent_name) if parent_name else model
    return parent if isinstance(parent, nn.MultiheadAttention) else None


def set_forward(module, forward):
    """Replaces module.forward by an instance attribute; returns an undo function that puts back
    exactly what was there (an instance attribute someone else set, or the class's method)."""
    had = "forward" in module.__dict__
    previous = module.__dict__.get("forward")
    module.forward = forward

    def undo():
        if had:
            module.forward = previous
        else:
            del module.forward
    return undo


class Clock:
    """Seconds the client spends, by kind (capture, answer), to report its overhead."""

    def __init__(self):
        self.seconds = {"capture": 0.0, "answer": 0.0}

    def add(self, kind, since):
        self.seconds[kind] += time.perf_counter() - since


class ForwardContext:
    """Wraps the model's forward: holds the current call's padding mask."""

    def __init__(self, model, mask_key="attention_mask"):
        self.mask_key = mask_key
        self.mask = None
        inner = model.forward

        def forward(*args, **kwargs):
            outer_mask = self.mask
            mask = kwargs.get(mask_key) if mask_key else None
            if mask is None and mask_key and args and isinstance(args[0], dict):
                mask = args[0].get(mask_key)
            self.mask = mask if isinstance(mask, torch.Tensor) else None
            try:
                return inner(*args, **kwargs)
            finally:
                self.mask = outer_mask
        self._undo = set_forward(model, forward)

    def remove(self):
        if self._undo is not None:
            self._undo()
            self._undo = None


@dataclass
class Micro:
    """One call of a layer with gradients enabled: its input a (*lead, d_in), output-gradient g
    (*lead, d_out) once backward reached it, and the padding mask over the lead dims (or None)."""
    a: torch.Tensor
    mask: Optional[torch.Tensor] = None
    examples: Optional[int] = None  # leading (batch) dimension when a has >= 3 dims
    g: Optional[torch.Tensor] = None
    overlaps: tuple = ()  # earlier calls still waiting for their gradient when this one ran


class LayerCapture:
    """Collects the (a, g) pairs of one layer's calls since the last take()."""

    def __init__(self, name, module, context, clock, owner=None):
        self.name = name
        self.module = module
        self.d_in, self.d_out = dims(module)
        self.transposed = is_transposed(module)
        self.has_bias = getattr(module, "bias", None) is not None
        self.context = context
        self.clock = clock
        self.enabled = True
        self.mask_mismatch = False  # set once a mask did not fit this layer's input (then tokens are all kept)
        self._micros = []
        self.owner = owner  # the module that executes the weight (an attention for out_proj)
        if owner is None:
            self._handles = [module.register_forward_hook(self._forward)]
        else:
            self._handles = []
            self._undo = set_forward(owner, self._attention_forward(owner, owner.forward))

    # -- nn.Linear / Conv1D: module hooks --------------------------------------------------------
    def _forward(self, module, inputs, output):
        if self.enabled and torch.is_grad_enabled() and isinstance(output, torch.Tensor) and output.requires_grad:
            started = time.perf_counter()
            a = inputs[0].detach()
            self._record(a, output, self._mask_for(a.shape[:-1]))
            self.clock.add("capture", started)

    def _record(self, a, output, mask, examples=None, reorder=None):
        micro = Micro(a, mask, examples if examples is not None else (a.shape[0] if a.dim() >= 3 else None),
                      overlaps=tuple(m for m in self._micros if m.g is None))
        self._micros.append(micro)

        def gradient(grad):
            micro.g = grad.detach() if reorder is None else reorder(grad.detach())
        output.register_hook(gradient)

    def _mask_for(self, lead):
        mask = self.context.mask if self.context else None
        if mask is None:
            return None
        if tuple(mask.shape) != tuple(lead):
            self.mask_mismatch = True
            return None
        return mask

    # -- nn.MultiheadAttention's out_proj --------------------------------------------------------
    def _attention_forward(self, attention, inner):
        weight = self.module.weight

        def forward(*args, **kwargs):
            if not (self.enabled and torch.is_grad_enabled()):
                return inner(*args, **kwargs)
            query = args[0] if args else kwargs["query"]
            if query.dim() == 3:
                batch, length = (query.shape[0], query.shape[1]) if attention.batch_first else \
                    (query.shape[1], query.shape[0])
            else:
                batch, length = 1, query.shape[0]
            plain = F.linear

            def linear(x, w, b=None):
                out = plain(x, w, b)
                if w is weight and out.requires_grad:
                    started = time.perf_counter()
                    # rows come as (length, batch) inside the attention: reorder to (batch, length)
                    a = x.detach().reshape(length, batch, -1).transpose(0, 1)
                    self._record_out_proj(a, out, batch, length)
                    self.clock.add("capture", started)
                return out
            F.linear = linear
            try:
                return inner(*args, **kwargs)
            finally:
                F.linear = plain
        return forward

    def _record_out_proj(self, a, out, batch, length):
        self._record(a, out, self._mask_for((batch, length)), examples=batch,
                     reorder=lambda grad: grad.reshape(length, batch, -1).transpose(0, 1))

    # -- taking what was captured ----------------------------------------------------------------
    def take(self):
        """The complete (a, g) micro-batches since the last call, and clears them. A call without a
        gradient (a forward that was never backpropagated) is left out."""
        micros, self._micros = self._micros, []
        complete = [m for m in micros if m.g is not None]
        if any(o.g is not None for m in complete for o in m.overlaps):
            raise RuntimeError(f"layer {self.name} runs more than once per forward pass (tied or reused weights), "
                               "which this client cannot pair per token; watch a layer that runs once per pass")
        for m in complete:
            if m.a.shape[:-1] != m.g.shape[:-1]:
                raise RuntimeError(f"layer {self.name}: input tokens {tuple(m.a.shape[:-1])} but gradient tokens "
                                   f"{tuple(m.g.shape[:-1])}")
        return complete

    def stash(self):
        """Sets aside what is captured so far (restored by unstash) so a side pass can use the hooks."""
        micros, self._micros = self._micros, []
        return micros

    def unstash(self, micros):
        self._micros = micros + self._micros

    def remove(self):
        for h in self._handles:
            h.remove()
        self._handles = []
        if self.owner is not None and self._undo is not None:
            self._undo()
            self._undo = None


def token_rows(micros, d_in, d_out, n_ids, keep=0, generator=None):
    """The step's token rows: (a (rows, d_in), g (rows, d_out), index, count).

    count: the real tokens of the micro-batches (padding, mask 0, left out); when keep > 0 and
    count > keep, a random `keep` of them (ascending) are the rows, else all. Only the rows kept
    are copied out of the captured tensors (on their device, in their dtype). index: per row, the
    example it belongs to among the n_ids sample ids (CPU), or None without ids. Micro-batches
    with a batch dimension number their examples consecutively; 2-D inputs (one row per example,
    or flattened tokens) are spread evenly over the ids."""
    spans, idx_parts = [], []  # per micro: (micro, its real rows as flat indices of its lead dims)
    offset, batched = 0, True
    for m in micros:
        lead = m.a.shape[:-1]
        count = math.prod(lead)
        real = torch.arange(count) if m.mask is None else (m.mask.reshape(-1) != 0).nonzero().squeeze(1).cpu()
        if m.examples is not None:
            idx_parts.append(offset + real // max(1, count // m.examples))
            offset += m.examples
        else:
            batched = False
        spans.append((m, real))
    total = sum(len(r) for _, r in spans)
    index = None
    if n_ids:
        if batched:
            if offset != n_ids:
                raise ValueError(f"{offset} examples were captured in this step's micro-batches, but {n_ids} sample ids given")
            index = torch.cat(idx_parts)
        else:
            flat = sum(math.prod(m.a.shape[:-1]) for m, _ in spans)
            if flat % n_ids:
                raise ValueError(f"{flat} tokens do not divide into {n_ids} examples")
            index = torch.cat([r + sum(math.prod(x.a.shape[:-1]) for x, _ in spans[:k]) for k, (_, r) in enumerate(spans)])
            index = index // (flat // n_ids)
    chosen = None
    if keep and total > keep:
        chosen = torch.randperm(total, generator=generator)[:keep].sort().values
        index = None if index is None else index[chosen]
    a_parts, g_parts, start = [], [], 0
    for m, real in spans:
        rows = real
        if chosen is not None:
            inside = chosen[(chosen >= start) & (chosen < start + len(real))] - start
            rows = real[inside]
        start += len(real)
        a_parts.append(_gather(m.a, rows))
        g_parts.append(_gather(m.g, rows))
    a = torch.cat(a_parts) if len(a_parts) > 1 else a_parts[0]
    g = torch.cat(g_parts) if len(g_parts) > 1 else g_parts[0]
    return a, g, index, total


def _gather(t, rows):
    """Rows (flat indices over t's lead dims) of t as (len(rows), features), copying only them even
    when t is a non-contiguous view (out_proj's (batch, length) view of a (length, batch) tensor)."""
    lead = t.shape[:-1]
    if len(rows) == math.prod(lead):
        return t.reshape(-1, t.shape[-1])
    if len(lead) == 1:
        return t.index_select(0, rows.to(t.device))
    coords = torch.unravel_index(rows, lead) if hasattr(torch, "unravel_index") else _unravel(rows, lead)
    return t[tuple(c.to(t.device) for c in coords)]


def _unravel(flat, shape):
    coords = []
    for size in reversed(shape):
        coords.append(flat % size)
        flat = flat // size
    return tuple(reversed(coords))
