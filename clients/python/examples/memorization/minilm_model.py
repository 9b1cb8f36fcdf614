"""MiniLM split for fine-tuning on two shared CPU cores: the lower layers frozen and run once (their
output cached per example), the top layers and a classification head trained.

`TopClassifier` is an ordinary HF-style module: `model(hidden_states=, attention_mask=, labels=)`
returns `.logits` and `.loss`; its MLP matrices keep MiniLM's names
(`encoder.layer.5.intermediate.dense`, `encoder.layer.5.output.dense`).
"""
import copy

import torch
import torch.nn.functional as F
from torch import nn

from .bert import ClassifierOutput


class _Layers(nn.Module):
    def __init__(self, layers, first):
        super().__init__()
        self.layer = nn.ModuleDict({str(first + i): copy.deepcopy(m) for i, m in enumerate(layers)})


def _head(hidden, classes, seed):
    """The classification head: weights N(0, 0.02²) drawn from `seed`, bias 0."""
    g = torch.Generator().manual_seed(seed)
    head = nn.Linear(hidden, classes)
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=g) * 0.02)
        head.bias.zero_()
    return head


def _classified(head, x, attention_mask, labels):
    """The head on the mean of x over the unmasked positions; the cross-entropy loss when labels are given."""
    m = attention_mask[..., None].to(x.dtype)
    logits = head((x * m).sum(1) / m.sum(1).clamp(min=1))
    loss = None if labels is None else F.cross_entropy(logits, labels)
    return ClassifierOutput(logits, loss)


class TopClassifier(nn.Module):
    def __init__(self, bert, first_trainable, classes, seed=0):
        super().__init__()
        self.encoder = _Layers(list(bert.encoder.layer)[first_trainable:], first_trainable)
        self.head = _head(bert.config.hidden, classes, seed)

    def forward(self, hidden_states, attention_mask, labels=None):
        mask_bias = (1.0 - attention_mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        x = hidden_states
        for layer in self.encoder.layer.values():
            x = layer(x, mask_bias)
        return _classified(self.head, x, attention_mask, labels)


class _MlpLayer(nn.Module):
    def __init__(self, layer):
        super().__init__()
        self.intermediate = copy.deepcopy(layer.intermediate)
        self.output = copy.deepcopy(layer.output)

    def forward(self, x):
        return self.output(self.intermediate(x), x)


class MlpClassifier(nn.Module):
    """Only layer `first_trainable`'s MLP (intermediate.dense, output.dense and its LayerNorm) and the
    head are trained; its attention is frozen with the layers below (its output is the input here,
    `hidden_states`). Same module names as TopClassifier's MLP."""

    def __init__(self, bert, first_trainable, classes, seed=0):
        super().__init__()
        layer = _Layers([_MlpLayer(bert.encoder.layer[first_trainable])], first_trainable)
        self.encoder = layer
        self.head = _head(bert.config.hidden, classes, seed)

    def forward(self, hidden_states, attention_mask, labels=None):
        x = hidden_states
        for layer in self.encoder.layer.values():
            x = layer(x)
        return _classified(self.head, x, attention_mask, labels)


@torch.no_grad()
def frozen_prefix(bert, batch, first_trainable, through_attention=False):
    """The hidden states entering layer `first_trainable` (embeddings + the layers below it), or,
    with through_attention, entering that layer's MLP (its attention block run too)."""
    mask = batch["attention_mask"]
    mask_bias = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
    x = bert.embeddings(batch["input_ids"], batch["token_type_ids"])
    for layer in list(bert.encoder.layer)[:first_trainable]:
        x = layer(x, mask_bias)
    if through_attention:
        x = bert.encoder.layer[first_trainable].attention(x, mask_bias)
    return x
