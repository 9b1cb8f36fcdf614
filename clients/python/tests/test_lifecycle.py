"""Run lifecycle (RunInfo at start and end), Kafka settings pass-through and a real librdkafka queue."""
import importlib
import unittest
import warnings
from unittest import mock

import torch
import torch.nn.functional as F
from confluent_kafka import KafkaError

import curvewatch
from curvewatch import Publisher, PublishError, _avro
from helpers import Conv1D, FakeConsumer, Mlp, RecordingProducer

watch_module = importlib.import_module("curvewatch.watch")  # the module; curvewatch.watch is the function


def run_infos(producer):
    codec = _avro.codec("RunInfo")
    return [codec.decode(v) for t, k, v in producer.messages if t.endswith("runs")]


class RunLifecycleTest(unittest.TestCase):
    def test_run_info_running_then_finished_and_hooks_removed(self):
        model, prod = Mlp(), RecordingProducer()
        with curvewatch.watch(model, ["fc1"], "life-1", publisher=Publisher({}, producer=prod)) as w:
            F.cross_entropy(model(torch.randn(4, 6)), torch.randint(0, 4, (4,))).backward()
            self.assertEqual(w.step(0), 1)
        self.assertEqual([r["status"] for r in run_infos(prod)], ["RUNNING", "FINISHED"])
        self.assertEqual(prod.messages[0][1], b"life-1")
        self.assertEqual(len(model.fc1._forward_pre_hooks), 0)
        self.assertEqual(len(model.fc1._backward_hooks), 0)
        w.close()  # a second close publishes nothing more
        self.assertEqual(len(run_infos(prod)), 2)

    def test_failed_block_reports_failed_and_keeps_the_original_exception(self):
        prod = RecordingProducer()
        with self.assertRaisesRegex(ZeroDivisionError, "division"):
            with curvewatch.watch(Mlp(), ["fc1"], "life-2", publisher=Publisher({}, producer=prod)):
                1 / 0
        self.assertEqual([r["status"] for r in run_infos(prod)], ["RUNNING", "FAILED"])


class FailedStartTest(unittest.TestCase):
    """A Watcher whose __init__ fails undoes what it made (hooks, its own publisher and consumer) and only that."""

    def setUp(self):
        self.made = []  # the publishers Watcher created itself

        def publisher(conf, **options):
            p = ClosingPublisher({}, producer=RecordingProducer())
            self.made.append(p)
            return p

        patcher = mock.patch.object(watch_module, "Publisher", publisher)
        patcher.start()
        self.addCleanup(patcher.stop)

    def assert_no_hooks(self, model):
        self.assertEqual(len(model.fc1._forward_pre_hooks), 0)
        self.assertEqual(len(model.fc1._backward_hooks), 0)

    def test_a_callers_consumer_stays_open_and_the_publisher_it_made_is_closed(self):
        model, cons = Mlp(), FakeConsumer()
        with self.assertRaisesRegex(ValueError, "recent_examples"):
            curvewatch.watch(model, ["fc1"], "fail-1", bootstrap="127.0.0.1:1", answer_candidates=True, consumer=cons,
                             recent_examples=0)
        self.assertFalse(cons.closed, "the caller's consumer is the caller's to close")
        self.assertEqual(len(self.made), 1)
        self.assertTrue(self.made[0].closed, "the publisher it created is not left behind")
        self.assert_no_hooks(model)

    def test_a_consumer_it_made_itself_is_closed_and_a_callers_publisher_stays_open(self):
        model, own = Mlp(), FakeConsumer()
        theirs = ClosingPublisher({}, producer=RecordingProducer())
        with mock.patch.object(watch_module, "follow", lambda conf, topic: own):
            with self.assertRaisesRegex(ValueError, "eval_batch_size"):
                curvewatch.watch(model, ["fc1"], "fail-2", bootstrap="127.0.0.1:1", publisher=theirs,
                                 answer_candidates=True, eval_batch_size=0)
        self.assertTrue(own.closed)
        self.assertFalse(theirs.closed)
        self.assertEqual(self.made, [])
        self.assert_no_hooks(model)

    def test_a_layer_too_large_for_a_record_leaves_no_hooks_and_no_publisher(self):
        model = Mlp()
        with self.assertRaisesRegex(ValueError, "cannot be split"):
            curvewatch.watch(model, ["fc1"], "fail-3", bootstrap="127.0.0.1:1", weights_every=1, max_record_bytes=64)
        self.assertTrue(self.made[0].closed)
        self.assert_no_hooks(model)

    def test_a_failing_cleanup_does_not_hide_the_error(self):
        model = Mlp()
        with mock.patch.object(ClosingPublisher, "close", side_effect=PublishError("broker gone")):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                with self.assertRaisesRegex(ValueError, "recent_examples"):
                    curvewatch.watch(model, ["fc1"], "fail-4", bootstrap="127.0.0.1:1", answer_candidates=True,
                                     consumer=FakeConsumer(), recent_examples=0)
        self.assertTrue(any("broker gone" in str(w.message) for w in caught), [str(w.message) for w in caught])
        self.assert_no_hooks(model)


