"""Per-token capture of layer inputs a and output-gradients g on watched linear layers.

A forward pre-hook keeps the layer input; a full backward hook receives dL/ds for the layer output
s. Both are flattened to (tokens, features): every leading dimension (batch, sequence) is a token.
Hugging Face's Conv1D stores W as (d_in, d_out) and computes s = a W + b: the same a and g, but its
weight must be transposed to the (d_out, d_in) layout of the contract.
"""
import torch
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


class LayerCapture:
    """Holds the latest forward input and backward output-gradient of one layer."""

    def __init__(self, name, module):
        self.name = name
        self.module = module
        self.d_in, self.d_out = dims(module)
        self.transposed = is_transposed(module)
        self.has_bias = getattr(module, "bias", None) is not None
        self.enabled = True
        self.a = None
        self.g = None
        self._backward_calls = 0
        self._handles = [module.register_forward_pre_hook(self._forward_pre),
                         module.register_full_backward_hook(self._backward)]

    def _forward_pre(self, module, inputs):
        if self.enabled and torch.is_grad_enabled():
            self.a = inputs[0].detach().reshape(-1, self.d_in)
            self.g = None
            self._backward_calls = 0

    def _backward(self, module, grad_input, grad_output):
        if self.enabled and grad_output[0] is not None:
            # a second gradient for one stored input means the layer ran twice in the pass (tied or
            # reused weights): pairing would be ambiguous, so take() refuses instead of guessing
            self._backward_calls += 1
            if self._backward_calls == 1:
                self.g = grad_output[0].detach().reshape(-1, self.d_out)

    def take(self):
        """The captured (a, g) pair, float32 on the CPU, and clears it; None if incomplete."""
        a, g, calls = self.a, self.g, self._backward_calls
        self.a = self.g = None
        self._backward_calls = 0
        if calls > 1:
            raise RuntimeError(f"layer {self.name} received {calls} output-gradients for one forward input: it "
                               "runs more than once per forward pass (tied or reused weights), which this client "
                               "cannot pair per token; watch a layer that runs once per pass")
        if a is None or g is None:
            return None
        if a.shape[0] != g.shape[0]:
            raise RuntimeError(f"layer {self.name}: {a.shape[0]} input tokens but {g.shape[0]} gradient tokens "
                               "(was the layer called twice in one forward pass?)")
        return a.to("cpu", torch.float32), g.to("cpu", torch.float32)

    def stash(self):
        """Sets aside what is captured so far (restored by unstash) so a side pass can use the hooks."""
        state = (self.a, self.g, self._backward_calls)
        self.a = self.g = None
        self._backward_calls = 0
        return state

    def unstash(self, state):
        self.a, self.g, self._backward_calls = state

    def remove(self):
        for h in self._handles:
            h.remove()
        self._handles = []
