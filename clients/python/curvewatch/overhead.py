"""What watching costs the training loop, measured by the client, and the answer-time budget."""
import contextlib
import time


class Overhead:
    """Wall time since watch() started, split into the client's capture work (hooks, publishing,
    probe and sampled-label passes, polling), its answers to edit candidates, and the rest, which
    is training. Answers are held to `budget` x training seconds (SERVICE-CONTRACT §1: the trainer
    may decline a candidate when its budget is spent)."""

    def __init__(self, clock, budget):
        if not budget > 0:
            raise ValueError(f"answer_budget must be > 0 (a share of training time), got {budget}")
        self.clock = clock
        self.budget = float(budget)
        self.started = time.perf_counter()

    @contextlib.contextmanager
    def paused(self):
        """Time inside the block is not training (nor capture or answers): it leaves the wall clock."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.started += time.perf_counter() - started

    def seconds(self):
        wall = time.perf_counter() - self.started
        capture, answer = self.clock.seconds["capture"], self.clock.seconds["answer"]
        return wall, capture, answer, max(0.0, wall - capture - answer)

    def allows(self, estimate, spent=0.0, share=1.0):
        """True when an answer expected to take `estimate` seconds stays within the budget, and within
        `share` of it for a layer that has `spent` seconds on answers so far."""
        return self.budget == float("inf") or self.wait(estimate, spent, share) == 0.0

    def wait(self, estimate, spent=0.0, share=1.0):
        """Training seconds still needed before an answer of `estimate` seconds fits the budget (and the
        layer's share of it)."""
        if self.budget == float("inf"):
            return 0.0
        _, _, answer, training = self.seconds()
        return max(0.0, (answer + estimate) / self.budget - training,
                   (spent + estimate) / (self.budget * share) - training)

    def report(self):
        wall, capture, answer, training = self.seconds()
        ratio = (capture + answer) / training if training > 0 else 0.0
        return {"wall_seconds": wall, "training_seconds": training, "capture_seconds": capture,
                "answer_seconds": answer, "ratio": ratio,
                "capture_ratio": capture / training if training > 0 else 0.0,
                "answer_ratio": answer / training if training > 0 else 0.0, "answer_budget": self.budget}
