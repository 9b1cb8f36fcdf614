"""Answering edit candidates: W'_k and the ProbeResult losses against an independent numpy/scipy
reference, restoration of the model, refusals, the newest-per-layer rule and the bounded examples."""
import math
import unittest
import warnings

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F

from curvewatch import Publisher, RecentExamples, Watcher, _avro
from curvewatch.calibration import FLOAT32_MAX
from curvewatch.candidates import edit
from curvewatch.follower import follow
from curvewatch.examples import MAX_RECENT_EXAMPLES
from helpers import Conv1D, FakeConsumer, Mlp, RecordingProducer

RUN = "run-c"


# -- an independent reference: scipy eigh, keep-mass threshold by sort + cumsum, numpy forward ------------
def spectrum(n, rng):
    """Eigen-decomposition of a random SPD factor, eigenvalues descending."""
    x = rng.standard_normal((n, 3 * n)) * np.linspace(2.0, 0.1, n)[:, None]
    values, vectors = scipy.linalg.eigh(x @ x.T / (3 * n))
    order = np.argsort(values)[::-1]
    return np.clip(values[order], 0, None), vectors[:, order]


def keep_mass_tau(lam, mu, rho):
    """The Π value of the pair at which the descending cumulative sum first reaches ρ of the total."""
    pi = np.sort(np.outer(lam, mu).ravel())[::-1]
    cs = np.cumsum(pi)
    return float(pi[min(int(np.searchsorted(cs, rho * cs[-1])), pi.size - 1)])


def np_edit(w, ug, ua, lam, mu, tau):
    return ug @ ((ug.T @ w @ ua) * (np.outer(lam, mu) >= tau)) @ ua.T


def np_params(model):
    """(W as d_out x d_in, b) per layer of helpers.Mlp, float64."""
    out = {}
    for name in ("fc1", "fc2", "out"):
        m = getattr(model, name)
        w = m.weight.detach().double().numpy()
        out[name] = (w.T if isinstance(m, Conv1D) else w, m.bias.detach().double().numpy())
    return out


def np_mlp(params, x):
    h = x
    for name in ("fc1", "fc2"):
        w, b = params[name]
        h = np.tanh(h @ w.T + b)
    w, b = params["out"]
    return h @ w.T + b


def np_cross_entropy(logits, y):
    m = logits.max(axis=1, keepdims=True)
    lse = (m + np.log(np.exp(logits - m).sum(axis=1, keepdims=True)))[:, 0]
    return lse - logits[np.arange(len(y)), y]


def tensor(values, dtype="FLOAT64"):
    arr = np.ascontiguousarray(values, dtype="<f8" if dtype == "FLOAT64" else "<f4")
    return {"dtype": dtype, "shape": list(arr.shape), "data": arr.tobytes()}


def candidate(cid, layer, ug, ua, lam, mu, rhos, taus, run=RUN, dtype="FLOAT64", step=3):
    return {"candidate_id": cid, "run_id": run, "layer": layer, "step": step, "factor_version": 1,
            "basis_g": tensor(ug, dtype), "basis_a": tensor(ua, dtype), "eigenvalues_g": tensor(lam, dtype),
            "eigenvalues_a": tensor(mu, dtype), "rhos": list(rhos), "thresholds": list(taus), "created_ms": 0,
            "part": 0, "parts": 1, "g_row_offset": 0, "a_row_offset": 0}


def split(record, g_rows, a_rows):
    """The record as EditCandidate v2 row parts: part k holds g_rows[k] rows of U_G and a_rows[k] of U_A."""
    def rows(t, lo, n):
        width = 4 if t["dtype"] == "FLOAT32" else 8
        side = t["shape"][1]
        return {"dtype": t["dtype"], "shape": [n, side], "data": t["data"][lo * side * width:(lo + n) * side * width]}
    parts, g, a = [], 0, 0
    for k, (ng, na) in enumerate(zip(g_rows, a_rows)):
        part = dict(record, part=k, parts=len(g_rows), g_row_offset=g, a_row_offset=a,
                    basis_g=rows(record["basis_g"], g, ng), basis_a=rows(record["basis_a"], a, na))
        if k > 0:
            empty = {"dtype": record["eigenvalues_g"]["dtype"], "shape": [0], "data": b""}
            part.update(eigenvalues_g=empty, eigenvalues_a=empty, rhos=[], thresholds=[])
        parts.append(part)
        g, a = g + ng, a + na
    return parts


