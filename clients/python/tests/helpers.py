import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch import nn  # noqa: E402


class TopicMeta:
    def __init__(self, partitions):
        self.partitions = {p: None for p in range(partitions)}
        self.error = None


class Metadata:
    def __init__(self, topics):
        self.topics = {name: TopicMeta(n) for name, n in topics.items()}


class RecordingProducer:
    """Stands in for confluent_kafka.Producer at unit level: keeps what was produced, in order, and the
    partition each record was sent to (None: left to the partitioner). Its metadata reports
    `partitions` (topic -> count) when given; without it, it has no list_topics (placement left
    to the partitioner, as for any stand-in)."""

    def __init__(self, full_after=None, partitions=None):
        self.messages = []
        self.partitions = []
        self.full_after = full_after
        if partitions is not None:
            self.list_topics = lambda timeout=None: Metadata(partitions)

    def produce(self, topic, key=None, value=None, on_delivery=None, partition=None):
        if self.full_after is not None and len(self.messages) >= self.full_after:
            raise BufferError("Local: Queue full")
        self.messages.append((topic, key, value))
        self.partitions.append(partition)
        if on_delivery:
            on_delivery(None, None)

    def poll(self, timeout=0):
        return 0

    def __len__(self):
        return 0

    def flush(self, timeout=None):
        return 0


class Conv1D(nn.Module):
    """Hugging Face GPT-2's Conv1D: weight stored (d_in, d_out), y = x W + b."""

    def __init__(self, nf, nx):
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.randn(nx, nf) * 0.2)
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).reshape(*x.shape[:-1], self.nf)


class Mlp(nn.Module):
    def __init__(self, d_in=6, hidden=5, classes=4, conv=False):
        super().__init__()
        self.fc1 = nn.Linear(d_in, hidden)
        self.fc2 = Conv1D(hidden, hidden) if conv else nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, classes)

    def forward(self, x):
        return self.out(torch.tanh(self.fc2(torch.tanh(self.fc1(x)))))


class FakeMessage:
    """A consumed record as confluent_kafka.Message shows it."""

    def __init__(self, key, value, error=None, topic="curvewatch.edit-candidates"):
        self._key, self._value, self._error, self._topic = key, value, error, topic

    def topic(self):
        return self._topic

    def key(self):
        return self._key

    def value(self):
        return self._value

    def error(self):
        return self._error


class FakeConsumer:
    """Stands in for an assigned confluent_kafka.Consumer: records pushed are returned by poll()."""

    def __init__(self):
        import collections
        self.queue = collections.deque()
        self.timeouts = []
        self.closed = False

    def push(self, key, value, topic="curvewatch.edit-candidates"):
        self.queue.append(FakeMessage(key.encode() if isinstance(key, str) else key, value, topic=topic))

    def poll(self, timeout=None):
        self.timeouts.append(timeout)
        return self.queue.popleft() if self.queue else None

    def close(self):
        self.closed = True
