"""Non-blocking Kafka publishing with a bounded queue and an explicit policy when Kafka is slow."""
import threading
import time
import warnings

from confluent_kafka import KafkaException, Producer

from .partitioning import check_partitioner, partition_for_key


class PublishError(RuntimeError):
    """Records could not be delivered (reported on the next call, or by close())."""


class Publisher:
    """Wraps a confluent-kafka Producer.

    policy "block": when the local queue is full, wait (serving delivery callbacks) up to
    block_timeout seconds, then raise PublishError. policy "drop": count the record as dropped and
    warn; `dropped` says how many. Delivery failures are collected by the callback and raised as
    PublishError at the next publish() or at close(): nothing is lost silently.

    Partitions: after resolve_partitions(topics), every record to one of those topics goes to the
    partition Java's default partitioner gives its key (partitioning.partition_for_key), set
    explicitly; other topics are left to librdkafka's `murmur2_random`, which agrees with Java for
    non-null keys. A `partitioner` setting that does not agree raises ValueError.
    """

    def __init__(self, config, policy="block", block_timeout=60.0, max_queue_bytes=256 * 1024 * 1024,
                 producer=None):
        if policy not in ("block", "drop"):
            raise ValueError(f"policy must be 'block' or 'drop', not {policy!r}")
        self.policy = policy
        self.block_timeout = block_timeout
        self._lock = threading.Lock()
        self.delivered = 0
        self.dropped = 0
        self.failed = 0
        self._errors = []
        self._warned = set()
        check_partitioner(config)
        self.partition_counts = {}  # topic -> partitions, from resolve_partitions()
        self._partitions = {}  # (topic, key) -> partition
        # no compression: captures are float32, which zstd shrinks by ~8% for 3x the CPU of sending them
        # plain (on librdkafka's thread, beside training); the tensor topics keep them as sent (compression.type
        # producer), the small-record topics compress at the broker
        conf = {"linger.ms": 5, "compression.type": "none", "message.max.bytes": 16 * 1024 * 1024,
                "queue.buffering.max.kbytes": max(1, max_queue_bytes // 1024), "enable.idempotence": True,
                "partitioner": "murmur2_random", "error_cb": self._on_error}
        conf.update(config)  # the caller's settings win: security.protocol, sasl.*, ssl.* pass through as is
        self.config = {k: v for k, v in conf.items() if not callable(v)}
        if producer is None:
            try:
                producer = Producer(conf)
            except KafkaException as e:
                raise PublishError(f"invalid Kafka configuration: {e}") from e
        self._producer = producer

    def resolve_partitions(self, topics, timeout=10.0):
        """Reads the partition count of each topic from the broker (one metadata request); raises
        RuntimeError naming a topic that is missing or unreadable. A stand-in producer without
        list_topics leaves placement to the partitioner."""
        list_topics = getattr(self._producer, "list_topics", None)
        if list_topics is None:
            return {}
        try:
            known = list_topics(timeout=timeout).topics
        except KafkaException as e:
            raise RuntimeError(f"cannot read topic metadata from the broker: {e}") from e
        counts = {}
        for topic in topics:
            meta = known.get(topic)
            if meta is None or meta.error is not None or not meta.partitions:
                raise RuntimeError(f"topic {topic} is not available ({None if meta is None else meta.error}); "
                                   "is Curvewatch deployed on this broker (./curvewatch broker creates its topics)?")
            counts[topic] = len(meta.partitions)
        self.partition_counts.update(counts)
        self._partitions.clear()
        return counts

    def partition(self, topic, key):
        """The partition a record of `topic` with `key` (bytes) goes to; None: left to the partitioner."""
        found = self._partitions.get((topic, key))
        if found is None and topic in self.partition_counts:
            found = self._partitions[(topic, key)] = partition_for_key(key, self.partition_counts[topic])
        return found

    def _on_error(self, err):
        """librdkafka's client-level errors (broker down, authentication): fatal ones fail the next
        publish; transient ones are warned about once per kind, as librdkafka keeps retrying."""
        fatal = getattr(err, "fatal", lambda: False)()
        if fatal:
            with self._lock:
                self.failed += 1
                self._errors.append(f"fatal Kafka error: {err}")
        elif str(getattr(err, "code", lambda: err)()) not in self._warned:
            self._warned.add(str(getattr(err, "code", lambda: err)()))
            warnings.warn(f"curvewatch: Kafka client error (retrying): {err}", RuntimeWarning, stacklevel=2)

    def _on_delivery(self, err, msg):
        with self._lock:
            if err is None:
                self.delivered += 1
            else:
                self.failed += 1
                if len(self._errors) < 10:
                    self._errors.append(f"{msg.topic()}: {err}")

    def _raise_failures(self):
        with self._lock:
            if self._errors:
                errors, self._errors = self._errors, []
                raise PublishError(f"{self.failed} record(s) failed delivery, e.g. " + "; ".join(errors))

    def publish(self, topic, key, value):
        self._raise_failures()
        deadline = time.monotonic() + self.block_timeout
        placed = {} if (p := self.partition(topic, key)) is None else {"partition": p}
        while True:
            try:
                self._producer.produce(topic, key=key, value=value, on_delivery=self._on_delivery, **placed)
                self._producer.poll(0)
                return True
            except BufferError:
                if self.policy == "drop":
                    self.dropped += 1
                    if self.dropped == 1 or self.dropped % 1000 == 0:
                        warnings.warn(f"curvewatch: Kafka is slow, dropped {self.dropped} record(s) so far "
                                      "(policy 'drop')", RuntimeWarning, stacklevel=3)
                    return False
                if time.monotonic() > deadline:
                    raise PublishError(f"local queue still full after {self.block_timeout:.0f} s "
                                       "(policy 'block'): is the broker reachable?")
                self._producer.poll(0.05)
            except KafkaException as e:
                raise PublishError(f"cannot publish to {topic}: {e}") from e

    @property
    def pending(self):
        """Records handed to the producer whose delivery is not yet reported."""
        return len(self._producer)

    def flush(self, timeout=60.0):
        """Waits up to timeout seconds for every record handed over to be delivered; raises PublishError
        for failed ones. Returns how many are still undelivered."""
        remaining = self._producer.flush(timeout)
        self._raise_failures()
        return remaining

    def close(self, timeout=60.0):
        """Flushes; raises PublishError if records are undelivered or failed."""
        remaining = self._producer.flush(timeout)
        if remaining:
            raise PublishError(f"{remaining} record(s) still undelivered after {timeout:.0f} s")
        self._raise_failures()
        if self.dropped:
            warnings.warn(f"curvewatch: {self.dropped} record(s) were dropped (policy 'drop')", RuntimeWarning)
