"""Capture and WeightSnapshot records as the Java side reads them (float32 little-endian tensors)."""
import time

import torch

from . import _avro
from .hooks import weight_out_in


def now_ms():
    return int(time.time() * 1000)


def tensor_field(t):
    """A Tensor record: float32 little-endian bytes, copied once from wherever t lives."""
    t = t.detach()
    if t.device.type != "cpu" or t.dtype != torch.float32:
        t = t.to("cpu", torch.float32)
    return {"dtype": "FLOAT32", "shape": list(t.shape), "data": t.contiguous().numpy().tobytes()}


def rows_per_part(d_out, d_in, max_record_bytes, fixed_bytes):
    """Rows of a d_out x d_in float32 weight per WeightSnapshot part when a part's fields other than
    the weight rows take `fixed_bytes` (bias included) and a record may hold `max_record_bytes`."""
    room = max_record_bytes - fixed_bytes
    if room < 4 * d_in:
        raise ValueError(f"a {d_out} x {d_in} weight cannot be split into records of {max_record_bytes} bytes "
                         f"({fixed_bytes} bytes go to the other fields and the bias)")
    return min(d_out, room // (4 * d_in))


class CaptureRecords:
    """Encodes one layer's step of token rows as Capture records, split into parts of at most
    max_record_bytes (a part keeps only the sample ids its tokens belong to, re-indexed)."""

    def __init__(self, run_id, max_record_bytes):
        self.run_id = run_id
        self.max_record_bytes = max_record_bytes
        self.codec = _avro.codec("Capture")

    def encode(self, cap, step, a, g, ids, token_sample, losses, probe, fisher, scale):
        """Yields the encoded parts. a, g: float32 CPU (tokens, d); token_sample: CPU int index or None."""
        tokens = a.shape[0]
        row_bytes = 4 * (cap.d_in + cap.d_out + 1)
        per_part = max(1, min(tokens, self.max_record_bytes // row_bytes)) if tokens else 1
        parts = max(1, -(-tokens // per_part))
        loss_list = [float(x) for x in losses] if losses is not None else []
        for p in range(parts):
            lo, hi = p * per_part, min(tokens, (p + 1) * per_part)
            if token_sample is None:
                part_ids, index = (ids[lo:hi] if ids else []), None
                part_losses = loss_list[lo:hi] if loss_list else []
            elif parts == 1:
                part_ids, part_losses = ids, loss_list
                index = token_sample.to(torch.int32).numpy().tobytes()
            else:
                used, inverse = torch.unique(token_sample[lo:hi], sorted=True, return_inverse=True)
                part_ids = [ids[i] for i in used.tolist()]
                part_losses = [loss_list[i] for i in used.tolist()] if loss_list else []
                index = inverse.to(torch.int32).numpy().tobytes()
            yield self.codec.encode({
                "run_id": self.run_id, "layer": cap.name, "step": int(step), "part": p, "parts": parts,
                "fisher": fisher, "probe": bool(probe), "activations": tensor_field(a[lo:hi]),
                "gradients": tensor_field(g[lo:hi]), "grad_scale": float(scale), "sample_ids": part_ids,
                "token_sample": index, "example_losses": part_losses, "timestamp_ms": now_ms()})


class WeightRecords:
    """WeightSnapshot v2 records of a layer: W as d_out x d_in in row parts, the bias in part 0."""

    def __init__(self, run_id, max_record_bytes):
        self.run_id = run_id
        self.max_record_bytes = max_record_bytes
        self.codec = _avro.codec("WeightSnapshot")
        self._rows = {}

    def fixed_bytes(self, cap):
        """Encoded size of a part without its weight rows, bias included, with slack for the
        varints of lengths and numbers that grow with real values."""
        bias = getattr(cap.module, "bias", None)
        empty = self.codec.encode({
            "run_id": self.run_id, "layer": cap.name, "step": 2**62, "timestamp_ms": now_ms(),
            "weight": {"dtype": "FLOAT32", "shape": [cap.d_out, cap.d_in], "data": b""},
            "bias": tensor_field(bias) if bias is not None else None, "part": 2**30, "parts": 2**30, "row_offset": 2**30})
        return len(empty) + 16

    def check(self, cap):
        """Raises ValueError now (at watch()) for a layer whose weight rows cannot fit a record."""
        self._rows[cap.name] = rows_per_part(cap.d_out, cap.d_in, self.max_record_bytes, self.fixed_bytes(cap))

    def encode(self, cap, step):
        bias = getattr(cap.module, "bias", None)
        w = weight_out_in(cap.module)
        per = self._rows.get(cap.name) or rows_per_part(cap.d_out, cap.d_in, self.max_record_bytes,
                                                        self.fixed_bytes(cap))
        parts = (cap.d_out + per - 1) // per
        stamp = now_ms()
        for p in range(parts):
            lo, hi = p * per, min(cap.d_out, (p + 1) * per)
            yield self.codec.encode({
                "run_id": self.run_id, "layer": cap.name, "step": int(step), "weight": tensor_field(w[lo:hi]),
                "bias": tensor_field(bias) if bias is not None and p == 0 else None, "timestamp_ms": stamp,
                "part": p, "parts": parts, "row_offset": lo})