def encoded(record):
    return _avro.codec("EditCandidate").encode(record)


def probe_results(producer):
    codec = _avro.codec("ProbeResult")
    return [codec.decode(v) for t, k, v in producer.messages if t.endswith("probe-results")]


class Harness:
    """A watched helpers.Mlp answering candidates from a FakeConsumer into a RecordingProducer."""

    def __init__(self, seed=0, conv=True, **options):
        options.setdefault("answer_budget", float("inf"))  # budget_test.py holds answers to a budget
        torch.manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.model = Mlp(d_in=6, hidden=5, classes=4, conv=conv)
        self.producer, self.consumer = RecordingProducer(), FakeConsumer()
        self.w = Watcher(self.model, ["fc1", "fc2"], RUN, publisher=Publisher({}, producer=self.producer),
                         answer_candidates=True, consumer=self.consumer, **options)
        self.probe_x, self.probe_y = torch.randn(7, 6), torch.randint(0, 4, (7,))
        self.probe_ids = [f"p{i}" for i in range(7)]

    def train(self, steps=2, batch=6, ids=None, probe=True):
        opt = torch.optim.SGD(self.model.parameters(), lr=0.1)
        for s in range(steps):
            x, y = torch.randn(batch, 6), torch.randint(0, 4, (batch,))
            sample_ids = ids[s] if ids else [f"t{s}-{i}" for i in range(batch)]
            F.cross_entropy(self.model(x), y).backward()
            self.w.step(s, sample_ids=sample_ids, inputs=x, targets=y)
            opt.step()
            opt.zero_grad()
        if probe:
            self.w.probe(self.model, self.probe_x, self.probe_y, F.cross_entropy, steps, self.probe_ids)

    def candidate_for(self, layer, rhos=(0.5, 0.9, 0.99), dtype="FLOAT64", cid=None, **kw):
        d_in, d_out = self.w.candidates.layers[layer]
        lam, ug = spectrum(d_out, self.rng)
        mu, ua = spectrum(d_in, self.rng)
        if dtype == "FLOAT32":  # the reference sees what the client sees: the rounded values
            lam, ug, mu, ua = (v.astype(np.float32).astype(np.float64) for v in (lam, ug, mu, ua))
        taus = [keep_mass_tau(lam, mu, r) for r in rhos]
        record = candidate(cid or f"c-{layer}", layer, ug, ua, lam, mu, rhos, taus, dtype=dtype, **kw)
        return record, (ug, ua, lam, mu, taus)

    def send(self, record, key=RUN):
        self.consumer.push(key, encoded(record))

    def examples(self):
        """(ids, probe flags, inputs, targets) in the order a ProbeResult lists them."""
        recent = self.w.candidates.recent
        ids = self.probe_ids + recent.ids()
        xs = [self.probe_x.double().numpy()] + [x.double().numpy()[None] for _, x, _ in recent.items()]
        ys = [self.probe_y.numpy()] + [y.numpy()[None] for _, _, y in recent.items()]
        return ids, [True] * len(self.probe_ids) + [False] * len(recent), np.concatenate(xs), np.concatenate(ys)


class EditMathTest(unittest.TestCase):
    def test_edit_matches_the_numpy_scipy_reference_and_all_ones_gives_w_back(self):
        rng = np.random.default_rng(1)
        lam, ug = spectrum(9, rng)
        mu, ua = spectrum(13, rng)
        w = rng.standard_normal((9, 13))
        t = lambda a: torch.from_numpy(a)  # noqa: E731
        for rho in (0.3, 0.6, 0.9, 0.999):
            tau = keep_mass_tau(lam, mu, rho)
            keep = torch.outer(t(lam), t(mu)) >= tau
            self.assertLess(int(keep.sum()), 9 * 13)
            got = edit(t(w), t(ug), t(ua), keep).numpy()
            np.testing.assert_allclose(got, np_edit(w, ug, ua, lam, mu, tau), rtol=0, atol=1e-12)
        everything = torch.ones(9, 13, dtype=torch.bool)  # the orthogonality test: M = 1 gives back W
        np.testing.assert_allclose(edit(t(w), t(ug), t(ua), everything).numpy(), w, rtol=0, atol=1e-12)


