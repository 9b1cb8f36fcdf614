"""Answering the service's edit candidates from a PyTorch loop (docs/SERVICE-CONTRACT.md §1).

The service sends, per layer and factor refresh, an EditCandidate: the Kronecker eigenbases U_G,
U_A with their spectra λ, μ, and candidate keep-mass thresholds τ_k. The trainer answers with a
ProbeResult: per example, the loss (and whether the prediction is correct) under its current
weights and under every W'_k = U_G ((U_Gᵀ W U_A) ∘ M_k) U_Aᵀ with M_k = [λ_i μ_j ≥ τ_k], from real
forward passes. The service calibrates ρ from them (probe accuracy or loss within a tolerance).

Examples evaluated: the latest probe batch handed to `Watcher.probe` (probe=true) and the recent
training examples handed to `Watcher.step(..., inputs=, targets=)` (probe=false), at most 512.
"""
import collections
import contextlib
import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from . import _avro
from .hooks import dims, is_transposed

MAX_RECENT_EXAMPLES = 512  # the contract's "sample of up to 512 recent training examples"
# probe-results is created with max.message.bytes 1 MiB (TopicSpec.DEFAULT_MAX_MESSAGE_BYTES); Kafka framing
PROBE_RESULT_MAX_BYTES = 1024 * 1024 - 4096
FLOAT32_MAX = float(np.finfo(np.float32).max)
ORTHONORMAL_TOLERANCE = 1e-3  # ‖Uᵀ U x − x‖ / ‖x‖; float32 rounding of a true basis gives ~1e-5 at n = 1448
_DTYPES = {"FLOAT32": "<f4", "FLOAT64": "<f8"}


class CandidateError(ValueError):
    """A candidate that cannot be answered as sent (refused, counted, warned about)."""


@dataclass
class Candidate:
    """A validated EditCandidate: bases and spectra as float64 CPU tensors."""
    candidate_id: str
    layer: str
    step: int
    factor_version: int
    basis_g: torch.Tensor   # d_out x d_out, eigenvectors in columns
    basis_a: torch.Tensor   # d_in x d_in
    eigenvalues_g: torch.Tensor
    eigenvalues_a: torch.Tensor
    rhos: list
    thresholds: list
    received: float = field(default_factory=time.monotonic)


def _tensor(record, name, shape):
    t = record[name]
    if t["dtype"] not in _DTYPES:
        raise CandidateError(f"{name}: dtype {t['dtype']} (FLOAT32 or FLOAT64 expected)")
    if list(t["shape"]) != list(shape):
        raise CandidateError(f"{name}: shape {list(t['shape'])}, the layer needs {list(shape)}")
    width = 4 if t["dtype"] == "FLOAT32" else 8
    if len(t["data"]) != math.prod(shape) * width:
        raise CandidateError(f"{name}: {len(t['data'])} bytes for shape {list(shape)} {t['dtype']}")
    values = torch.from_numpy(np.frombuffer(t["data"], dtype=_DTYPES[t["dtype"]]).astype(np.float64)).reshape(shape)
    if not torch.isfinite(values).all():
        raise CandidateError(f"{name} holds NaN or infinite values")
    return values


def _width(dtype):
    if dtype not in _DTYPES:
        raise CandidateError(f"dtype {dtype} (FLOAT32 or FLOAT64 expected)")
    return 4 if dtype == "FLOAT32" else 8


def _check_spectrum(values, name):
    if (values < 0).any() or (values[1:] > values[:-1]).any():
        raise CandidateError(f"{name} must be >= 0 and descending")


