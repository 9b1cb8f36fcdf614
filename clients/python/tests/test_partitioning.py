"""Every record lands in the partition the Java workers expect (golden values computed by Kafka's own
Java partitioner), a partitioner that disagrees is refused at watch(), and dead letters of the run
are surfaced."""
import json
import unittest
import warnings
import zlib
from pathlib import Path

import torch

from curvewatch import Publisher, Watcher, _avro
from curvewatch.partitioning import murmur2, partition_for_key
from helpers import FakeConsumer, RecordingProducer

GOLDEN = Path(__file__).resolve().parents[3] / "integration-tests/src/test/resources/golden/partitions.json"
TOPICS = {"curvewatch.captures": 4, "curvewatch.weights": 4, "curvewatch.runs": 1, "curvewatch.probe-results": 1}


class TwoBlocks(torch.nn.Module):
    """Layer names as in examples/textlm (blocks.{i}.mlp.fc / .proj)."""

    def __init__(self):
        super().__init__()
        self.blocks = torch.nn.ModuleList(torch.nn.ModuleDict({"mlp": torch.nn.ModuleDict(
            {"fc": torch.nn.Linear(4, 8), "proj": torch.nn.Linear(8, 4)})}) for _ in range(2))

    def forward(self, x):
        for b in self.blocks:
            x = x + b["mlp"]["proj"](torch.relu(b["mlp"]["fc"](x)))
        return x


class GoldenTest(unittest.TestCase):
    def test_murmur2_and_partitions_equal_javas_for_every_golden_key_and_count(self):
        golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
        counts = golden["partition_counts"]
        self.assertGreater(len(golden["keys"]), 200)
        self.assertTrue(any(ord(c) > 127 for e in golden["keys"] for c in e["key"]), "non-ASCII keys")
        for e in golden["keys"]:
            data = e["key"].encode("utf-8")
            self.assertEqual(data.hex(), e["utf8_hex"], e["key"])
            self.assertEqual(murmur2(data), e["murmur2"], e["key"])
            self.assertEqual([partition_for_key(e["key"], n) for n in counts], e["partitions"], e["key"])

    def test_bytes_and_str_keys_agree_and_bad_counts_are_refused(self):
        self.assertEqual(partition_for_key("run/ρ", 7), partition_for_key("run/ρ".encode(), 7))
        with self.assertRaises(ValueError):
            partition_for_key("k", 0)


class PlacementTest(unittest.TestCase):
    def test_every_record_goes_to_javas_partition_of_its_key(self):
        # issue 11: with librdkafka's default partitioner (CRC32) blocks.1.mlp.fc of this run went to
        # partition 2 of 4, the workers expect 3, and every capture of the layer was dead-lettered
        run, layer = "textlm-it", "blocks.1.mlp.fc"
        key = f"{run}/{layer}".encode()
        self.assertEqual(zlib.crc32(key) % 4, 2)  # where librdkafka's consistent_random puts it
        self.assertEqual(partition_for_key(key, 4), 3)  # where the workers expect it
        model = TwoBlocks()
        prod = RecordingProducer(partitions=TOPICS)
        w = Watcher(model, ["blocks.0.mlp.fc", "blocks.1.mlp.fc", "blocks.1.mlp.proj"], run,
                    publisher=Publisher({}, producer=prod), weights_every=1)
        x = torch.randn(3, 5, 4)
        model(x).pow(2).mean().backward()
        w.step(0, sample_ids=["a", "b", "c"])
        w.close()
        seen = set()
        for (topic, k, _), partition in zip(prod.messages, prod.partitions):
            self.assertEqual(partition, partition_for_key(k, TOPICS[topic]), f"{topic} {k}")
            seen.add((topic, k))
        self.assertIn(("curvewatch.captures", key), seen)
        self.assertIn(("curvewatch.weights", key), seen)
        captured = [p for (t, k, _), p in zip(prod.messages, prod.partitions) if t.endswith("captures") and k == key]
        self.assertEqual(captured, [3])

    def test_a_partitioner_unlike_javas_is_refused_at_watch(self):
        for partitioner in ("consistent_random", "random", "fnv1a", "consistent"):
            with self.subTest(partitioner=partitioner):
                with self.assertRaisesRegex(ValueError, "partitioner"):
                    Watcher(TwoBlocks(), ["blocks.0.mlp.fc"], "run-p", bootstrap="127.0.0.1:1",
                            kafka_config={"partitioner": partitioner}, follow_dead_letters=False)
        prod = RecordingProducer(partitions=TOPICS)
        p = Publisher({"partitioner": "murmur2"}, producer=prod)  # Java-compatible: accepted
        self.assertEqual(p.config["partitioner"], "murmur2")
        self.assertEqual(Publisher({}, producer=prod).config["partitioner"], "murmur2_random")

    def test_a_missing_topic_fails_watch(self):
        prod = RecordingProducer(partitions={"curvewatch.captures": 4})
        with self.assertRaisesRegex(RuntimeError, "curvewatch.weights is not available"):
            Watcher(TwoBlocks(), ["blocks.0.mlp.fc"], "run-m", publisher=Publisher({}, producer=prod))


