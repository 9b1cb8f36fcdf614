"""The watcher's one consumer: edit candidates, dead letters and snapshots of its run, assigned at the topics' ends."""
import warnings

from .limits import TENSOR_TOPIC_MAX_MESSAGE_BYTES as TOPIC_MAX_RECORD_BYTES


def consumer_config(run_id, conf):
    """The followers' consumer: assigned, never committing; the caller's settings (security) pass through."""
    out = {"group.id": f"curvewatch-trainer-{run_id}", "enable.auto.commit": False,
           "enable.auto.offset.store": False,
           # prefetch bound: two records of the largest size the service sends (16 MiB)
           "queued.max.messages.kbytes": 2 * TOPIC_MAX_RECORD_BYTES // 1024,
           "fetch.max.bytes": 2 * TOPIC_MAX_RECORD_BYTES, "max.partition.fetch.bytes": TOPIC_MAX_RECORD_BYTES,
           "receive.message.max.bytes": 2 * TOPIC_MAX_RECORD_BYTES + 65536}
    producer_only = ("linger.ms", "compression.type", "enable.idempotence", "queue.buffering.max.kbytes",
                     "queue.buffering.max.messages", "message.max.bytes", "message.timeout.ms", "acks",
                     "batch.size", "batch.num.messages", "partitioner")
    out.update({k: v for k, v in conf.items() if k not in producer_only})
    return out


def follow(config, topics, timeout=10.0):
    """A confluent-kafka Consumer assigned every partition of each topic (a name or a list) at its
    current end.

    The end offsets are read explicitly (not the logical OFFSET_END, resolved later), so every
    record published after this returns is seen. Raises RuntimeError if a topic is missing or
    the broker does not answer within `timeout` seconds.
    """
    from confluent_kafka import Consumer, KafkaException, TopicPartition
    try:
        consumer = Consumer(config)
    except KafkaException as e:
        raise RuntimeError(f"invalid Kafka consumer configuration: {e}") from e
    topics = [topics] if isinstance(topics, str) else list(topics)
    try:
        known = consumer.list_topics(timeout=timeout).topics
        assignment = []
        for topic in topics:
            meta = known.get(topic)
            if meta is None or meta.error is not None or not meta.partitions:
                raise RuntimeError(f"topic {topic} is not available ({None if meta is None else meta.error}); "
                                   "is Curvewatch deployed on this broker (./curvewatch broker creates its topics)?")
            for p in sorted(meta.partitions):
                _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
                assignment.append(TopicPartition(topic, p, high))
        consumer.assign(assignment)
        return consumer
    except KafkaException as e:
        consumer.close()
        raise RuntimeError(f"cannot follow {', '.join(topics)}: {e}") from e
    except Exception:
        consumer.close()
        raise


class Follower:
    """Polls the consumer without waiting and hands each record to its handler: dead letters (any key:
    the handler keeps its run's), snapshot events (the handler keeps its run's, key or no key) or edit
    candidates (keyed by this run; records of other runs are not even decoded)."""

    def __init__(self, consumer, run_id, dead_letter_topic, on_candidate=None, on_dead_letter=None,
                 snapshot_topic=None, on_snapshot=None):
        self.consumer = consumer
        self._key = run_id.encode("utf-8")
        self._dead_letter_topic = dead_letter_topic
        self._snapshot_topic = snapshot_topic
        self._on_candidate = on_candidate
        self._on_dead_letter = on_dead_letter
        self._on_snapshot = on_snapshot
        self._warned = set()

    def poll(self, max_messages=64):
        """Takes up to max_messages records already fetched; returns how many."""
        from confluent_kafka import KafkaError
        taken = 0
        for _ in range(max_messages):
            msg = self.consumer.poll(0)
            if msg is None:
                break
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF and err.code() not in self._warned:
                    self._warned.add(err.code())
                    warnings.warn(f"curvewatch: consumer: {err}", RuntimeWarning)
                continue
            taken += 1
            if msg.topic() == self._dead_letter_topic:
                if self._on_dead_letter is not None:
                    self._on_dead_letter(msg.key(), msg.value())
            elif msg.topic() == self._snapshot_topic:
                if self._on_snapshot is not None:
                    self._on_snapshot(msg.key(), msg.value())
            elif self._on_candidate is not None and msg.key() == self._key:
                self._on_candidate(msg.value())
        return taken

    def close(self):
        self.consumer.close()
