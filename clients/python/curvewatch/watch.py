"""`curvewatch.watch(model, ...)`: publish a PyTorch fine-tune's captures to Curvewatch."""
import contextlib
import re
import time
import warnings

import torch

from . import _avro
from .candidates import MAX_RECENT_EXAMPLES, CandidateAnswerer, follow
from .hooks import LayerCapture, dims, weight_out_in
from .publisher import Publisher

_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
DEFAULT_PREFIX = "curvewatch."
# the tensor topics' max.message.bytes (CurvewatchTopics.TENSOR_MAX_MESSAGE_BYTES on the Java side)
TOPIC_MAX_RECORD_BYTES = 16 * 1024 * 1024
_RECORD_OVERHEAD = 4096
_FISHER = ("SAMPLED", "EMPIRICAL")  # ids, shapes, timestamps and Kafka framing, generously
CODE_VERSION = "curvewatch-python 0.1.0"
_UNDO_FLUSH_SECONDS = 5.0


def _now_ms():
    return int(time.time() * 1000)


def _check_id(value, what):
    if not _ID.fullmatch(value):
        raise ValueError(f"{what} {value!r} must be 1-128 characters of [A-Za-z0-9._:-]")
    return value


def rows_per_part(d_out, d_in, max_record_bytes, fixed_bytes):
    """Rows of a d_out x d_in float32 weight per WeightSnapshot part when a part's fields other than
    the weight rows take `fixed_bytes` (bias included) and a record may hold `max_record_bytes`."""
    room = max_record_bytes - fixed_bytes
    if room < 4 * d_in:
        raise ValueError(f"a {d_out} x {d_in} weight cannot be split into records of {max_record_bytes} bytes "
                         f"({fixed_bytes} bytes go to the other fields and the bias)")
    return min(d_out, room // (4 * d_in))


def _tensor(t):
    t = t.detach().to("cpu", torch.float32).contiguous()
    return {"dtype": "FLOAT32", "shape": list(t.shape), "data": t.numpy().astype("<f4", copy=False).tobytes()}


class Watcher:
    """Captures per-token layer inputs and output-gradients of watched layers and publishes them.

    Call `step(step, sample_ids=...)` after `loss.backward()` of each training step. The gradient
    captured by the hooks is dL/ds of the *reduced* loss; `grad_scale` undoes the reduction so
    factors from different batch sizes agree: "tokens" (default, for a loss averaged over every
    token row), a number, or 1 for a summed loss.

    answer_candidates=True answers the service's edit candidates (SERVICE-CONTRACT §1) inside
    step(): a consumer on <prefix>edit-candidates assigned at its end now (or `consumer=`), the
    latest probe() batch and the `recent_examples` (<= 512) most recent training examples passed
    to step(inputs=, targets=) are evaluated, in batches of `eval_batch_size`, at most
    `answers_per_step` answers per step(); a candidate waits at most `candidate_timeout` seconds
    for a probe batch. Counters: `w.candidates.counts()`. See candidates.CandidateAnswerer.
    """

    def __init__(self, model, layers, run_id, bootstrap=None, *, publisher=None, topic_prefix=DEFAULT_PREFIX,
                 tokens_per_step=0, weights_every=0, grad_scale="tokens", fisher="EMPIRICAL",
                 factor_mode="CUMULATIVE", ema_decay=1.0, max_record_bytes=8 * 1024 * 1024, policy="block",
                 block_timeout=60.0, max_queue_bytes=256 * 1024 * 1024, kafka_config=None, model_name=None,
                 config=None, seed=0, answer_candidates=False, recent_examples=MAX_RECENT_EXAMPLES,
                 eval_batch_size=64, answers_per_step=1, candidate_timeout=60.0, consumer=None):
        self.run_id = _check_id(run_id, "run_id")
        self.model = model
        modules = dict(model.named_modules())
        missing = [name for name in layers if name not in modules]
        if missing:
            raise KeyError(f"model has no layer(s) {missing}; named modules include {list(modules)[:20]}")
        if not 0 < int(max_record_bytes) <= TOPIC_MAX_RECORD_BYTES - _RECORD_OVERHEAD:
            raise ValueError(f"max_record_bytes must be in 1..{TOPIC_MAX_RECORD_BYTES - _RECORD_OVERHEAD}, "
                             f"the tensor topics accept {TOPIC_MAX_RECORD_BYTES} bytes a record")
        if fisher not in _FISHER or factor_mode not in ("CUMULATIVE", "EMA"):
            raise ValueError(f"fisher must be one of {_FISHER} (got {fisher!r}), factor_mode CUMULATIVE or EMA "
                             f"(got {factor_mode!r})")
        for name in layers:
            _check_id(name, "layer")
            module = modules[name]
            d_in, d_out = dims(module)  # TypeError for a layer kind the client cannot watch
        conf = dict(kafka_config or {})
        if bootstrap:
            conf["bootstrap.servers"] = bootstrap
        needs_kafka = publisher is None or (answer_candidates and consumer is None)
        if needs_kafka and "bootstrap.servers" not in conf:
            raise ValueError("pass bootstrap='host:port' (or kafka_config with bootstrap.servers)")
        if answers_per_step is not None and int(answers_per_step) < 0:
            raise ValueError(f"answers_per_step must be >= 0 or None (all pending), got {answers_per_step}")
        # What __init__ creates it also undoes if it fails: the hooks, and the publisher and consumer it
        # made itself. A publisher or consumer the caller passed in stays the caller's, open.
        own_publisher = publisher is None
        own_consumer = None
        self.captures = {}
        if own_publisher:
            publisher = Publisher(conf, policy=policy, block_timeout=block_timeout, max_queue_bytes=max_queue_bytes)
        self.publisher = publisher
        try:
            for name in layers:
                self.captures[name] = LayerCapture(name, modules[name])
            self.prefix = topic_prefix
            self.tokens_per_step = int(tokens_per_step)
            self.weights_every = int(weights_every)
            self.grad_scale = grad_scale
            self.fisher = fisher
            self.max_record_bytes = int(max_record_bytes)
            self._generator = torch.Generator().manual_seed(seed)
            self._capture_codec = _avro.codec("Capture")
            self._weights_codec = _avro.codec("WeightSnapshot")
            self._weight_rows = {}
            if self.weights_every:
                for name, cap in self.captures.items():  # ValueError now, not at the first snapshot
                    self._weight_rows[name] = rows_per_part(cap.d_out, cap.d_in, self.max_record_bytes,
                                                            self._weight_fixed_bytes(cap))
            self.records = 0
            self._closed = False
            self._last_step = 0
            self.answers_per_step = answers_per_step
            self.candidates = None  # the CandidateAnswerer when answer_candidates=True
            self._run_info = {
                "run_id": self.run_id, "model": model_name or type(model).__name__, "source": "pytorch-client",
                "created_ms": _now_ms(), "status": "RUNNING",
                "layers": [{"name": c.name, "d_in": c.d_in, "d_out": c.d_out, "transposed": c.transposed,
                            "has_bias": c.has_bias} for c in self.captures.values()],
                "factor_mode": factor_mode, "ema_decay": float(ema_decay), "fisher": fisher,
                "weights_every": self.weights_every, "tokens_per_step": self.tokens_per_step,
                "code_version": CODE_VERSION, "config": {k: str(v) for k, v in (config or {}).items()}}
            if answer_candidates:
                topic = self.prefix + "edit-candidates"
                if consumer is None:  # assigned at the topic's end now: candidates sent from here on
                    consumer = own_consumer = follow(self._consumer_config(conf), topic)
                self.candidates = CandidateAnswerer(
                    self.run_id, model, {name: cap.module for name, cap in self.captures.items()}, consumer,
                    self._publish, self.prefix + "probe-results", recent_examples=recent_examples,
                    eval_batch_size=eval_batch_size, candidate_timeout=candidate_timeout)
            self._publish_run_info("RUNNING")
        except BaseException:
            self._undo_init(own_publisher, own_consumer)
            raise

    def _undo_init(self, own_publisher, own_consumer):
        """A failed __init__: removes the hooks and closes what it created itself, never hiding its error."""
        for cap in self.captures.values():  # leave the model as it was
            cap.remove()
        self.captures = {}
        self.candidates = None
        self._closed = True
        if own_consumer is not None:
            try:
                own_consumer.close()
            except Exception as e:
                warnings.warn(f"curvewatch: closing the edit-candidates consumer after a failed start failed: {e}",
                              RuntimeWarning)
        if own_publisher:
            try:  # nothing was published yet (or the one RunInfo failed): no long wait for a broker
                self.publisher.close(timeout=_UNDO_FLUSH_SECONDS)
            except Exception as e:
                warnings.warn(f"curvewatch: closing the publisher after a failed start failed: {e}", RuntimeWarning)

    def _consumer_config(self, conf):
        """The edit-candidates consumer: assigned, never committing; the caller's settings (security) pass through."""
        out = {"group.id": f"curvewatch-trainer-{self.run_id}", "enable.auto.commit": False,
               "enable.auto.offset.store": False,
               # prefetch bound: two candidates of the largest size the service sends (16 MiB records)
               "queued.max.messages.kbytes": 2 * TOPIC_MAX_RECORD_BYTES // 1024,
               "fetch.max.bytes": 2 * TOPIC_MAX_RECORD_BYTES, "max.partition.fetch.bytes": TOPIC_MAX_RECORD_BYTES,
               "receive.message.max.bytes": 2 * TOPIC_MAX_RECORD_BYTES + 65536}
        producer_only = ("linger.ms", "compression.type", "enable.idempotence", "queue.buffering.max.kbytes",
                         "queue.buffering.max.messages", "message.max.bytes", "message.timeout.ms", "acks",
                         "batch.size", "batch.num.messages")
        out.update({k: v for k, v in conf.items() if k not in producer_only})
        return out

    def _publish_run_info(self, status):
        self._run_info["status"] = status
        self._publish(self.prefix + "runs", self.run_id, _avro.codec("RunInfo").encode(self._run_info))

    @property
    def dropped(self):
        """Records dropped because Kafka was slow (policy "drop"); always 0 under "block"."""
        return self.publisher.dropped

    def _publish(self, topic, key, value):
        if self.publisher.publish(topic, key.encode("utf-8"), value):  # False: dropped (policy "drop"), counted there
            self.records += 1

    def _scale(self, tokens):
        if self.grad_scale == "tokens":
            return float(tokens)
        return float(self.grad_scale)

    def step(self, step, sample_ids=None, losses=None, probe=False, fisher=None, grad_scale=None, inputs=None,
             targets=None):
        """Publishes what the hooks captured since the last call, and the weights every N steps.

        sample_ids: one id per example; tokens are mapped to examples by their leading (batch)
        dimension, so a (batch, seq, d) input gives seq tokens per example. losses: optional
        per-example losses. inputs, targets: this batch as the model and the loss take them (first
        dimension = example, one sample id each); with answer_candidates=True they join the recent
        training examples that edit candidates are evaluated on. Then pending edit candidates are
        answered (at most answers_per_step). Returns the number of records published.
        """
        before = self.records
        self._last_step = int(step)
        if self.candidates is not None and inputs is not None and not probe:
            if targets is None or sample_ids is None:
                raise ValueError("inputs need targets and sample_ids (one id per example)")
            self.candidates.recent.add(sample_ids, inputs, targets)
        self._publish_step(step, sample_ids, losses, probe, fisher, grad_scale)
        if self.candidates is not None and not probe:
            self.answer_candidates(step, max_answers=self.answers_per_step)
        return self.records - before

    def answer_candidates(self, step=None, max_answers=None):
        """Takes the edit candidates fetched so far (never waits for Kafka) and answers the newest
        pending one of each layer, at most max_answers (None: all); returns how many were answered.
        step() calls it. step defaults to the last step passed to step()."""
        if self.candidates is None:
            raise RuntimeError("watch(..., answer_candidates=True) to answer edit candidates")
        self.candidates.poll()
        return self.candidates.answer_pending(self._last_step if step is None else int(step), max_answers)

    def _publish_step(self, step, sample_ids, losses, probe, fisher, grad_scale):
        before = self.records
        if losses is not None and (sample_ids is None or len(losses) != len(sample_ids)):
            raise ValueError(f"losses need one sample id each: {len(losses)} losses, "
                             f"{0 if sample_ids is None else len(sample_ids)} sample ids")
        for cap in self.captures.values():
            pair = cap.take()
            if pair is None:
                continue
            a, g = pair
            tokens = a.shape[0]
            scale = self._scale(tokens) if grad_scale is None else float(grad_scale)
            g = g * scale
            ids = [str(s) for s in sample_ids] if sample_ids is not None else []
            token_sample = None
            if ids:
                if tokens % len(ids):
                    raise ValueError(f"layer {cap.name}: {tokens} tokens do not divide into {len(ids)} examples")
                per = tokens // len(ids)
                token_sample = torch.arange(len(ids), dtype=torch.int32).repeat_interleave(per)
            if self.tokens_per_step and tokens > self.tokens_per_step:
                keep = torch.randperm(tokens, generator=self._generator)[: self.tokens_per_step].sort().values
                a, g = a[keep], g[keep]
                if token_sample is not None:
                    token_sample = token_sample[keep]
                tokens = a.shape[0]
            self._publish_capture(cap, step, a, g, ids, token_sample, losses, probe, fisher or self.fisher, scale)
        if not probe and self.weights_every and step % self.weights_every == 0:
            for cap in self.captures.values():
                self.publish_weights(cap.name, step)
        return self.records - before

    def _publish_capture(self, cap, step, a, g, ids, token_sample, losses, probe, fisher, scale):
        tokens = a.shape[0]
        row_bytes = 4 * (cap.d_in + cap.d_out + 1)
        per_part = max(1, min(tokens, self.max_record_bytes // row_bytes)) if tokens else 1
        parts = max(1, -(-tokens // per_part))
        key = f"{self.run_id}/{cap.name}"
        loss_list = [float(x) for x in losses] if losses is not None else []
        for p in range(parts):
            lo, hi = p * per_part, min(tokens, (p + 1) * per_part)
            if token_sample is None:
                part_ids, index = (ids[lo:hi] if ids else []), None
                part_losses = loss_list[lo:hi] if loss_list else []
            else:
                # keep only the examples this part's tokens belong to, re-indexed from 0
                idx = token_sample[lo:hi]
                used, inverse = torch.unique(idx, sorted=True, return_inverse=True)
                part_ids = [ids[i] for i in used.tolist()]
                part_losses = [loss_list[i] for i in used.tolist()] if loss_list else []
                index = inverse.to(torch.int32).numpy().astype("<i4").tobytes()
            record = {"run_id": self.run_id, "layer": cap.name, "step": int(step), "part": p, "parts": parts,
                      "fisher": fisher, "probe": bool(probe), "activations": _tensor(a[lo:hi]),
                      "gradients": _tensor(g[lo:hi]), "grad_scale": scale, "sample_ids": part_ids,
                      "token_sample": index, "example_losses": part_losses, "timestamp_ms": _now_ms()}
            self._publish(self.prefix + "captures", key, self._capture_codec.encode(record))

    def _weight_fixed_bytes(self, cap):
        """Encoded size of a part without its weight rows, bias included, with slack for the
        varints of lengths and numbers that grow with real values."""
        bias = getattr(cap.module, "bias", None)
        empty = self._weights_codec.encode({
            "run_id": self.run_id, "layer": cap.name, "step": 2**62, "timestamp_ms": _now_ms(),
            "weight": {"dtype": "FLOAT32", "shape": [cap.d_out, cap.d_in], "data": b""},
            "bias": _tensor(bias) if bias is not None else None, "part": 2**30, "parts": 2**30, "row_offset": 2**30})
        return len(empty) + 16

    def publish_weights(self, layer, step):
        """W as d_out x d_in; a weight above max_record_bytes goes out as row parts (WeightSnapshot
        v2: part, parts, row_offset), the bias in part 0."""
        cap = self.captures[layer]
        bias = getattr(cap.module, "bias", None)
        w = weight_out_in(cap.module)
        per = self._weight_rows.get(layer) or rows_per_part(cap.d_out, cap.d_in, self.max_record_bytes,
                                                            self._weight_fixed_bytes(cap))
        parts = (cap.d_out + per - 1) // per
        now = _now_ms()
        for p in range(parts):
            lo, hi = p * per, min(cap.d_out, (p + 1) * per)
            self._publish(self.prefix + "weights", f"{self.run_id}/{layer}", self._weights_codec.encode({
                "run_id": self.run_id, "layer": layer, "step": int(step), "weight": _tensor(w[lo:hi]),
                "bias": _tensor(bias) if bias is not None and p == 0 else None, "timestamp_ms": now,
                "part": p, "parts": parts, "row_offset": lo}))

    @contextlib.contextmanager
    def _side_pass(self, model):
        """Runs a forward/backward that must not disturb the training step's parameter gradients."""
        params = list(model.parameters())
        saved = [None if p.grad is None else p.grad.clone() for p in params]
        # the training step's own capture, if step() has not published it yet, survives the side pass
        stashed = {name: cap.stash() for name, cap in self.captures.items()}
        try:
            yield
        finally:
            for p, g in zip(params, saved):
                p.grad = g
            for name, cap in self.captures.items():
                cap.unstash(stashed[name])

    def probe(self, model, inputs, targets, loss_fn, step, sample_ids):
        """Captures held-out probe examples (probe=True: never accumulated into factors)."""
        with self._side_pass(model):
            model.zero_grad(set_to_none=True)
            out = model(inputs)
            losses = loss_fn(out, targets, reduction="none")
            losses.sum().backward()  # a summed loss: g is already per token
            per_example = losses.detach().reshape(len(sample_ids), -1).sum(dim=1)
            if self.candidates is not None:
                self.candidates.set_probe(inputs, targets, sample_ids, loss_fn)
            return self._publish_step(step, sample_ids, per_example.tolist(), True, None, 1.0)

    def fisher_pass(self, model, inputs, step, sample_ids=None):
        """True-Fisher capture: labels sampled from the model's own softmax (fisher=SAMPLED)."""
        with self._side_pass(model):
            model.zero_grad(set_to_none=True)
            logits = model(inputs)
            flat = logits.reshape(-1, logits.shape[-1])
            with torch.no_grad():
                sampled = torch.multinomial(torch.softmax(flat.float(), dim=-1), 1, generator=self._generator).squeeze(1)
            torch.nn.functional.cross_entropy(flat, sampled, reduction="sum").backward()
            return self._publish_step(step, sample_ids, None, False, "SAMPLED", 1.0)

    def close(self, status="FINISHED"):
        """Removes the hooks, publishes the final RunInfo (FINISHED or FAILED) and flushes.

        Raises PublishError if any record failed or is still undelivered. Idempotent.
        """
        if self._closed:
            return
        self._closed = True
        for cap in self.captures.values():
            cap.remove()
        self.captures = {}
        try:
            self._publish_run_info(status)
        finally:
            try:
                if self.candidates is not None:
                    self.candidates.close()
            finally:
                self.publisher.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close("FINISHED")
            return False
        try:
            self.close("FAILED")
        except Exception as e:  # never hide the training loop's own exception behind a publishing one
            warnings.warn(f"curvewatch: closing after a failed run also failed: {e}", RuntimeWarning)
        return False


def watch(model, layers, run_id, bootstrap=None, **options):
    """`with curvewatch.watch(model, layers, run_id, bootstrap) as w:` around a training loop.

    See Watcher for the options. Leaving the block publishes the final RunInfo (FINISHED, or FAILED
    if the block raised) and flushes.
    """
    return Watcher(model, layers, run_id, bootstrap, **options)
