"""`curvewatch.watch(model, ...)`: publish a PyTorch fine-tune's captures to Curvewatch.

About 410 lines, most of them the options' checks and docstrings: `Watch` is the client's one public
object, and what it drives lives in modules of its own (hooks, answerer, snapshot_follower, follower,
deadletters, publisher); it wires them to the training loop's `step()`."""
import contextlib
import math
import time
import warnings

import torch

from . import _avro, batches
from .answerer import CandidateAnswerer
from .batches import Measure
from .deadletters import DeadLetters
from .examples import DEFAULT_RECENT_EXAMPLES
from .follower import TOPIC_MAX_RECORD_BYTES, Follower, consumer_config, follow
from .limits import ID_PATTERN, RECORD_OVERHEAD_BYTES
from .hooks import Clock, ForwardContext, LayerCapture, attention_owner, dims, token_rows
from .overhead import Overhead
from .publisher import Publisher
from .records import CaptureRecords, WeightRecords, now_ms
from .snapshot_follower import SnapshotFollower
from .version import __version__

_ID = ID_PATTERN
DEFAULT_PREFIX = "curvewatch."
_RECORD_OVERHEAD = RECORD_OVERHEAD_BYTES
_FISHER = ("SAMPLED", "EMPIRICAL")
CODE_VERSION = f"curvewatch-python {__version__}"
_UNDO_FLUSH_SECONDS = 5.0
# Tokens kept per layer and step: K-FAC factors are means over many steps, so a random 256 of a
# step's tokens give the same factors in expectation at a fraction of the bytes and CPU (a
# 32 x 64-token step of a 128 -> 512 layer is 5.2 MB in full, 0.66 MB with 256 tokens; 1,000
# steps still give 256,000 tokens for a 512 x 512 G).
DEFAULT_TOKENS_PER_STEP = 256
# Answers get 8% of training time by default: with the ~4-5% capture costs on the example's
# transformer (README), the whole overhead stays under the 15% target.
DEFAULT_ANSWER_BUDGET = 0.08


def _check_id(value, what):
    if not _ID.fullmatch(value):
        raise ValueError(f"{what} {value!r} must be 1-128 characters of [A-Za-z0-9._:-]")
    return value