def _check_orthonormal(u, name):
    """A cheap check, O(n²): Uᵀ(U x) = x for four random x (exact for an orthogonal U)."""
    x = torch.randn(u.shape[0], 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    err = torch.linalg.norm(u.t() @ (u @ x) - x) / torch.linalg.norm(x)
    if not err < ORTHONORMAL_TOLERANCE:
        raise CandidateError(f"{name} is not orthonormal (‖UᵀUx − x‖/‖x‖ = {float(err):.2e})")


def parse_candidate(record, layers):
    """Validates a decoded EditCandidate against the watched layers ({name: (d_in, d_out)})."""
    layer = record["layer"]
    if layer not in layers:
        raise CandidateError(f"unknown layer {layer!r} (watched: {sorted(layers)})")
    if not record["candidate_id"]:
        raise CandidateError("empty candidate_id")
    d_in, d_out = layers[layer]
    rhos, taus = [float(r) for r in record["rhos"]], [float(t) for t in record["thresholds"]]
    if not rhos or len(rhos) != len(taus):
        raise CandidateError(f"{len(rhos)} rhos and {len(taus)} thresholds (one threshold per rho, at least one)")
    if not all(0 < r <= 1 for r in rhos) or not all(t >= 0 and math.isfinite(t) for t in taus):
        raise CandidateError(f"rhos must be in (0, 1] and thresholds finite and >= 0: {rhos}, {taus}")
    c = Candidate(record["candidate_id"], layer, int(record["step"]), int(record["factor_version"]),
                  _tensor(record, "basis_g", (d_out, d_out)), _tensor(record, "basis_a", (d_in, d_in)),
                  _tensor(record, "eigenvalues_g", (d_out,)), _tensor(record, "eigenvalues_a", (d_in,)), rhos, taus)
    _check_spectrum(c.eigenvalues_g, "eigenvalues_g")
    _check_spectrum(c.eigenvalues_a, "eigenvalues_a")
    _check_orthonormal(c.basis_g, "basis_g")
    _check_orthonormal(c.basis_a, "basis_a")
    return c


class CandidateParts:
    """Reassembles EditCandidates the service split into row parts (EditCandidate v2).

    Part k holds rows [g_row_offset, +basis_g rows) of U_G and [a_row_offset, +basis_a rows) of U_A;
    part 0 alone carries the spectra, rhos and thresholds. Parts arrive in order per layer (one key,
    one partition); at most one candidate is in progress per layer, so memory stays at one candidate
    per layer, and a new part 0 replaces an unfinished one. A part that does not continue its layer's
    candidate raises CandidateError and the unfinished candidate is discarded, never completed with
    another's rows.
    """

    def __init__(self):
        self._open = {}
        self.discarded = 0

    def _discard(self, layer):
        if self._open.pop(layer, None) is not None:
            self.discarded += 1

    def accept(self, record, layers):
        """The whole record once `record` completes it (at once for a one-part candidate), else None."""
        layer = record["layer"]
        if layer not in layers:
            raise CandidateError(f"unknown layer {layer!r} (watched: {sorted(layers)})")
        d_in, d_out = layers[layer]
        k, n = int(record["part"]), int(record["parts"])
        if n < 1 or not 0 <= k < n:
            raise CandidateError(f"part {k} of {n}: need 0 <= part < parts")
        if n == 1:
            if record["g_row_offset"] or record["a_row_offset"]:
                raise CandidateError("a one-part candidate must start at row 0")
            self._discard(layer)
            return record
        p = self._open.get(layer)
        if k == 0:
            self._discard(layer)
            # the whole bases, allocated once at the layer's known sides (never at sizes a record claims)
            p = {"first": record, "next": 0, "g": bytearray(_width(record["basis_g"]["dtype"]) * d_out * d_out),
                 "a": bytearray(_width(record["basis_a"]["dtype"]) * d_in * d_in), "g_rows": 0, "a_rows": 0}
            self._open[layer] = p
        elif (p is None or p["first"]["candidate_id"] != record["candidate_id"] or p["next"] != k
              or p["first"]["parts"] != n):
            expected = "a part 0" if p is None else \
                f"part {p['next']} of {p['first']['parts']} of candidate {p['first']['candidate_id']!r}"
            self._discard(layer)
            raise CandidateError(f"part {k} of {n} arrived while expecting {expected}"
                                 + ("" if p is None else "; the unfinished candidate is discarded"))
        elif (record["rhos"] or record["thresholds"] or list(record["eigenvalues_g"]["shape"]) != [0]
              or list(record["eigenvalues_a"]["shape"]) != [0]):
            self._discard(layer)
            raise CandidateError(f"part {k} carries spectra, rhos or thresholds: only part 0 does")
        try:
            p["g_rows"] = self._append(p, "g", record["basis_g"], record["g_row_offset"], d_out, "basis_g")
            p["a_rows"] = self._append(p, "a", record["basis_a"], record["a_row_offset"], d_in, "basis_a")
        except CandidateError as e:
            self._discard(layer)
            raise CandidateError(f"part {k} of {n}: {e}; the unfinished candidate is discarded") from None
        p["next"] += 1
        if p["next"] < n:
            return None
        del self._open[layer]
        if p["g_rows"] != d_out or p["a_rows"] != d_in:
            self.discarded += 1
            raise CandidateError(f"{n} parts hold {p['g_rows']} rows of U_G and {p['a_rows']} of U_A, "
                                 f"the layer needs {d_out} and {d_in}")
        first = p["first"]
        whole = dict(first, part=0, parts=1, g_row_offset=0, a_row_offset=0)
        whole["basis_g"] = {"dtype": first["basis_g"]["dtype"], "shape": [d_out, d_out], "data": p["g"]}
        whole["basis_a"] = {"dtype": first["basis_a"]["dtype"], "shape": [d_in, d_in], "data": p["a"]}
        return whole

    @staticmethod
    def _append(p, which, rows, offset, side, name):
        dtype = p["first"]["basis_" + which]["dtype"]
        if rows["dtype"] != dtype:
            raise CandidateError(f"{name} is {rows['dtype']}, part 0's is {dtype}")
        shape = list(rows["shape"])
        if len(shape) != 2 or shape[1] != side or shape[0] < 0:
            raise CandidateError(f"{name} has shape {shape}, expected rows x {side}")
        width = _width(dtype)
        if len(rows["data"]) != shape[0] * side * width:
            raise CandidateError(f"{name}: {len(rows['data'])} bytes for shape {shape} {dtype}")
        held = p[which + "_rows"]
        if offset != held:
            raise CandidateError(f"{name} starts at row {offset}, expected row {held}")
        if held + shape[0] > side:
            raise CandidateError(f"{name} rows {offset}..{offset + shape[0]} run past the layer's {side}")
        start = held * side * width
        p[which][start:start + len(rows["data"])] = rows["data"]
        return held + shape[0]


def coordinates(weight, basis_g, basis_a):
    """C = U_Gᵀ W U_A, W as d_out x d_in."""
    return basis_g.t() @ weight @ basis_a


def edit(weight, basis_g, basis_a, keep, coords=None):
    """W' = U_G (C ∘ keep) U_Aᵀ with C = U_Gᵀ W U_A (pass coords to reuse them), all float64."""
    c = coordinates(weight, basis_g, basis_a) if coords is None else coords
    return basis_g @ (c * keep) @ basis_a.t()


class RecentExamples:
    """The most recent distinct training examples (by sample id), at most `capacity`.

    A repeated id replaces its older copy (so its label is the one trained on now); beyond the
    capacity the oldest goes. Each example is a detached copy of its rows of inputs and targets,
    on the device they came from: memory is at most capacity x (bytes of one input row + one
    target row).
    """

    def __init__(self, capacity=MAX_RECENT_EXAMPLES):
        if not 0 < int(capacity) <= MAX_RECENT_EXAMPLES:
            raise ValueError(f"recent_examples must be in 1..{MAX_RECENT_EXAMPLES}, got {capacity}")
        self.capacity = int(capacity)
        self._items = collections.OrderedDict()

    def add(self, sample_ids, inputs, targets):
        if not isinstance(inputs, torch.Tensor) or not isinstance(targets, torch.Tensor):
            raise TypeError("inputs and targets must be tensors whose first dimension is the example")
        n = len(sample_ids)
        if inputs.shape[0] != n or targets.shape[0] != n:
            raise ValueError(f"{n} sample ids but inputs {tuple(inputs.shape)} and targets {tuple(targets.shape)}")
        inputs, targets = inputs.detach(), targets.detach()
        for i, sid in enumerate(sample_ids):
            sid = str(sid)
            self._items.pop(sid, None)
            self._items[sid] = (inputs[i].clone(), targets[i].clone())
            if len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def __len__(self):
        return len(self._items)

    def ids(self):
        return list(self._items)

    def items(self):
        """(sample id, input row, target row) of every kept example, oldest first."""
        return [(sid, x, y) for sid, (x, y) in self._items.items()]

    def batches(self, batch_size):
        """(ids, inputs, targets) batches, oldest first, examples of equal shapes stacked together."""
        groups = collections.OrderedDict()
        for sid, x, y in self.items():
            key = (tuple(x.shape), x.dtype, x.device, tuple(y.shape), y.dtype, y.device)
            groups.setdefault(key, []).append((sid, x, y))
        for members in groups.values():
            for lo in range(0, len(members), batch_size):
                part = members[lo:lo + batch_size]
                yield [m[0] for m in part], torch.stack([m[1] for m in part]), torch.stack([m[2] for m in part])


def example_losses(out, targets, loss, n):
    """Per-example loss and correct flags from one forward pass of n examples.

    loss: the loss_fn(out, targets, reduction="none") tensor. An example's loss is the mean over its
    elements (tokens for sequence outputs); with integer targets, positions whose target is negative
    (ignore_index, e.g. -100) are left out. Correct flags need integer targets and logits shaped
    (*targets.shape, classes): an example is correct when the argmax equals the target at every
    non-ignored position. Returns (losses float64 (n,), correct bool (n,) or None).
    """
    per = loss.detach().reshape(n, -1).to(torch.float64)
    valid = None
    integer = not targets.dtype.is_floating_point and targets.dtype != torch.bool
    if integer and targets.numel() == per.numel():
        valid = (targets.reshape(n, -1) >= 0).to(per.device)
        count = valid.sum(dim=1).clamp(min=1)
        losses = (per * valid).sum(dim=1) / count
    else:
        losses = per.mean(dim=1)
    logits = out if isinstance(out, torch.Tensor) else getattr(out, "logits", None)
    correct = None
    if integer and isinstance(logits, torch.Tensor) and logits.dtype.is_floating_point \
            and tuple(logits.shape[:-1]) == tuple(targets.shape):
        hit = logits.detach().argmax(dim=-1) == targets
        if valid is not None:
            hit = hit.reshape(n, -1) | ~valid.to(hit.device)
        correct = hit.reshape(n, -1).all(dim=1)
    return losses.cpu(), None if correct is None else correct.cpu()



@contextlib.contextmanager
def evaluation_mode(model):
    """model.eval() for the block, then every submodule's own train/eval flag as it was."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in flags:
            m.training = training


def follow(config, topic, timeout=10.0):
    """A confluent-kafka Consumer assigned every partition of `topic` at its current end.

    The end offsets are read explicitly (not the logical OFFSET_END, resolved later), so every
    record published after this returns is seen. Raises RuntimeError if the topic is missing or
    the broker does not answer within `timeout` seconds.
    """
    from confluent_kafka import Consumer, KafkaException, TopicPartition
    try:
        consumer = Consumer(config)
    except KafkaException as e:
        raise RuntimeError(f"invalid Kafka consumer configuration: {e}") from e
    try:
        topics = consumer.list_topics(topic, timeout=timeout).topics
        meta = topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise RuntimeError(f"topic {topic} is not available ({None if meta is None else meta.error}); "
                               "is Curvewatch deployed on this broker (./curvewatch broker creates its topics)?")
        assignment = []
        for p in sorted(meta.partitions):
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            assignment.append(TopicPartition(topic, p, high))
        consumer.assign(assignment)
        return consumer
    except KafkaException as e:
        consumer.close()
        raise RuntimeError(f"cannot follow {topic}: {e}") from e
    except Exception:
        consumer.close()
        raise


class CandidateAnswerer:
    """Receives EditCandidates of one run and answers them with ProbeResults.

    poll() drains what the consumer has fetched in the background (never waits); answer_pending() runs
    the forward passes for the newest pending candidate of each layer. Counters: received,
    answered, skipped (an older pending candidate of a layer superseded by a newer one, or an id
    seen before), refused (malformed: undecodable, another run, unknown layer, wrong shapes,
    NaN, a basis that is not orthonormal), expired (pending longer than candidate_timeout, e.g.
    no probe batch yet), failed (the forward passes or the loss raised), nonfinite_losses
    (losses published as ±FLOAT32_MAX because they were NaN or infinite), parts_received (records
    of candidates split into row parts, reassembled by CandidateParts; a lost or misplaced part is
    refused).
    """

    COUNTERS = ("received", "answered", "skipped", "refused", "expired", "failed", "nonfinite_losses", "parts_received")

    def __init__(self, run_id, model, modules, consumer, publish, topic, *, recent_examples=MAX_RECENT_EXAMPLES,
                 eval_batch_size=64, candidate_timeout=60.0):
        self.run_id = run_id
        self._key = run_id.encode("utf-8")
        self.model = model
        self.modules = dict(modules)
        self.layers = {name: dims(m) for name, m in self.modules.items()}
        self.consumer = consumer
        self._publish = publish
        self.topic = topic
        self.recent = RecentExamples(recent_examples)
        self.eval_batch_size = int(eval_batch_size)
        if self.eval_batch_size < 1:
            raise ValueError(f"eval_batch_size must be >= 1, got {eval_batch_size}")
        self.candidate_timeout = float(candidate_timeout)
        self.pending = collections.OrderedDict()  # layer -> newest Candidate
        self._done = collections.OrderedDict()    # candidate ids answered or superseded (the last 1024)
        for name in self.COUNTERS:
            setattr(self, name, 0)
        self.seconds = 0.0  # time spent in forward passes and edits, all answers together
        self._probe = None
        self._warned = set()
        self._in = _avro.codec("EditCandidate")
        self._parts = CandidateParts()  # candidates above the service's part size come in row parts
        self._out = _avro.codec("ProbeResult")

    def counts(self):
        return {name: getattr(self, name) for name in self.COUNTERS}

    def set_probe(self, inputs, targets, sample_ids, loss_fn):
        """The held-out probe batch (probe=true examples) and the loss used for every answer."""
        if not isinstance(inputs, torch.Tensor) or not isinstance(targets, torch.Tensor):
            raise TypeError("probe inputs and targets must be tensors whose first dimension is the example")
        ids = [str(s) for s in sample_ids]
        if inputs.shape[0] != len(ids) or targets.shape[0] != len(ids):
            raise ValueError(f"{len(ids)} probe ids but inputs {tuple(inputs.shape)}, targets {tuple(targets.shape)}")
        self._probe = (inputs.detach().clone(), targets.detach().clone(), ids, loss_fn)

    # -- receiving ---------------------------------------------------------------------------
    def _warn(self, text):
        warnings.warn("curvewatch: " + text, RuntimeWarning, stacklevel=4)

    def _refuse(self, what, reason):
        self.refused += 1
        self._warn(f"refused edit candidate {what}: {reason}")

    def poll(self, max_messages=64):
        """Takes up to max_messages already fetched records without waiting; returns how many were ours."""
        from confluent_kafka import KafkaError
        ours = 0
        for _ in range(max_messages):
            msg = self.consumer.poll(0)
            if msg is None:
                break
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF and err.code() not in self._warned:
                    self._warned.add(err.code())
                    self._warn(f"edit-candidates consumer: {err}")
                continue
            if msg.key() != self._key:  # another run's candidate
                continue
            ours += 1
            self.receive(msg.value())
        return ours

    def receive(self, value):
        """Decodes and validates one EditCandidate value; keeps it as its layer's newest pending one."""
        self.received += 1
        try:
            record = self._in.decode(value)
        except Exception as e:  # noqa: BLE001 - any decoding failure is a malformed record
            self._refuse("(undecodable)", str(e)[:200])
            return None
        what = f"{record.get('candidate_id')!r} for layer {record.get('layer')!r}"
        if record["run_id"] != self.run_id:
            self._refuse(what, f"run_id {record['run_id']!r} under this run's key {self.run_id!r}")
            return None
        if record["parts"] != 1 or record["part"] != 0:
            self.parts_received += 1
            try:
                record = self._parts.accept(record, self.layers)
            except CandidateError as e:
                self._refuse(what, str(e))
                return None
            if record is None:
                return None  # more parts to come
        try:
            candidate = parse_candidate(record, self.layers)
        except CandidateError as e:
            self._refuse(what, str(e))
            return None
        if candidate.candidate_id in self._done or any(c.candidate_id == candidate.candidate_id
                                                       for c in self.pending.values()):
            self.skipped += 1  # sent twice: answered (or superseded) once is enough
            return None
        older = self.pending.pop(candidate.layer, None)
        if older is not None:
            self.skipped += 1
            self._mark_done(older.candidate_id)
        self.pending[candidate.layer] = candidate
        return candidate

    def _mark_done(self, candidate_id):
        self._done[candidate_id] = None
        while len(self._done) > 1024:
            self._done.popitem(last=False)

    # -- answering ---------------------------------------------------------------------------
    def answer_pending(self, step, max_answers=None):
        """Answers the pending candidates (oldest layer first), at most max_answers; returns how many.

        Nothing is answered before a probe batch and at least one training example exist (the
        service refuses a ProbeResult without both); candidates pending longer than
        candidate_timeout are dropped as expired (the service has given up on them by then).
        """
        ready = self._probe is not None and len(self.recent) > 0
        now = time.monotonic()
        for layer, c in list(self.pending.items()):
            if now - c.received > self.candidate_timeout:
                del self.pending[layer]
                self._mark_done(c.candidate_id)
                self.expired += 1
                missing = [what for what, have in (("no probe batch yet: call w.probe(...)", self._probe),
                                                   ("no training examples yet: pass inputs= and targets= to "
                                                    "w.step(...)", len(self.recent))) if not have]
                self._warn(f"edit candidate {c.candidate_id!r} for layer {layer!r} expired unanswered after "
                           f"{self.candidate_timeout:.0f} s" + (f" ({'; '.join(missing)})" if missing else ""))
        answered = 0
        while self.pending and ready and (max_answers is None or answered < max_answers):
            _, candidate = self.pending.popitem(last=False)
            self._mark_done(candidate.candidate_id)
            try:
                record = self.evaluate(candidate, step)
                value = self._out.encode(record)
                if len(value) > PROBE_RESULT_MAX_BYTES:
                    raise ValueError(f"the ProbeResult of {len(record['examples'])} examples takes {len(value)} bytes, "
                                     f"more than the probe-results topic accepts ({PROBE_RESULT_MAX_BYTES}); "
                                     "use a smaller probe batch or fewer recent_examples")
            except Exception as e:  # noqa: BLE001 - never crash training on an answer
                self.failed += 1
                self._warn(f"could not answer edit candidate {candidate.candidate_id!r} for layer "
                           f"{candidate.layer!r}: {type(e).__name__}: {e}")
                continue
            self._publish(self.topic, self.run_id, value)
            self.answered += 1
            answered += 1
        return answered

    def _batches(self):
        inputs, targets, ids, _ = self._probe
        out = [(ids[lo:lo + self.eval_batch_size], True, inputs[lo:lo + self.eval_batch_size],
                targets[lo:lo + self.eval_batch_size]) for lo in range(0, len(ids), self.eval_batch_size)]
        out += [(bid, False, x, y) for bid, x, y in self.recent.batches(self.eval_batch_size)]
        return out

    def _forward(self, batches, loss_fn):
        losses, flags = [], []
        for ids, _, x, y in batches:
            out = self.model(x)
            loss, correct = example_losses(out, y, loss_fn(out, y, reduction="none"), len(ids))
            losses.append(loss)
            flags.append(correct)
        return torch.cat(losses), None if any(f is None for f in flags) else torch.cat(flags)

    def evaluate(self, candidate, step):
        """The ProbeResult record for a candidate: forward passes under W and every W'_k.

        W'_k is computed in float64 on the weight's device and swapped into the layer (cast to its
        dtype, in its own layout) under torch.no_grad() and model.eval(); the original weight
        tensor is put back afterwards, untouched (also when a forward pass raises). A threshold
        that keeps every pair is the unedited layer: its losses are loss_now exactly.
        """
        started = time.monotonic()
        module = self.modules[candidate.layer]
        param = module.weight
        original = param.data
        transposed = is_transposed(module)
        loss_fn = self._probe[3]
        batches = self._batches()
        with torch.no_grad(), evaluation_mode(self.model):
            weight = original.to(torch.float64)
            weight = weight.t() if transposed else weight
            ug = candidate.basis_g.to(original.device)
            ua = candidate.basis_a.to(original.device)
            curvature = torch.outer(candidate.eigenvalues_g, candidate.eigenvalues_a).to(original.device)
            coords = coordinates(weight, ug, ua)
            now = self._forward(batches, loss_fn)
            by_kept, results = {}, []
            try:
                for tau in candidate.thresholds:
                    keep = curvature >= tau
                    kept = int(keep.sum())
                    if kept not in by_kept:  # thresholds are nested: equal counts are equal masks
                        if kept == keep.numel():
                            by_kept[kept] = now
                        else:
                            edited = edit(weight, ug, ua, keep, coords)
                            param.data = (edited.t() if transposed else edited).to(original.dtype).contiguous()
                            by_kept[kept] = self._forward(batches, loss_fn)
                            param.data = original
                    results.append(by_kept[kept])
            finally:
                param.data = original
        flags = now[1] is not None and all(r[1] is not None for r in results)
        order = [(sid, probe) for ids, probe, _, _ in batches for sid in ids]
        examples = []
        for i, (sid, probe) in enumerate(order):
            examples.append({
                "sample_id": sid, "probe": probe, "loss_now": self._finite(now[0][i]),
                "correct_now": bool(now[1][i]) if flags else False,
                "loss_edited": [self._finite(r[0][i]) for r in results],
                "correct_edited": [bool(r[1][i]) for r in results] if flags else []})
        self.seconds += time.monotonic() - started
        return {"run_id": self.run_id, "candidate_id": candidate.candidate_id, "layer": candidate.layer,
                "step": int(step), "rhos": list(candidate.rhos), "examples": examples,
                "timestamp_ms": int(time.time() * 1000)}

    def _finite(self, value):
        value = float(value)
        if math.isfinite(value) and abs(value) <= FLOAT32_MAX:
            return value
        self.nonfinite_losses += 1
        return -FLOAT32_MAX if value < 0 else FLOAT32_MAX  # NaN and +inf: as bad as a loss gets

    def close(self):
        if self.consumer is not None:
            self.consumer.close()
            self.consumer = None
