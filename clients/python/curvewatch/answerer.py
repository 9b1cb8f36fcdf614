"""Answering the service's edit candidates from a PyTorch loop (docs/SERVICE-CONTRACT.md §1).

Candidates of this run arrive through the watcher's consumer (`receive`); the newest pending one
per layer is answered inside `Watcher.step()` with a ProbeResult (calibration.py) over the latest
probe batch and the recent training examples, within the answer-time budget (overhead.py): a
candidate the budget cannot fit 10 s before its timeout is declined at once (`declined`), so the
service ends that calibration instead of waiting for it (and backs off).
"""
import collections
import time
import warnings

from . import _avro
from .calibration import Declined, Evaluation, Postponed, answer_record
from .candidate_parts import CandidateParts, HeldBases
from .candidates import CandidateError, parse_candidate
from .examples import DEFAULT_RECENT_EXAMPLES, ProbeSet, RecentExamples
from .hooks import dims
from .limits import PROBE_RESULT_MAX_BYTES
from .replay import ForwardReplay



class CandidateAnswerer:
    """Receives EditCandidates of one run and answers them with ProbeResults.

    Counters: received, answered, declined (budget spent: a ProbeResult with `declined` was sent),
    skipped (an older pending candidate of a layer superseded by a newer one, or an id seen before),
    refused (malformed: undecodable, another run, unknown layer, wrong shapes, NaN, a basis that is
    not orthonormal), expired (pending longer than candidate_timeout, e.g. no probe batch yet),
    failed (the forward passes or the loss raised), nonfinite_losses (values published as
    ±FLOAT32_MAX because they were NaN or infinite), parts_received (records of candidates split
    into row parts). `seconds`: time spent answering; `passes`: forward passes over eval batches.
    """

    COUNTERS = ("received", "answered", "declined", "skipped", "refused", "expired", "failed", "nonfinite_losses",
                "parts_received")

    def __init__(self, run_id, model, modules, publish, topic, measure, overhead, *, owners=None,
                 recent_examples=DEFAULT_RECENT_EXAMPLES, eval_batch_size=64, candidate_timeout=60.0,
                 replay_bytes=256 * 1024 * 1024):
        self.run_id = run_id
        self.model = model
        self.modules = dict(modules)
        self.owners = dict(owners or {})
        self.layers = {name: dims(m) for name, m in self.modules.items()}
        self._publish = publish
        self.topic = topic
        self.measure = measure
        self.overhead = overhead
        self.clock = overhead.clock
        self.recent = RecentExamples(recent_examples)
        self.eval_batch_size = int(eval_batch_size)
        if self.eval_batch_size < 1:
            raise ValueError(f"eval_batch_size must be >= 1, got {eval_batch_size}")
        self.candidate_timeout = float(candidate_timeout)
        self.replay_bytes = int(replay_bytes)
        self.pending = collections.OrderedDict()  # layer -> newest Candidate
        self._done = collections.OrderedDict()    # candidate ids answered or superseded (the last 1024)
        for name in self.COUNTERS:
            setattr(self, name, 0)
        self.seconds = 0.0
        self.max_seconds = 0.0  # the longest answer (or decline after unedited passes)
        self.passes = 0
        self.last_seconds = {}  # layer -> seconds of its last answer (the budget's estimate)
        self.now_share = {}  # layer -> share of its last answer spent in the unedited passes
        self.answered_layers = set()
        self.layer_seconds = collections.Counter()  # layer -> seconds spent answering it
        self.active_layers = set()  # layers candidates came for: each gets an equal share of the budget
        self.replays = {}  # layer -> ForwardReplay
        self.probe = None
        self._warned = set()
        self._in = _avro.codec("EditCandidate")
        self._parts = CandidateParts()
        self._held = HeldBases()  # bases a v4 candidate may name instead of sending
        self._out = _avro.codec("ProbeResult")

    def counts(self):
        return {name: getattr(self, name) for name in self.COUNTERS}

    def set_probe(self, inputs, targets, sample_ids):
        """The held-out probe examples (probe=true) answers are evaluated on."""
        self.probe = ProbeSet(inputs, targets, sample_ids)

    def replay_status(self):
        """Per layer answered so far: whether the forward below it is reused, or why not."""
        return {layer: {"replay": r.disabled is None, "reason": r.disabled, "replayed_batches": r.replayed_batches,
                        "full_batches": r.full_batches} for layer, r in self.replays.items()}

    # -- receiving ---------------------------------------------------------------------------
    def _warn(self, text):
        warnings.warn("curvewatch: " + text, RuntimeWarning, stacklevel=4)

    def _refuse(self, what, reason):
        self.refused += 1
        self._warn(f"refused edit candidate {what}: {reason}")

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
            record = self._held.resolve(record)
            candidate = parse_candidate(record, self.layers)
        except CandidateError as e:
            self._refuse(what, str(e))
            return None
        self._held.remember(record)
        if candidate.candidate_id in self._done or any(c.candidate_id == candidate.candidate_id
                                                       for c in self.pending.values()):
            self.skipped += 1  # sent twice: answered (or superseded) once is enough
            return None
        older = self.pending.pop(candidate.layer, None)
        if older is not None:
            self.skipped += 1
            self._mark_done(older.candidate_id)
        self.pending[candidate.layer] = candidate
        self.active_layers.add(candidate.layer)
        return candidate

    def _mark_done(self, candidate_id):
        self._done[candidate_id] = None
        while len(self._done) > 1024:
            self._done.popitem(last=False)

    # -- answering ---------------------------------------------------------------------------
    def answer_pending(self, step, max_answers=None):
        """Answers (or declines) the pending candidates, oldest layer first, at most max_answers
        answered; returns how many were answered.

        Nothing is answered before a probe batch and at least one training example exist (the
        service refuses a ProbeResult without both); candidates pending longer than
        candidate_timeout are dropped as expired (the service has given up on them by then). A
        candidate whose answer does not fit the budget waits while it could still be answered
        10 s before the service's timeout, else it is declined.
        """
        ready = self.probe is not None and len(self.recent) > 0
        now = time.monotonic()
        for layer, c in list(self.pending.items()):
            if now - c.received > self.candidate_timeout:
                del self.pending[layer]
                self._mark_done(c.candidate_id)
                self.expired += 1
                missing = [what for what, have in (("no probe batch yet: call w.probe(...)", self.probe),
                                                   ("no training examples yet: pass inputs= (and targets=) to "
                                                    "w.step(...)", len(self.recent))) if not have]
                self._warn(f"edit candidate {c.candidate_id!r} for layer {layer!r} expired unanswered after "
                           f"{self.candidate_timeout:.0f} s" + (f" ({'; '.join(missing)})" if missing else ""))
        answered = 0
        held = False  # the budget is held for a layer not answered yet that waits for it
        # layers not answered yet first (each needs one answer to be calibrated at all), then the oldest
        for layer, candidate in sorted(self.pending.items(), key=lambda item: item[0] in self.answered_layers):
            if not ready or (max_answers is not None and answered >= max_answers):
                break
            # the layer's last answer, else another layer's (same model: a similar cost), else unknown
            estimate = self.last_seconds.get(layer, max(self.last_seconds.values(), default=0.0))
            if held or not self.overhead.allows(estimate, *self._share(layer)):
                wait = self.overhead.wait(estimate, *self._share(layer))
                if self._in_time(candidate, wait, estimate):
                    held = held or layer not in self.answered_layers
                    continue  # the budget refills as training goes on: answer it a little later
                del self.pending[layer]
                self._mark_done(candidate.candidate_id)
                self._decline(candidate, step, f"answer-time budget spent ({self.overhead.budget:.0%} of training "
                                                f"time; about {wait:.0f} s more training needed"
                                                + (", the rest held for a layer not answered yet)" if held else ")"))
                continue
            del self.pending[layer]
            self._mark_done(candidate.candidate_id)
            if self._answer(candidate, step):
                answered += 1
        return answered

    def _share(self, layer):
        """(seconds the layer's answers took, its share of the budget): layers split it equally, so one
        layer whose candidates come often (the service backs off the others after their declines)
        cannot starve the rest. A layer not answered yet may take the whole unspent budget, and the
        others wait while it waits for it: with equal shares from the start, the layer with the
        costliest answers (the lowest: replay saves least there) was declined whenever its candidates
        came, backed off by the service each time, and never calibrated in a 1200-step run."""
        if layer not in self.answered_layers:
            return 0.0, 1.0
        return self.layer_seconds[layer], 1.0 / max(1, len(self.active_layers))

    def _in_time(self, candidate, wait, estimate):
        """Whether, after `wait` more seconds of training (x1.25 in wall time for the capture overhead)
        and an answer of `estimate` seconds, the candidate is still answered 10 s before the service
        gives up on it (calibration.timeout.ms, which candidate_timeout mirrors)."""
        return time.monotonic() - candidate.received + 1.25 * wait + estimate <= self.candidate_timeout - 10.0

    def _decline(self, candidate, step, reason):
        self._publish(self.topic, self.run_id, self._out.encode({
            "run_id": self.run_id, "candidate_id": candidate.candidate_id, "layer": candidate.layer, "step": int(step),
            "rhos": list(candidate.rhos), "examples": [], "timestamp_ms": int(time.time() * 1000),
            "search": candidate.search, "chosen": -1, "peak_tokens": int(candidate.peak_tokens), "declined": reason}))
        self.declined += 1

    def _answer(self, candidate, step):
        """Evaluates and publishes one answer (or its decline); True when answered. Its seconds count
        against the budget whatever the outcome."""
        started = time.perf_counter()
        estimate = None
        try:
            value = self._out.encode(self.evaluate(candidate, step, started))
            if len(value) > PROBE_RESULT_MAX_BYTES:
                raise ValueError(f"the ProbeResult takes {len(value)} bytes, more than the probe-results topic "
                                 f"accepts ({PROBE_RESULT_MAX_BYTES}); use a smaller probe batch or fewer recent_examples")
            self._publish(self.topic, self.run_id, value)
            self.answered += 1
            self.answered_layers.add(candidate.layer)
            return True
        except Declined as e:
            self._decline(candidate, step, str(e))
        except Postponed as e:
            estimate = e.estimate
            if candidate.layer not in self.pending:  # back in line, unless a newer one of its layer came meanwhile
                self._done.pop(candidate.candidate_id, None)
                self.pending[candidate.layer] = candidate
        except Exception as e:  # noqa: BLE001 - never crash training on an answer
            self.failed += 1
            self._warn(f"could not answer edit candidate {candidate.candidate_id!r} for layer "
                       f"{candidate.layer!r}: {type(e).__name__}: {e}")
        finally:
            spent = time.perf_counter() - started
            self.seconds += spent
            self.max_seconds = max(self.max_seconds, spent)
            self.layer_seconds[candidate.layer] += spent
            self.last_seconds[candidate.layer] = spent if estimate is None else estimate
            self.clock.seconds["answer"] += spent
        return False

    def _replay(self, layer):
        if self.replay_bytes <= 0:
            return None
        if layer not in self.replays:
            module = self.modules[layer]
            self.replays[layer] = ForwardReplay(self.model, self.owners.get(layer, module), module.weight,
                                                self.replay_bytes)
        return self.replays[layer]

    def _check_budget(self, candidate, started):
        """After the unedited passes: if the rest of the answer would not fit the budget (the estimate:
        the layer's last answer scaled by these passes, or passes x their time at first), the
        candidate waits for the budget (Postponed) if it can still be answered in time, else it is
        declined."""
        def check(now_seconds, estimate):
            if candidate.layer in self.now_share and self.now_share[candidate.layer] > 0:
                estimate = now_seconds * (1 / self.now_share[candidate.layer] - 1)
            spent = time.perf_counter() - started
            if self.overhead.allows(spent + estimate, *self._share(candidate.layer)):
                return
            wait = self.overhead.wait(spent + estimate, *self._share(candidate.layer))
            if self._in_time(candidate, wait, spent + estimate):
                raise Postponed(spent + estimate)
            raise Declined(f"answer-time budget spent ({self.overhead.budget:.0%} of training time): the rest "
                           f"of this answer would take about {estimate:.1f} s")
        return check

    def evaluate(self, candidate, step, started=None):
        """The ProbeResult record of a candidate (forward passes under W and the evaluated W'_k)."""
        probe_batches = list(self.probe.batches(self.eval_batch_size))
        train_batches = list(self.recent.batches(self.eval_batch_size))
        replay = self._replay(candidate.layer)
        check = None if started is None else self._check_budget(candidate, started)
        evaluation = Evaluation(self.model, self.modules[candidate.layer], self.measure, candidate, probe_batches,
                                train_batches, replay, after_now=check)
        try:
            if replay is None:
                evaluation.run()
            else:
                with replay.answer():
                    evaluation.run()
        finally:
            self.passes += evaluation.passes
        if started is not None:
            self.now_share[candidate.layer] = evaluation.now_seconds / max(1e-9, time.perf_counter() - started)
        record, nonfinite = answer_record(evaluation, self.run_id, step, [i for b in probe_batches for i in b[0]],
                                          [i for b in train_batches for i in b[0]])
        self.nonfinite_losses += nonfinite
        return record
