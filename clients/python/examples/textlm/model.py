"""A small causal transformer LM with Hugging Face's calling conventions, for examples and tests.

No `transformers` package can be installed here, so this model follows its conventions instead:
`model(**batch)` with `input_ids`, `attention_mask` (1 = real token, 0 = padding) and `labels`
(-100 = ignored), the causal shift done inside the model, and an output with `.logits` and
`.loss` (the mean cross-entropy over the non-ignored next-token targets). Attention is
`nn.MultiheadAttention`, whose `out_proj` is an `nn.Linear` that the attention calls through
its weight, never as a module: the case Curvewatch users meet when they watch `attn.out_proj`.

Module names: `tok_emb`, `pos_emb`, `blocks.{i}.ln1`, `blocks.{i}.attn` (`.out_proj`),
`blocks.{i}.ln2`, `blocks.{i}.mlp.fc` (d -> d_mlp), `blocks.{i}.mlp.proj` (d_mlp -> d), `ln_f`,
`lm_head`.
"""
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = -100


@dataclass
class CausalLMOutput:
    """What a Hugging Face causal LM returns, the fields Curvewatch reads."""
    logits: torch.Tensor
    loss: Optional[torch.Tensor] = None


class Mlp(nn.Module):
    def __init__(self, d_model, d_mlp):
        super().__init__()
        self.fc = nn.Linear(d_model, d_mlp)
        self.proj = nn.Linear(d_mlp, d_model)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln1(x)), then + mlp(ln2(x))."""

    def __init__(self, d_model, n_heads, d_mlp, dropout):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = Mlp(d_model, d_mlp)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, causal_mask, padding_mask):
        h = self.ln1(x)
        attended, _ = self.attn(h, h, h, attn_mask=causal_mask, key_padding_mask=padding_mask, need_weights=False)
        x = x + self.drop(attended)
        return x + self.drop(self.mlp(self.ln2(x)))


class TinyCausalLM(nn.Module):
    def __init__(self, vocab_size, d_model=128, n_layers=2, n_heads=4, d_mlp=512, max_len=128, dropout=0.0):
        super().__init__()
        self.max_len = max_len
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Embedding(max_len, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, d_mlp, dropout) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        self.apply(self._init)

    @staticmethod
    def _init(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    def forward(self, input_ids, attention_mask=None, labels=None):
        batch, length = input_ids.shape
        if length > self.max_len:
            raise ValueError(f"sequence of {length} tokens, the model takes at most {self.max_len}")
        positions = torch.arange(length, device=input_ids.device)
        x = self.tok_emb(input_ids) + self.pos_emb(positions)[None]
        # True above the diagonal: position t attends to positions <= t only
        causal = torch.ones(length, length, dtype=torch.bool, device=input_ids.device).triu(1)
        padding = None if attention_mask is None else attention_mask == 0
        for block in self.blocks:
            x = block(x, causal, padding)
        logits = self.lm_head(self.ln_f(x))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                                   ignore_index=IGNORE_INDEX)
        return CausalLMOutput(logits=logits, loss=loss)


def token_losses(logits, labels):
    """Per-token next-token losses (batch, length - 1), 0 where the target is ignored, and the
    mask of non-ignored targets: the shift the model applies, made visible per token."""
    targets = labels[:, 1:]
    valid = targets != IGNORE_INDEX
    losses = F.cross_entropy(logits[:, :-1].transpose(1, 2), targets.clamp(min=0), reduction="none")
    return losses * valid, valid