def dead_letter(key, reason_code, reason, topic="curvewatch.captures"):
    return key.encode(), _avro.codec("DeadLetter").encode({
        "topic": topic, "partition": 1, "offset": 7, "original_key": key.encode(), "original_value": b"x",
        "reason_code": reason_code, "reason": reason, "component": "worker-1", "failed_ms": 0})


class DeadLettersTest(unittest.TestCase):
    def test_dead_letters_of_the_run_are_counted_and_warned_about_once_per_kind(self):
        cons = FakeConsumer()
        w = Watcher(TwoBlocks(), ["blocks.1.mlp.fc"], "run-d", publisher=Publisher({}, producer=RecordingProducer()),
                    consumer=cons)
        why = "key 'run-d/blocks.1.mlp.fc' belongs to partition 3 of 4 (default partitioner), found in partition 2"
        for _ in range(3):
            cons.push(*dead_letter("run-d/blocks.1.mlp.fc", "KEY_MISMATCH", why), topic="curvewatch.dead-letters")
        cons.push(*dead_letter("run-d", "UNKNOWN_CANDIDATE", "no such candidate", topic="curvewatch.probe-results"),
                  topic="curvewatch.dead-letters")
        cons.push(*dead_letter("run-dx/blocks.1.mlp.fc", "KEY_MISMATCH", why), topic="curvewatch.dead-letters")
        cons.push(*dead_letter("other/blocks.1.mlp.fc", "KEY_MISMATCH", why), topic="curvewatch.dead-letters")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            summary = w.dead_letters()
        texts = [str(c.message) for c in caught]
        self.assertEqual(len(texts), 2, texts)  # one per kind, not one per record
        self.assertIn("KEY_MISMATCH", texts[0])
        self.assertIn("this is why that layer has no factors", texts[0])
        self.assertEqual(summary[0], {"topic": "captures", "layer": "blocks.1.mlp.fc", "reason_code": "KEY_MISMATCH",
                                      "count": 3, "reason": why, "component": "worker-1"})
        self.assertEqual((summary[1]["topic"], summary[1]["layer"], summary[1]["count"]), ("probe-results", "", 1))
        self.assertEqual(len(summary), 2)  # "run-dx" and "other" are other runs
        w.close()
        self.assertTrue(cons.closed)

    def test_no_dead_letters_followed_without_a_broker_or_consumer(self):
        w = Watcher(TwoBlocks(), ["blocks.1.mlp.fc"], "run-e", publisher=Publisher({}, producer=RecordingProducer()))
        self.assertEqual(w.dead_letters(), [])
        self.assertIsNone(w.consumer)
        w.close()


class CandidateAndDeadLetterSameConsumerTest(unittest.TestCase):
    def test_one_consumer_feeds_both(self):
        cons = FakeConsumer()
        w = Watcher(TwoBlocks(), ["blocks.1.mlp.fc"], "run-f", publisher=Publisher({}, producer=RecordingProducer()),
                    consumer=cons, answer_candidates=True)
        cons.push(*dead_letter("run-f/blocks.1.mlp.fc", "NON_FINITE", "NaN in g"), topic="curvewatch.dead-letters")
        cons.push("run-f", b"\xc3\x01not a candidate")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.assertEqual(w.poll(), 2)
        self.assertEqual(w.candidates.refused, 1)
        self.assertEqual(w.dead_letters()[0]["reason_code"], "NON_FINITE")
        w.close()


if __name__ == "__main__":
    unittest.main()
