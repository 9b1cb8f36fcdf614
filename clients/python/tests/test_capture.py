"""Captured a and g against an independent autograd computation; g aᵀ summed equals the weight gradient."""
import unittest

import torch
import torch.nn.functional as F

from helpers import Conv1D, Mlp, RecordingProducer
from curvewatch import Publisher, PublishError, Watcher
from curvewatch import _avro

TOL = dict(rtol=1e-5, atol=1e-6)  # float32 arithmetic on both sides


def decoded(producer, topic_suffix):
    codec = _avro.codec({"captures": "Capture", "weights": "WeightSnapshot", "runs": "RunInfo"}[topic_suffix])
    return [codec.decode(v) for t, k, v in producer.messages if t.endswith(topic_suffix)]


def as_tensor(t):
    return torch.frombuffer(bytearray(t["data"]), dtype=torch.float32).reshape(t["shape"])


class CaptureTest(unittest.TestCase):
    def watcher(self, model, layers, **kw):
        producer = RecordingProducer()
        return Watcher(model, layers, "run-1", publisher=Publisher({}, producer=producer), **kw), producer

    def test_inputs_and_output_gradients_match_autograd(self):
        torch.manual_seed(0)
        model = Mlp()
        x, y = torch.randn(8, 6), torch.randint(0, 4, (8,))
        w, prod = self.watcher(model, ["fc1", "fc2"])
        F.cross_entropy(model(x), y).backward()
        w.step(0, sample_ids=[f"e{i}" for i in range(8)])

        # reference: recompute the forward by hand and differentiate w.r.t. each layer output
        s1 = model.fc1(x)
        h1 = torch.tanh(s1)
        s2 = model.fc2(h1)
        loss = F.cross_entropy(model.out(torch.tanh(s2)), y)
        g1, g2 = torch.autograd.grad(loss, [s1, s2])
        caps = {c["layer"]: c for c in decoded(prod, "captures")}
        torch.testing.assert_close(as_tensor(caps["fc1"]["activations"]), x, **TOL)
        torch.testing.assert_close(as_tensor(caps["fc2"]["activations"]), h1.detach(), **TOL)
        # mean over 8 examples undone: captured g = 8 x dL/ds
        torch.testing.assert_close(as_tensor(caps["fc1"]["gradients"]), 8 * g1, **TOL)
        torch.testing.assert_close(as_tensor(caps["fc2"]["gradients"]), 8 * g2, **TOL)
        self.assertEqual(caps["fc1"]["grad_scale"], 8.0)
        self.assertEqual(caps["fc1"]["sample_ids"], [f"e{i}" for i in range(8)])

    def test_sum_of_g_a_outer_products_is_the_weight_gradient(self):
        torch.manual_seed(1)
        for conv in (False, True):
            with self.subTest(conv1d=conv):
                model = Mlp(conv=conv)
                x, y = torch.randn(16, 6), torch.randint(0, 4, (16,))
                w, prod = self.watcher(model, ["fc1", "fc2"])
                model.zero_grad()
                F.cross_entropy(model(x), y).backward()
                w.step(3)
                caps = {c["layer"]: c for c in decoded(prod, "captures")}
                for name in ("fc1", "fc2"):
                    a, g = as_tensor(caps[name]["activations"]), as_tensor(caps[name]["gradients"])
                    grad = getattr(model, name).weight.grad
                    if conv and name == "fc2":
                        grad = grad.t()  # Conv1D stores d_in x d_out
                    torch.testing.assert_close(g.t() @ a / caps[name]["grad_scale"], grad, **TOL)

    def test_sequence_tokens_map_to_their_examples(self):
        torch.manual_seed(2)
        lin = torch.nn.Linear(3, 2)
        model = torch.nn.Sequential(lin)
        x = torch.randn(2, 5, 3)  # batch 2, sequence 5
        w, prod = self.watcher(model, ["0"])
        target = torch.randn(2, 5, 2)
        ((model(x) - target) ** 2).mean().backward()
        w.step(0, sample_ids=["a", "b"], losses=[0.5, 0.25])
        cap = decoded(prod, "captures")[0]
        self.assertEqual(as_tensor(cap["activations"]).shape, (10, 3))
        index = torch.frombuffer(bytearray(cap["token_sample"]), dtype=torch.int32).tolist()
        self.assertEqual(index, [0] * 5 + [1] * 5)
        self.assertEqual(cap["sample_ids"], ["a", "b"])
        g, a = as_tensor(cap["gradients"]), as_tensor(cap["activations"])
        self.assertEqual(cap["grad_scale"], 10.0)  # mean over 2 x 5 token rows undone
        torch.testing.assert_close(g.t() @ a / 10.0, lin.weight.grad, **TOL)

    def test_weight_snapshots_use_out_in_layout(self):
        torch.manual_seed(3)
        model = Mlp(conv=True)
        w, prod = self.watcher(model, ["fc1", "fc2"], weights_every=2)
        for step in range(4):
            F.cross_entropy(model(torch.randn(4, 6)), torch.randint(0, 4, (4,))).backward()
            w.step(step)
        snaps = decoded(prod, "weights")
        self.assertEqual(sorted((s["layer"], s["step"]) for s in snaps), [("fc1", 0), ("fc1", 2), ("fc2", 0), ("fc2", 2)])
        fc2 = [s for s in snaps if s["layer"] == "fc2"][0]
        torch.testing.assert_close(as_tensor(fc2["weight"]), model.fc2.weight.detach().t())
        info = decoded(prod, "runs")[0]
        self.assertEqual([(l["name"], l["d_in"], l["d_out"], l["transposed"]) for l in info["layers"]],
                         [("fc1", 6, 5, False), ("fc2", 5, 5, True)])

    def test_large_weights_go_out_as_row_parts_that_reassemble(self):
        torch.manual_seed(6)
        model = torch.nn.Sequential(torch.nn.Linear(300, 1000))  # 1.2 MB of weights, records of 256 KiB
        w, prod = self.watcher(model, ["0"], weights_every=1, max_record_bytes=256 * 1024)
        F.mse_loss(model(torch.randn(3, 300)), torch.zeros(3, 1000)).backward()
        w.step(0)
        w.close()
        raw = [v for t, k, v in prod.messages if t.endswith("weights")]
        snaps = decoded(prod, "weights")
        self.assertGreater(len(snaps), 1)
        self.assertTrue(all(len(v) <= 256 * 1024 for v in raw))
        self.assertEqual([s["part"] for s in snaps], list(range(len(snaps))))
        self.assertTrue(all(s["parts"] == len(snaps) for s in snaps))
        self.assertEqual([s["row_offset"] for s in snaps],
                         [sum(s2["weight"]["shape"][0] for s2 in snaps[:i]) for i in range(len(snaps))])
        whole = torch.cat([as_tensor(s["weight"]) for s in snaps])
        torch.testing.assert_close(whole, model[0].weight.detach(), rtol=0, atol=0)
        torch.testing.assert_close(as_tensor(snaps[0]["bias"]), model[0].bias.detach(), rtol=0, atol=0)
        self.assertTrue(all(s["bias"] is None for s in snaps[1:]))

    def test_token_budget_subsamples_rows_consistently(self):
        torch.manual_seed(4)
        model = Mlp()
        w, prod = self.watcher(model, ["fc1"], tokens_per_step=5)
        x = torch.randn(20, 6)
        F.cross_entropy(model(x), torch.randint(0, 4, (20,))).backward()
        w.step(0, sample_ids=[f"e{i}" for i in range(20)])
        cap = decoded(prod, "captures")[0]
        a = as_tensor(cap["activations"])
        self.assertEqual(a.shape[0], 5)
        index = torch.frombuffer(bytearray(cap["token_sample"]), dtype=torch.int32).tolist()
        for row, i in zip(a, index):  # each kept row is the input of the example it claims
            torch.testing.assert_close(row, x[int(cap["sample_ids"][i][1:])])

    def test_dropped_records_are_not_counted_as_published(self):
        torch.manual_seed(12)
        model = Mlp()
        prod = RecordingProducer(full_after=2)  # RunInfo and one capture fit, then Kafka is "slow"
        w = Watcher(model, ["fc1", "fc2"], "drop-1", publisher=Publisher({}, policy="drop", producer=prod))
        F.cross_entropy(model(torch.randn(4, 6)), torch.randint(0, 4, (4,))).backward()
        with self.assertWarnsRegex(RuntimeWarning, "dropped 1"):
            self.assertEqual(w.step(0), 1)
        self.assertEqual((w.records, w.dropped), (2, 1))

    def test_large_steps_split_into_parts_under_the_limit(self):
        torch.manual_seed(5)
        model = Mlp()
        w, prod = self.watcher(model, ["fc1"], max_record_bytes=4 * 12 * 7)  # 7 rows of 6+5+1 floats
        x = torch.randn(30, 6)
        F.cross_entropy(model(x), torch.randint(0, 4, (30,))).backward()
        w.step(0, sample_ids=[f"e{i}" for i in range(30)])
        caps = decoded(prod, "captures")
        self.assertEqual([c["part"] for c in caps], list(range(5)))
        self.assertTrue(all(c["parts"] == 5 for c in caps))
        joined = torch.cat([as_tensor(c["activations"]) for c in caps])
        torch.testing.assert_close(joined, x)
        self.assertEqual(sum((c["sample_ids"] for c in caps), []), [f"e{i}" for i in range(30)])

    def test_probe_and_fisher_passes_leave_training_gradients_alone(self):
        torch.manual_seed(6)
        model = Mlp()
        w, prod = self.watcher(model, ["fc1"])
        F.cross_entropy(model(torch.randn(4, 6)), torch.randint(0, 4, (4,))).backward()
        before = [p.grad.clone() for p in model.parameters()]
        w.probe(model, torch.randn(3, 6), torch.randint(0, 4, (3,)), F.cross_entropy, 0, ["p0", "p1", "p2"])
        w.fisher_pass(model, torch.randn(3, 6), 0)
        for p, g in zip(model.parameters(), before):
            torch.testing.assert_close(p.grad, g)
        caps = decoded(prod, "captures")
        self.assertEqual([(c["probe"], c["fisher"]) for c in caps], [(True, "EMPIRICAL"), (False, "SAMPLED")])
        self.assertEqual(len(caps[0]["example_losses"]), 3)

    def test_probe_between_backward_and_step_keeps_the_training_capture(self):
        torch.manual_seed(9)
        model = Mlp()
        w, prod = self.watcher(model, ["fc1"])
        x = torch.randn(4, 6)
        F.cross_entropy(model(x), torch.randint(0, 4, (4,))).backward()
        w.probe(model, torch.randn(2, 6), torch.randint(0, 4, (2,)), F.cross_entropy, 0, ["p0", "p1"])
        w.step(0, sample_ids=["a", "b", "c", "d"])
        caps = decoded(prod, "captures")
        self.assertEqual([c["probe"] for c in caps], [True, False])
        torch.testing.assert_close(as_tensor(caps[1]["activations"]), x)
        with self.assertRaisesRegex(ValueError, "one sample id each"):
            w.step(1, losses=[0.1, 0.2])

    def test_fisher_pass_gradients_are_softmax_minus_a_sampled_one_hot(self):
        torch.manual_seed(10)
        model = Mlp()
        w, prod = self.watcher(model, ["out"], seed=3)
        x = torch.randn(64, 6)
        w.fisher_pass(model, x, 0)
        cap = decoded(prod, "captures")[0]
        g = as_tensor(cap["gradients"])
        probs = torch.softmax(model(x), dim=-1).detach()
        labels = g.argmin(dim=1)  # p - 1 < 0 only at the sampled label
        self.assertEqual((g < 0).sum(dim=1).tolist(), [1] * 64)
        torch.testing.assert_close(g + F.one_hot(labels, 4).float(), probs, **TOL)
        self.assertEqual((cap["fisher"], cap["grad_scale"]), ("SAMPLED", 1.0))
        self.assertTrue((labels != probs.argmax(dim=1)).any())  # sampled from p, not the model's argmax

    def test_a_layer_run_twice_per_pass_is_refused_not_mispaired(self):
        torch.manual_seed(8)
        lin = torch.nn.Linear(4, 4)
        model = torch.nn.ModuleDict({"shared": lin})
        w, prod = self.watcher(model, ["shared"])
        lin(torch.tanh(lin(torch.randn(3, 4)))).sum().backward()
        with self.assertRaisesRegex(RuntimeError, "more than once per forward pass"):
            w.step(0)
        # gradient accumulation (forward, backward, forward, backward): every micro-batch, in order
        x1, x2 = torch.randn(3, 4), torch.randn(5, 4)
        lin(x1).sum().backward()
        lin(x2).sum().backward()
        w.step(1, grad_scale=1)
        cap = decoded(prod, "captures")[-1]
        torch.testing.assert_close(as_tensor(cap["activations"]), torch.cat([x1, x2]))

    def test_unknown_layer_and_bad_ids_are_clear_errors(self):
        with self.assertRaisesRegex(KeyError, "nope"):
            self.watcher(Mlp(), ["nope"])
        with self.assertRaisesRegex(TypeError, "only nn.Linear"):
            self.watcher(torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3)), ["0"])
        with self.assertRaisesRegex(ValueError, "fisher"):
            self.watcher(Mlp(), ["fc1"], fisher="TRUE")

        class Refusing(RecordingProducer):
            def produce(self, *args, **kwargs):
                raise BufferError("Local: Queue full")
        model = Mlp()
        with self.assertRaisesRegex(PublishError, "still full"):
            Watcher(model, ["fc1"], "r", publisher=Publisher({}, producer=Refusing(), block_timeout=0.1))
        self.assertEqual(len(model.fc1._forward_pre_hooks), 0)  # no hooks left behind by a failed start
        with self.assertRaisesRegex(ValueError, "cannot be split into records"):
            self.watcher(torch.nn.Sequential(torch.nn.Linear(40000, 8)), ["0"], weights_every=1,
                         max_record_bytes=128 * 1024)  # one row of 160 KB does not fit a 128 KiB record
        with self.assertRaisesRegex(ValueError, "max_record_bytes"):
            self.watcher(Mlp(), ["fc1"], max_record_bytes=64 * 1024 * 1024)
        with self.assertRaisesRegex(ValueError, "run_id"):
            Watcher(Mlp(), ["fc1"], "../evil", publisher=Publisher({}, producer=RecordingProducer()))


if __name__ == "__main__":
    unittest.main()