class Watcher:
    """Captures per-token layer inputs and output-gradients of watched layers and publishes them;
    answers the service's edit candidates; follows (and applies) the run's edited snapshots and
    reports each to the live guard; reports dead letters of its run and its own overhead.

    See clients/python/README.md for every option. Call `step(step, sample_ids=...)` after the
    backward pass(es) of each optimizer step.
    """

    def __init__(self, model, layers, run_id, bootstrap=None, *, publisher=None, topic_prefix=DEFAULT_PREFIX,
                 tokens_per_step=DEFAULT_TOKENS_PER_STEP, weights_every=0, grad_scale="tokens", fisher="EMPIRICAL",
                 factor_mode="CUMULATIVE", ema_decay=1.0, max_record_bytes=8 * 1024 * 1024, policy="block",
                 block_timeout=60.0, max_queue_bytes=256 * 1024 * 1024, kafka_config=None, model_name=None,
                 config=None, seed=0, answer_candidates=False, recent_examples=DEFAULT_RECENT_EXAMPLES,
                 eval_batch_size=64, answers_per_step=1, candidate_timeout=60.0, consumer=None, loss_fn=None,
                 per_example_loss=None, label_shift="auto", token_mask="attention_mask", answer_budget=DEFAULT_ANSWER_BUDGET,
                 grad_scaler=None, follow_dead_letters="auto", replay_bytes=256 * 1024 * 1024, snapshot_dir=None,
                 apply_snapshots=False, follow_snapshots="auto"):
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
            dims(modules[name])  # TypeError for a layer kind the client cannot watch
        conf = dict(kafka_config or {})
        if bootstrap:
            conf["bootstrap.servers"] = bootstrap
        if follow_dead_letters == "auto":  # whenever there is a broker to follow them on
            follow_dead_letters = consumer is not None or "bootstrap.servers" in conf
        if follow_snapshots == "auto":  # whenever there is a snapshot store to verify them in
            follow_snapshots = snapshot_dir is not None
        if (follow_snapshots or apply_snapshots) and snapshot_dir is None:
            raise ValueError("following or applying snapshots needs snapshot_dir (the service's snapshot.dir)")
        if apply_snapshots and not follow_snapshots:
            raise ValueError("apply_snapshots=True needs follow_snapshots (True or \"auto\")")
        needs_consumer = (answer_candidates or follow_dead_letters or follow_snapshots) and consumer is None
        if (publisher is None or needs_consumer) and "bootstrap.servers" not in conf:
            raise ValueError("pass bootstrap='host:port' (or kafka_config with bootstrap.servers)")
        if answers_per_step is not None and int(answers_per_step) < 0:
            raise ValueError(f"answers_per_step must be >= 0 or None (all pending), got {answers_per_step}")
        self.measure = Measure(loss_fn, per_example_loss, label_shift)
        self.clock = Clock()
        self._overhead = Overhead(self.clock, answer_budget)
        # What __init__ creates it also undoes if it fails: the hooks, the forward wrapper, and the
        # publisher and consumer it made itself. A publisher or consumer the caller passed stays open.
        own_publisher = publisher is None
        own_consumer = None
        self.captures = {}
        self._context = None
        self._follower = None
        self._snapshots = None
        if own_publisher:
            publisher = Publisher(conf, policy=policy, block_timeout=block_timeout, max_queue_bytes=max_queue_bytes)
        self.publisher = publisher
        self.consumer = consumer
        try:
            self.prefix = topic_prefix
            self.topics = {t: topic_prefix + t for t in ("captures", "weights", "runs", "probe-results",
                                                          "edit-candidates", "dead-letters", "snapshots",
                                                          "guard-decisions")}
            # Java's partition for every key, from the broker's partition counts (partitioning.py)
            self.publisher.resolve_partitions([self.topics[t] for t in ("captures", "weights", "runs", "probe-results")
                                               + (("guard-decisions",) if follow_snapshots else ())])
            self._context = ForwardContext(model, token_mask)
            for name in layers:
                owner = attention_owner(model, name)
                self.captures[name] = LayerCapture(name, modules[name], self._context, self.clock, owner=owner)
            self.tokens_per_step = int(tokens_per_step)
            self.weights_every = int(weights_every)
            self.grad_scale = grad_scale
            self.grad_scaler = grad_scaler
            self.fisher = fisher
            self.max_record_bytes = int(max_record_bytes)
            self._generator = torch.Generator().manual_seed(seed)
            self._capture_records = CaptureRecords(self.run_id, self.max_record_bytes)
            self._weight_records = WeightRecords(self.run_id, self.max_record_bytes)
            if self.weights_every:
                for cap in self.captures.values():  # ValueError now, not at the first snapshot
                    self._weight_records.check(cap)
            self.records = 0
            self.skipped_nonfinite = 0
            self._closed = False
            self._last_step = 0
            self.answers_per_step = answers_per_step
            self.candidates = None  # the CandidateAnswerer when answer_candidates=True
            self._dead = DeadLetters(self.run_id, self.prefix) if follow_dead_letters else None
            self._run_info = {
                "run_id": self.run_id, "model": model_name or type(model).__name__, "source": "pytorch-client",
                "created_ms": now_ms(), "status": "RUNNING",
                "layers": [{"name": c.name, "d_in": c.d_in, "d_out": c.d_out, "transposed": c.transposed,
                            "has_bias": c.has_bias} for c in self.captures.values()],
                "factor_mode": factor_mode, "ema_decay": float(ema_decay), "fisher": fisher,
                "weights_every": self.weights_every, "tokens_per_step": self.tokens_per_step,
                "code_version": CODE_VERSION, "config": {k: str(v) for k, v in (config or {}).items()}}
            followed = ([self.topics["edit-candidates"]] if answer_candidates else []) + \
                ([self.topics["dead-letters"]] if follow_dead_letters else []) + \
                ([self.topics["snapshots"]] if follow_snapshots else [])
            if followed and self.consumer is None:  # assigned at the topics' end now: records sent from here on
                self.consumer = own_consumer = follow(consumer_config(self.run_id, conf), followed)
            if answer_candidates:
                owners = {name: cap.owner for name, cap in self.captures.items() if cap.owner is not None}
                self.candidates = CandidateAnswerer(
                    self.run_id, model, {name: cap.module for name, cap in self.captures.items()}, self._publish,
                    self.topics["probe-results"], self.measure, self._overhead, owners=owners,
                    recent_examples=recent_examples, eval_batch_size=eval_batch_size,
                    candidate_timeout=candidate_timeout, replay_bytes=replay_bytes)
            if follow_snapshots:
                self._snapshots = SnapshotFollower(
                    self.run_id, model, list(self.captures), snapshot_dir, apply_snapshots,
                    lambda value: self._publish(self.topics["guard-decisions"], self.run_id, value))
            if self.consumer is not None:
                self._follower = Follower(self.consumer, self.run_id, self.topics["dead-letters"],
                                          self.candidates.receive if self.candidates else None,
                                          self._dead.receive if self._dead else None, self.topics["snapshots"],
                                          self._snapshots.receive if self._snapshots else None)
            self._publish_run_info("RUNNING")
        except BaseException:
            self._undo_init(own_publisher, own_consumer)
            raise

    def _undo_init(self, own_publisher, own_consumer):
        """A failed __init__: removes the hooks and closes what it created itself, never hiding its error."""
        for cap in self.captures.values():  # leave the model as it was
            cap.remove()
        self.captures = {}
        if self._context is not None:
            self._context.remove()
        self.candidates = None
        self._closed = True
        if own_consumer is not None:
            try:
                own_consumer.close()
            except Exception as e:
                warnings.warn(f"curvewatch: closing the consumer after a failed start failed: {e}", RuntimeWarning)
        if own_publisher:
            try:  # nothing was published yet (or the one RunInfo failed): no long wait for a broker
                self.publisher.close(timeout=_UNDO_FLUSH_SECONDS)
            except Exception as e:
                warnings.warn(f"curvewatch: closing the publisher after a failed start failed: {e}", RuntimeWarning)

    def _publish_run_info(self, status):
        self._run_info["status"] = status
        self._publish(self.topics["runs"], self.run_id, _avro.codec("RunInfo").encode(self._run_info))

    @property
    def dropped(self):
        """Records dropped because Kafka was slow (policy "drop"); always 0 under "block"."""
        return self.publisher.dropped

    def _publish(self, topic, key, value):
        if self.publisher.publish(topic, key.encode("utf-8"), value):  # False: dropped (policy "drop"), counted there
            self.records += 1

    def overhead(self):
        """What watching costs, measured here: wall, training, capture and answer seconds, and ratios
        (capture + answer) / training, capture / training, answer / training; answer_budget."""
        return self._overhead.report()

    def paused(self):
        """`with w.paused():` around work that is not this training loop (an evaluation, another model):
        its time counts neither as training (which the answer budget is a share of) nor as overhead."""
        return self._overhead.paused()

    def dead_letters(self):
        """Dead letters of this run seen since watch() started: [{topic, layer, reason_code, count,
        reason, component}], most frequent first (empty with follow_dead_letters=False)."""
        self.poll()
        return [] if self._dead is None else self._dead.summary()

    # -- the training loop's calls ------------------------------------------------------------
    def step(self, step, sample_ids=None, losses=None, probe=False, fisher=None, grad_scale=None, inputs=None,
             targets=None):
        """Publishes what the hooks captured since the last call (every micro-batch), the weights every
        N steps, then handles the run's new snapshots (applied after this step with apply_snapshots=True,
        each reported to the guard) and answers pending edit candidates (at most answers_per_step).

        sample_ids: one id per example of the step, in the order of the micro-batches. inputs,
        targets: this step's batch (a tensor or dict, or a list of micro-batches) as the model takes
        it; with answer_candidates=True they join the recent training examples candidates are
        evaluated on. Returns the number of records published.
        """
        started = time.perf_counter()
        before = self.records
        self._last_step = int(step)
        if self.candidates is not None and inputs is not None and not probe:
            if sample_ids is None:
                raise ValueError("inputs need sample_ids (one id per example)")
            self.candidates.recent.add(sample_ids, inputs, targets)
        self._publish_step(step, sample_ids, losses, probe, fisher, grad_scale)
        self.poll()
        if self._snapshots is not None:
            self._snapshots.handle_pending(self._last_step)
        self.clock.add("capture", started)
        if self.candidates is not None and not probe:
            self.candidates.answer_pending(self._last_step, self.answers_per_step)
        return self.records - before

    def poll(self, max_messages=64):
        """Takes the edit candidates, snapshot events and dead letters the consumer has fetched (never waits)."""
        return 0 if self._follower is None else self._follower.poll(max_messages)

    def snapshots(self):
        """What became of the run's snapshots so far (step() handles them): counts (applied, refused,
        verified_only, duplicates, failed_requests, ...), refusal reasons and the latest applications
        [{snapshot_id, applied_after_step, snapshot_step, layers, rhos, sha256}]; None when not following."""
        return None if self._snapshots is None else self._snapshots.summary()

    def answer_candidates(self, step=None, max_answers=None):
        """Takes the edit candidates fetched so far (never waits for Kafka) and answers the newest
        pending one of each layer, at most max_answers (None: all); returns how many were answered.
        step() calls it. step defaults to the last step passed to step()."""
        if self.candidates is None:
            raise RuntimeError("watch(..., answer_candidates=True) to answer edit candidates")
        self.poll()
        return self.candidates.answer_pending(self._last_step if step is None else int(step), max_answers)

    def _publish_step(self, step, sample_ids, losses, probe, fisher, grad_scale):
        before = self.records
        ids = [str(s) for s in sample_ids] if sample_ids is not None else []
        if losses is not None and len(losses) != len(ids):
            raise ValueError(f"losses need one sample id each: {len(losses)} losses, {len(ids)} sample ids")
        for cap in self.captures.values():
            micros = cap.take()
            if micros:
                self._publish_layer(cap, step, micros, ids, losses, probe, fisher or self.fisher, grad_scale)
        if not probe and self.weights_every and step % self.weights_every == 0:
            for cap in self.captures.values():
                self.publish_weights(cap.name, step)
        return self.records - before

    def _publish_layer(self, cap, step, micros, ids, losses, probe, fisher, grad_scale):
        a, g, index, count = token_rows(micros, cap.d_in, cap.d_out, len(ids), self.tokens_per_step, self._generator)
        scale = (float(count) if self.grad_scale == "tokens" else float(self.grad_scale)) if grad_scale is None \
            else float(grad_scale)
        a = a.to("cpu", torch.float32)
        factor = scale
        if self.grad_scaler is not None and self.grad_scaler.is_enabled():
            factor /= float(self.grad_scaler.get_scale())  # the loss was multiplied by the scaler's scale
        g = g.to("cpu", torch.float32) * factor
        # one float64 sum each: NaN and infinities propagate into it (and it is ~20x cheaper than isfinite().all())
        if not math.isfinite(float(a.sum(dtype=torch.float64)) + float(g.sum(dtype=torch.float64))):
            self.skipped_nonfinite += 1
            if self.skipped_nonfinite == 1:
                warnings.warn(f"curvewatch: layer {cap.name} step {step}: non-finite activations or gradients (an "
                              "overflowing mixed-precision step?) are not published; w.skipped_nonfinite counts them",
                              RuntimeWarning, stacklevel=4)
            return
        for value in self._capture_records.encode(cap, step, a, g, ids, index, losses, probe, fisher, scale):
            self._publish(self.topics["captures"], f"{self.run_id}/{cap.name}", value)

    def publish_weights(self, layer, step):
        """W as d_out x d_in; a weight above max_record_bytes goes out as row parts (WeightSnapshot
        v2: part, parts, row_offset), the bias in part 0."""
        for value in self._weight_records.encode(self.captures[layer], step):
            self._publish(self.topics["weights"], f"{self.run_id}/{layer}", value)

    @contextlib.contextmanager
    def _side_pass(self, model):
        """Runs a forward/backward that must not disturb the training step's parameter gradients."""
        started = time.perf_counter()
        params = list(model.parameters())
        saved = [None if p.grad is None else p.grad.clone() for p in params]
        # the training step's own captures, if step() has not published them yet, survive the side pass
        stashed = {name: cap.stash() for name, cap in self.captures.items()}
        try:
            yield
        finally:
            for p, g in zip(params, saved):
                p.grad = g
            for name, cap in self.captures.items():
                cap.unstash(stashed[name])
            self.clock.add("capture", started)

    def probe(self, model, inputs, targets=None, loss_fn=None, step=0, sample_ids=None, capture=True):
        """Held-out probe examples: the batch edit candidates are evaluated on (probe=true), and, with
        capture=True, their captures (probe=True: never accumulated into factors). loss_fn, when given,
        measures every answer of tensor batches (dict batches with labels need none)."""
        if sample_ids is None:
            raise ValueError("probe examples need sample_ids (one id per example)")
        if loss_fn is not None:
            self.measure.loss_fn = loss_fn
        if self.candidates is not None:
            self.candidates.set_probe(inputs, targets, sample_ids)
        if not capture:
            return 0
        with self._side_pass(model):
            model.zero_grad(set_to_none=True)
            stats = self.measure(model, inputs, targets)
            stats.token_losses.sum().backward()  # a summed loss: g is already per token
            return self._publish_step(step, sample_ids, stats.loss.detach().tolist(), True, None, 1.0)

    def fisher_pass(self, model, inputs, step, sample_ids=None):
        """True-Fisher capture: labels sampled from the model's own softmax at every real token
        (fisher=SAMPLED); a dict batch's labels are not used, its padding is left out."""
        with self._side_pass(model):
            model.zero_grad(set_to_none=True)
            feed = {k: v for k, v in inputs.items() if k != "labels"} if isinstance(inputs, dict) else inputs
            logits = batches.logits_of(batches.call(model, feed))
            flat = logits.reshape(-1, logits.shape[-1])
            mask = self._context.mask_key and isinstance(inputs, dict) and inputs.get(self._context.mask_key)
            with torch.no_grad():
                sampled = torch.multinomial(torch.softmax(flat.float(), dim=-1), 1, generator=self._sampling(flat))
            losses = torch.nn.functional.cross_entropy(flat.float(), sampled.squeeze(1), reduction="none")
            if isinstance(mask, torch.Tensor) and mask.numel() == losses.numel():
                losses = losses * (mask.reshape(-1) != 0).to(losses.dtype)
            losses.sum().backward()
            return self._publish_step(step, sample_ids, None, False, "SAMPLED", 1.0)

    def _sampling(self, like):
        if like.device.type == "cpu":
            return self._generator
        if not hasattr(self, "_device_generator"):
            self._device_generator = torch.Generator(device=like.device).manual_seed(int(self._generator.initial_seed()))
        return self._device_generator

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
        self._context.remove()
        try:
            self._publish_run_info(status)
        finally:
            try:
                if self._follower is not None:
                    self.poll(1024)  # dead letters that arrived meanwhile still count in dead_letters()
                    self._follower.close()
                    self._follower = self.consumer = None
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

    See Watcher and clients/python/README.md for the options. Leaving the block publishes the
    final RunInfo (FINISHED, or FAILED if the block raised) and flushes.
    """
    return Watcher(model, layers, run_id, bootstrap, **options)