class AnsweringTest(unittest.TestCase):
    def check_against_numpy(self, h, result, record, reference, edited_layer):
        ug, ua, lam, mu, taus = reference
        ids, probes, x, y = h.examples()
        self.assertEqual([e["sample_id"] for e in result["examples"]], ids)
        self.assertEqual([e["probe"] for e in result["examples"]], probes)
        self.assertEqual((result["run_id"], result["candidate_id"], result["layer"], result["rhos"]),
                         (RUN, record["candidate_id"], edited_layer, record["rhos"]))
        params = np_params(h.model)
        logits_now = np_mlp(params, x)
        now = np_cross_entropy(logits_now, y)
        np.testing.assert_allclose([e["loss_now"] for e in result["examples"]], now, rtol=2e-5, atol=1e-6)
        self.assertEqual([e["correct_now"] for e in result["examples"]], list(logits_now.argmax(1) == y))
        changed = 0
        for k, tau in enumerate(taus):
            edited = dict(params)
            w_edit = np_edit(params[edited_layer][0], ug, ua, lam, mu, tau)
            edited[edited_layer] = (w_edit.astype(np.float32).astype(np.float64), params[edited_layer][1])
            logits = np_mlp(edited, x)
            expected = np_cross_entropy(logits, y)
            got = [e["loss_edited"][k] for e in result["examples"]]
            np.testing.assert_allclose(got, expected, rtol=2e-5, atol=1e-6, err_msg=f"rho {record['rhos'][k]}")
            self.assertEqual([e["correct_edited"][k] for e in result["examples"]], list(logits.argmax(1) == y))
            changed += int(np.abs(expected - now).max() > 1e-3)
        self.assertGreater(changed, 0, "no candidate edit changed any loss: the check would be vacuous")

    def test_probe_result_equals_a_numpy_forward_with_the_reference_edit(self):
        for layer, dtype in (("fc1", "FLOAT64"), ("fc2", "FLOAT64"), ("fc2", "FLOAT32")):
            with self.subTest(layer=layer, conv1d=layer == "fc2", dtype=dtype):
                h = Harness(seed=2)
                h.train()
                record, reference = h.candidate_for(layer, dtype=dtype)
                h.send(record)
                self.assertEqual(h.w.answer_candidates(), 1)
                [result] = probe_results(h.producer)
                self.assertEqual(result["step"], 1)  # the last step passed to step()
                self.check_against_numpy(h, result, record, reference, layer)
                self.assertEqual(h.w.candidates.counts()["answered"], 1)

    def test_a_candidate_in_row_parts_is_answered_as_the_whole_one(self):
        h = Harness(seed=2)
        h.train()
        record, reference = h.candidate_for("fc2")  # the Conv1D layer
        g, a = record["basis_g"]["shape"][0], record["basis_a"]["shape"][0]
        for part in split(record, [g - 2, 2, 0], [0, a - 3, 3]):
            h.send(part)
        self.assertEqual(h.w.answer_candidates(), 1)
        [result] = probe_results(h.producer)
        self.check_against_numpy(h, result, record, reference, "fc2")
        self.assertEqual(h.w.candidates.counts()["parts_received"], 3)
        self.assertEqual(h.w.candidates.refused, 0)

    def test_v4_leading_columns_and_named_bases_are_answered_as_the_whole_candidate(self):
        h = Harness(seed=2)
        h.train()
        record, reference = h.candidate_for("fc2", rhos=(0.5, 0.9))
        ug, ua, lam, mu, taus = reference
        k_g, k_a = int((lam * mu[0] >= min(taus)).sum()), int((lam[0] * mu >= min(taus)).sum())
        self.assertTrue(k_g < len(lam) or k_a < len(mu), "the masks leave columns out")
        lead = dict(record, candidate_id="c-lead", basis_g=tensor(ug[:, :k_g]), basis_a=tensor(ua[:, :k_a]))
        named = dict(record, candidate_id="c-named", basis_g=tensor(np.zeros((0, k_g))), basis_g_of="c-lead",
                     basis_g_order=list(range(k_g)), basis_a=tensor(np.zeros((0, k_a))), basis_a_of="c-lead",
                     basis_a_order=list(range(k_a)))
        for sent in (lead, named):
            with self.subTest(candidate=sent["candidate_id"]):
                h.producer.messages.clear()
                h.send(sent)
                self.assertEqual(h.w.answer_candidates(), 1)
                [result] = probe_results(h.producer)
                self.check_against_numpy(h, result, sent, reference, "fc2")
        cases = [(dict(named, candidate_id="c-stranger", basis_g_of="c-fc2"), "does not hold"),
                 (dict(lead, candidate_id="c-short", basis_g=tensor(ug[:, :k_g - 1]), basis_a=tensor(ua[:, :k_a - 1])),
                  "beyond the")]
        for sent, reason in cases:
            with self.subTest(reason=reason):
                before = h.w.candidates.refused
                h.send(sent)
                with self.assertWarnsRegex(RuntimeWarning, reason):
                    h.w.answer_candidates()
                self.assertEqual(h.w.candidates.refused, before + 1)

    def test_lost_foreign_and_misplaced_parts_are_refused_and_the_next_candidate_is_answered(self):
        h = Harness(seed=4)
        h.train()
        record, _ = h.candidate_for("fc2")
        g, a = record["basis_g"]["shape"][0], record["basis_a"]["shape"][0]
        parts = split(record, [2, g - 2, 0], [1, a - 2, 1])
        cases = [
            ([parts[0], parts[2]], "expecting part 1 of 3"),
            ([parts[1]], "expecting a part 0"),
            ([parts[0], dict(parts[1], g_row_offset=3)], "starts at row 3, expected row 2"),
            ([parts[0], dict(parts[1], rhos=[0.5], thresholds=[0.1])], "only part 0"),
            ([parts[0], dict(parts[1], candidate_id="another")], "of candidate 'c-fc2'"),
            ([dict(parts[0], part=3)], r"need 0 <= part < parts"),
            (split(record, [2, g - 2, 0], [1, a - 3, 1]), f"{g} rows of U_G and {a - 1} of U_A"),  # a row short
        ]
        for sequence, reason in cases:
            with self.subTest(reason=reason):
                before = h.w.candidates.refused
                for part in sequence:
                    h.send(part)
                with self.assertWarnsRegex(RuntimeWarning, reason):
                    h.w.answer_candidates()
                self.assertEqual(h.w.candidates.refused, before + 1)
                self.assertEqual(probe_results(h.producer), [])
        for part in parts:
            h.send(part)
        self.assertEqual(h.w.answer_candidates(), 1)

    def test_rho_one_gives_loss_now_exactly(self):
        h = Harness(seed=3)
        h.train()
        record, (_, _, lam, mu, _) = h.candidate_for("fc2", rhos=(1.0, 0.5))
        record["thresholds"] = [0.0, keep_mass_tau(lam, mu, 0.5)]
        h.send(record)
        h.w.answer_candidates()
        [result] = probe_results(h.producer)
        for e in result["examples"]:
            self.assertEqual(e["loss_edited"][0], e["loss_now"])
            self.assertEqual(e["correct_edited"][0], e["correct_now"])
        self.assertTrue(any(e["loss_edited"][1] != e["loss_now"] for e in result["examples"]))

    def test_answered_inside_step_without_waiting_and_the_model_is_left_bit_exact(self):
        h = Harness(seed=4)
        h.train()
        h.model.train()
        h.model.fc1.eval()  # a submodule's own mode must survive, not be reset by model.train()
        x, y = torch.randn(6, 6), torch.randint(0, 4, (6,))
        F.cross_entropy(h.model(x), y).backward()
        grads = [p.grad.clone() for p in h.model.parameters()]
        params = [(p, p.data_ptr(), p.detach().clone()) for p in h.model.parameters()]
        record, _ = h.candidate_for("fc2")
        h.send(record)
        h.w.step(9, sample_ids=[f"n{i}" for i in range(6)], inputs=x, targets=y)
        [result] = probe_results(h.producer)
        self.assertEqual(result["step"], 9)
        self.assertIn("n5", [e["sample_id"] for e in result["examples"]])  # this step's examples count too
        self.assertEqual(set(h.consumer.timeouts), {0})  # polling never waits for Kafka
        for p, ptr, before in params:
            self.assertEqual(p.data_ptr(), ptr)
            self.assertEqual(p.detach().numpy().tobytes(), before.numpy().tobytes())
        for p, g in zip(h.model.parameters(), grads):
            self.assertTrue(torch.equal(p.grad, g))
        self.assertEqual([m.training for m in (h.model, h.model.fc1, h.model.fc2, h.model.out)],
                         [True, False, True, True])

    def test_weights_and_modes_restored_when_the_loss_raises_mid_answer(self):
        h = Harness(seed=5)
        calls = {"n": 0}

        def flaky(out, y, reduction="mean"):
            calls["n"] += 1
            if calls["n"] == 4:  # after the unedited pass, inside an edited one
                raise RuntimeError("boom")
            return F.cross_entropy(out, y, reduction=reduction)
        h.train(probe=False)
        h.w.probe(h.model, h.probe_x, h.probe_y, flaky, 2, h.probe_ids)
        h.model.train()
        before = [(p.data_ptr(), p.detach().numpy().tobytes()) for p in h.model.parameters()]
        record, _ = h.candidate_for("fc1")
        h.send(record)
        with self.assertWarnsRegex(RuntimeWarning, "could not answer .*RuntimeError: boom"):
            self.assertEqual(h.w.answer_candidates(), 0)
        self.assertEqual([(p.data_ptr(), p.detach().numpy().tobytes()) for p in h.model.parameters()], before)
        self.assertTrue(all(m.training for m in h.model.modules()))
        self.assertEqual(probe_results(h.producer), [])
        self.assertEqual((h.w.candidates.failed, h.w.candidates.answered), (1, 0))

    def test_malformed_candidates_are_refused_and_training_goes_on(self):
        h = Harness(seed=6)
        h.train()
        good, _ = h.candidate_for("fc1")

        def variant(**changes):
            r = dict(good, candidate_id=f"bad-{len(cases)}")
            r.update(changes)
            return r
        d_in, d_out = 6, 5
        ug = np.frombuffer(good["basis_g"]["data"], "<f8").reshape(d_out, d_out)
        lam = np.frombuffer(good["eigenvalues_g"]["data"], "<f8")
        nan_lam = lam.copy()
        nan_lam[2] = np.nan
        cases = []
        cases += [(encoded(variant(basis_g=tensor(np.eye(4)))), "basis_g: shape")]
        cases += [(encoded(variant(eigenvalues_g=tensor(nan_lam))), "NaN")]
        cases += [(encoded(variant(layer="fc9")), "unknown layer")]
        cases += [(encoded(variant(layer="out")), "unknown layer")]  # a layer of the model, but not watched
        cases += [(encoded(variant(basis_g=tensor(ug * 1.01))), "not orthonormal")]
        cases += [(encoded(variant(basis_g=tensor(np.random.default_rng(0).standard_normal((5, 5))))), "not orthonormal")]
        cases += [(encoded(variant(thresholds=[0.1])), "need the same number")]
        cases += [(encoded(variant(rhos=[0.0, 0.9, 0.99])), r"rho 0.0 must be in \(0, 1\]")]
        cases += [(encoded(variant(thresholds=[-1.0, 0.0, 0.0])), "threshold -1.0 >= 0")]
        cases += [(encoded(variant(thresholds=[t * 1.01 for t in good["thresholds"]])), "differs from select")]
        cases += [(encoded(variant(eigenvalues_g=tensor(lam[::-1]))), "descending")]
        cases += [(encoded(variant(eigenvalues_a=dict(good["eigenvalues_a"], data=b"\0" * 8))), "bytes for shape")]
        cases += [(encoded(variant(basis_a=dict(good["basis_a"], dtype="FLOAT16"))), "dtype FLOAT16")]
        cases += [(encoded(variant(run_id="other")), "under this run's key")]
        cases += [(b"\xc3\x01garbage", "undecodable")]
        cases += [(_avro.codec("RunInfo").header + b"\0", "undecodable")]
        for value, reason in cases:
            with self.subTest(reason=reason):
                h.consumer.push(RUN, value)
                before = h.w.candidates.refused
                with self.assertWarnsRegex(RuntimeWarning, reason):
                    h.w.answer_candidates()
                self.assertEqual(h.w.candidates.refused, before + 1)
        h.send(dict(good, candidate_id="elsewhere"), key="another-run")  # not ours: not even looked at
        h.send(good)
        h.train(steps=1)  # training goes on, and the good candidate is answered inside step()
        self.assertEqual([r["candidate_id"] for r in probe_results(h.producer)], [good["candidate_id"]])
        self.assertEqual(h.w.candidates.counts(), {"received": len(cases) + 1, "answered": 1, "declined": 0, "skipped": 0,
                                                   "refused": len(cases), "expired": 0, "failed": 0,
                                                   "nonfinite_losses": 0, "parts_received": 0})

    def test_newest_pending_candidate_of_a_layer_is_answered_older_ones_skipped(self):
        h = Harness(seed=7)
        h.train()
        for i in range(3):
            h.send(h.candidate_for("fc1", cid=f"fc1-{i}")[0])
        h.send(h.candidate_for("fc2", cid="fc2-0")[0])
        h.train(steps=1, probe=False)  # answers_per_step=1: one layer now
        self.assertEqual(len(probe_results(h.producer)), 1)
        h.train(steps=1, probe=False)
        self.assertEqual(sorted(r["candidate_id"] for r in probe_results(h.producer)), ["fc1-2", "fc2-0"])
        h.send(h.candidate_for("fc1", cid="fc1-2")[0])  # sent again: answered once only
        self.assertEqual(h.w.answer_candidates(), 0)
        self.assertEqual((h.w.candidates.answered, h.w.candidates.skipped), (2, 3))

    def test_candidates_wait_for_probe_and_training_examples_then_expire(self):
        h = Harness(seed=8)
        h.train(probe=False)
        h.send(h.candidate_for("fc1")[0])
        self.assertEqual(h.w.answer_candidates(), 0)  # no probe batch yet: kept
        self.assertIn("fc1", h.w.candidates.pending)
        h.w.probe(h.model, h.probe_x, h.probe_y, F.cross_entropy, 2, h.probe_ids)
        self.assertEqual(h.w.answer_candidates(), 1)
        h2 = Harness(seed=8)
        h2.w.probe(h2.model, h2.probe_x, h2.probe_y, F.cross_entropy, 0, h2.probe_ids)
        h2.send(h2.candidate_for("fc1")[0])
        self.assertEqual(h2.w.answer_candidates(), 0)  # probes but no training example: the service needs both
        h2.train(steps=1, probe=False)
        self.assertEqual(len(probe_results(h2.producer)), 1)
        h3 = Harness(seed=8, candidate_timeout=0.0)
        h3.train(probe=False)
        h3.send(h3.candidate_for("fc1")[0])
        with self.assertWarnsRegex(RuntimeWarning, "expired unanswered .*no probe batch"):
            h3.w.answer_candidates()
        self.assertEqual((h3.w.candidates.expired, h3.w.candidates.pending), (1, {}))

    def test_recent_training_examples_are_bounded_by_id_and_copied(self):
        h = Harness(seed=9, recent_examples=4)
        ids = [["a", "b", "c"], ["d", "b", "e"]]  # "b" seen twice: its newer copy counts, once
        h.train(steps=2, batch=3, ids=ids)
        self.assertEqual(h.w.candidates.recent.ids(), ["c", "d", "b", "e"])
        h.send(h.candidate_for("fc1")[0])
        h.w.answer_candidates()
        [result] = probe_results(h.producer)
        self.assertEqual([e["sample_id"] for e in result["examples"] if not e["probe"]], ["c", "d", "b", "e"])
        self.assertEqual(sum(e["probe"] for e in result["examples"]), 7)
        recent = RecentExamples(2)
        x, y = torch.zeros(2, 3), torch.tensor([1, 2])
        recent.add(["u", "v"], x, y)
        x.fill_(5.0)  # the caller reuses its batch buffer
        self.assertTrue(all(float(x.abs().sum()) == 0 for _, x, _ in recent.items()))
        for too_many in (0, MAX_RECENT_EXAMPLES + 1):
            with self.assertRaisesRegex(ValueError, "recent_examples"):
                RecentExamples(too_many)
        with self.assertRaisesRegex(ValueError, "sample ids"):
            recent.add(["only-one"], x, y)

    def test_sequence_outputs_mean_over_tokens_ignored_positions_left_out(self):
        torch.manual_seed(10)
        emb, head = torch.nn.Embedding(6, 4), torch.nn.Linear(4, 6)
        model = torch.nn.Sequential(emb, head)
        prod, cons = RecordingProducer(), FakeConsumer()
        w = Watcher(model, ["1"], RUN, publisher=Publisher({}, producer=prod), answer_candidates=True, consumer=cons,
                    answer_budget=float("inf"))

        def lm_loss(out, y, reduction="mean"):
            return F.cross_entropy(out.transpose(1, 2), y, reduction=reduction, ignore_index=-100)
        x = torch.randint(0, 6, (3, 5))
        y = torch.randint(0, 6, (3, 5))
        y[0, 3:] = -100
        w.probe(model, x, y, lm_loss, 0, ["s0", "s1", "s2"])
        w.step(0, sample_ids=["t1"], inputs=x[1:2], targets=y[1:2])  # the service needs a training example too
        rng = np.random.default_rng(0)
        lam, ug = spectrum(6, rng)
        mu, ua = spectrum(4, rng)
        cons.push(RUN, encoded(candidate("lm", "1", ug, ua, lam, mu, [1.0], [0.0])))
        w.answer_candidates()
        [result] = probe_results(prod)
        with torch.no_grad():
            logits = model(x)
            token_loss = F.cross_entropy(logits.transpose(1, 2), y, reduction="none", ignore_index=-100)
        valid = y >= 0
        self.assertEqual([e["sample_id"] for e in result["examples"]], ["s0", "s1", "s2", "t1"])
        for i, e in zip([0, 1, 2, 1], result["examples"]):
            expected = float(token_loss[i][valid[i]].mean())
            self.assertAlmostEqual(e["loss_now"], expected, places=5)
            self.assertEqual(e["correct_now"], bool((logits[i].argmax(-1) == y[i])[valid[i]].all()))
        self.assertNotAlmostEqual(result["examples"][0]["loss_now"], float(token_loss[0].mean()), places=3)

    def test_no_correct_flags_without_class_targets_and_nonfinite_losses_are_bounded(self):
        torch.manual_seed(11)
        model = torch.nn.Sequential(torch.nn.Linear(3, 2))
        prod, cons = RecordingProducer(), FakeConsumer()
        w = Watcher(model, ["0"], RUN, publisher=Publisher({}, producer=prod), answer_candidates=True, consumer=cons,
                    answer_budget=float("inf"))
        rng = np.random.default_rng(1)
        lam, ug = spectrum(2, rng)
        mu, ua = spectrum(3, rng)
        w.probe(model, torch.randn(4, 3), torch.randn(4, 2), F.mse_loss, 0, ["r0", "r1", "r2", "r3"])
        w.step(0, sample_ids=["t0"], inputs=torch.randn(1, 3), targets=torch.randn(1, 2))
        cons.push(RUN, encoded(candidate("mse", "0", ug, ua, lam, mu, [0.5], [keep_mass_tau(lam, mu, 0.5)])))
        w.answer_candidates()
        [result] = probe_results(prod)
        self.assertTrue(all(e["correct_edited"] == [] and e["correct_now"] is False for e in result["examples"]))

        def exploding(out, y, reduction="mean"):
            loss = F.mse_loss(out, y, reduction=reduction)
            return loss * float("inf") if not torch.equal(model[0].weight.data, original) else loss
        original = model[0].weight.data
        w.probe(model, torch.randn(4, 3), torch.randn(4, 2), exploding, 1, ["r0", "r1", "r2", "r3"])
        cons.push(RUN, encoded(candidate("mse-2", "0", ug, ua, lam, mu, [0.5], [keep_mass_tau(lam, mu, 0.5)])))
        w.answer_candidates()
        last = probe_results(prod)[-1]
        self.assertEqual([e["loss_edited"][0] for e in last["examples"]], [FLOAT32_MAX] * 5)
        self.assertTrue(all(math.isfinite(e["loss_now"]) for e in last["examples"]))
        self.assertEqual(w.candidates.nonfinite_losses, 5)


class SetupTest(unittest.TestCase):
    def test_answering_needs_kafka_settings_and_a_reachable_topic(self):
        with self.assertRaisesRegex(ValueError, "bootstrap"):
            Watcher(Mlp(), ["fc1"], RUN, publisher=Publisher({}, producer=RecordingProducer()), answer_candidates=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with self.assertRaisesRegex(RuntimeError, "cannot follow curvewatch.edit-candidates"):
                follow({"bootstrap.servers": "127.0.0.1:1", "group.id": "t", "log_level": 0},
                       "curvewatch.edit-candidates", timeout=0.5)

    def test_closing_the_watcher_closes_the_consumer(self):
        cons = FakeConsumer()
        w = Watcher(Mlp(), ["fc1"], RUN, publisher=Publisher({}, producer=RecordingProducer()),
                    answer_candidates=True, consumer=cons,
                    answer_budget=float("inf"))
        w.close()
        self.assertTrue(cons.closed)


if __name__ == "__main__":
    unittest.main()