class ClosingPublisher(Publisher):
    """A Publisher over a stand-in producer that remembers being closed."""
    closed = False

    def close(self, timeout=60.0):
        self.closed = True
        return super().close(timeout)


class KafkaSettingsTest(unittest.TestCase):
    def test_security_settings_reach_librdkafka(self):
        secure = {"bootstrap.servers": "127.0.0.1:1", "security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN",
                  "sasl.username": "u", "sasl.password": "p", "ssl.endpoint.identification.algorithm": "none"}
        with warnings.catch_warnings(record=True):  # "brokers are down": nothing listens there
            warnings.simplefilter("always")
            pub = Publisher(secure)  # a real confluent-kafka Producer; nothing is sent
            for k, v in secure.items():
                self.assertEqual(pub.config[k], v)
            pub.close(timeout=1)
        # librdkafka itself rejects a bad value: proof the setting is handed over, not filtered
        with self.assertRaisesRegex(PublishError, "Unsupported SASL mechanism: NOPE"):
            Publisher({"bootstrap.servers": "127.0.0.1:1", "security.protocol": "SASL_PLAINTEXT",
                       "sasl.mechanism": "NOPE"})

    def test_fatal_client_errors_fail_the_next_publish_and_transient_ones_warn_once(self):
        pub = Publisher({}, producer=RecordingProducer())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pub._on_error(KafkaError(KafkaError._TRANSPORT, "connection refused"))
            pub._on_error(KafkaError(KafkaError._TRANSPORT, "connection refused"))
        self.assertEqual(sum("connection refused" in str(w.message) for w in caught), 1)
        self.assertTrue(pub.publish("t", b"k", b"v"))
        pub._on_error(KafkaError(KafkaError._FENCED, "producer fenced", fatal=True))
        with self.assertRaisesRegex(PublishError, "fenced"):
            pub.publish("t", b"k", b"v")


class RealQueueTest(unittest.TestCase):
    """librdkafka's own bounded queue with no broker behind it: Kafka as slow as it gets."""

    def test_drop_policy_on_a_full_librdkafka_queue_then_close_reports_the_undelivered(self):
        pub = Publisher({"bootstrap.servers": "127.0.0.1:1", "queue.buffering.max.messages": 3,
                         "message.timeout.ms": 300}, policy="drop")
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            sent = [pub.publish("curvewatch.captures", b"k", b"v" * 10) for _ in range(8)]
            self.assertEqual(sent, [True] * 3 + [False] * 5)
            self.assertEqual(pub.dropped, 5)
            with self.assertRaisesRegex(PublishError, "failed delivery|undelivered"):
                pub.close(timeout=10)
        self.assertEqual(pub.delivered, 0)


class SequenceSumLossTest(unittest.TestCase):
    def test_summed_token_loss_on_a_sequence_model_with_conv1d(self):
        torch.manual_seed(11)
        emb, proj, head = torch.nn.Embedding(7, 4), Conv1D(6, 4), torch.nn.Linear(6, 7)
        model = torch.nn.ModuleDict({"emb": emb, "proj": proj, "head": head})
        prod = RecordingProducer()
        w = curvewatch.Watcher(model, ["proj", "head"], "seq-1", publisher=Publisher({}, producer=prod), grad_scale=1)
        tokens = torch.randint(0, 7, (3, 5))  # batch 3, sequence 5: next-token prediction
        logits = head(torch.tanh(proj(emb(tokens[:, :-1]))))
        F.cross_entropy(logits.reshape(-1, 7), tokens[:, 1:].reshape(-1), reduction="sum").backward()
        w.step(0, sample_ids=["x", "y", "z"])
        codec = _avro.codec("Capture")
        caps = {c["layer"]: c for c in (codec.decode(v) for t, k, v in prod.messages if t.endswith("captures"))}
        for name, grad in (("proj", proj.weight.grad.t()), ("head", head.weight.grad)):
            c = caps[name]
            a = torch.frombuffer(bytearray(c["activations"]["data"]), dtype=torch.float32).reshape(c["activations"]["shape"])
            g = torch.frombuffer(bytearray(c["gradients"]["data"]), dtype=torch.float32).reshape(c["gradients"]["shape"])
            self.assertEqual(a.shape[0], 12)
            self.assertEqual(c["grad_scale"], 1.0)
            torch.testing.assert_close(g.t() @ a, grad, rtol=1e-5, atol=1e-6)
        w.close()


if __name__ == "__main__":
    unittest.main()
