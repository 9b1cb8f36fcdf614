"""ProbeResult v2 answers against independent references: per-token loss, accuracy, tokens and the peak
statistic of a Hugging Face-style causal LM from a numpy loop over tokens; BISECT against the full
curve; declining when the answer-time budget is spent; forward replay against full forward passes."""
import math
import sys
import unittest
import warnings
from pathlib import Path

import numpy as np
import torch

from curvewatch import Publisher, Watcher
from curvewatch.batches import Measure, Stats
from curvewatch.calibration import Evaluation, Mode
from helpers import FakeConsumer, RecordingProducer
from test_candidates import candidate, encoded, keep_mass_tau, np_edit, probe_results, spectrum

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from textlm import fortunes  # noqa: E402
from textlm.model import TinyCausalLM  # noqa: E402

RUN = "run-v2"
TOK = fortunes.CharTokenizer()
PROBES = ["the quick brown fox", "jumps over", "the lazy dog, twice", "a probe"]
TRAIN = ["some training text", "more of it here", "and a last line"]


def tiny_lm(seed=0):
    torch.manual_seed(seed)
    return TinyCausalLM(TOK.vocab_size, d_model=16, n_layers=2, n_heads=2, d_mlp=32, max_len=24)


def trained_lm(steps=60):
    """A little training so that some next characters are predicted right (accuracy now > 0)."""
    model = tiny_lm()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    b = fortunes.batch(PROBES + TRAIN, TOK, 24)
    for _ in range(steps):
        model(**b).loss.backward()
        opt.step()
        opt.zero_grad()
    return model


def reference_stats(model, texts):
    """Per example (loss, tokens, accuracy, per-token losses) by a numpy loop over next-token targets."""
    b = fortunes.batch(texts, TOK, 24)
    with torch.no_grad():
        logits = model.eval()(**b).logits.double().numpy()
    labels = b["labels"].numpy()
    out = []
    for i in range(len(texts)):
        losses, hits = [], []
        for t in range(labels.shape[1] - 1):
            y = labels[i, t + 1]
            if y < 0:
                continue
            row = logits[i, t]
            lse = row.max() + np.log(np.exp(row - row.max()).sum())
            losses.append(lse - row[y])
            hits.append(row.argmax() == y)
        out.append((float(np.mean(losses)), len(losses), float(np.mean(hits)), np.array(losses)))
    return out


class Harness:
    def __init__(self, model, layer, watched=None, **options):
        options.setdefault("answer_budget", float("inf"))
        self.model, self.layer = model, layer
        self.producer, self.consumer = RecordingProducer(), FakeConsumer()
        self.w = Watcher(model, watched or [layer], RUN, publisher=Publisher({}, producer=self.producer),
                         answer_candidates=True, consumer=self.consumer, **options)
        self.w.probe(model, fortunes.batch(PROBES, TOK, 24), step=0, sample_ids=[f"p{i}" for i in range(len(PROBES))],
                     capture=False)
        self.w.step(0, sample_ids=[f"t{i}" for i in range(len(TRAIN))], inputs=fortunes.batch(TRAIN, TOK, 24))
        self.rng = np.random.default_rng(0)
        d_in, d_out = self.w.candidates.layers[layer]
        self.lam, self.ug = spectrum(d_out, self.rng)
        self.mu, self.ua = spectrum(d_in, self.rng)

    def send(self, cid, rhos, layer=None, **fields):
        """A candidate for `layer` (default: the harness's); another layer's spectra are this one's."""
        taus = [keep_mass_tau(self.lam, self.mu, r) for r in rhos]
        record = candidate(cid, layer or self.layer, self.ug, self.ua, self.lam, self.mu, rhos, taus, run=RUN)
        record.update(fields)
        self.consumer.push(RUN, encoded(record))
        return taus

    def answer(self, cid, rhos, **fields):
        taus = self.send(cid, rhos, **fields)
        self.w.answer_candidates()
        return probe_results(self.producer)[-1], taus

    def edited_model(self, tau):
        m = tiny_lm()  # a fresh copy: the watched model's forward is wrapped by the watcher
        m.load_state_dict(self.model.state_dict())
        weight = self.model.get_submodule(self.layer).weight.detach().double().numpy()
        edited = np_edit(weight, self.ug, self.ua, self.lam, self.mu, tau)
        m.get_submodule(self.layer).weight.data = torch.from_numpy(edited).float()
        return m


RHOS = (0.3, 0.6, 0.8, 0.9, 0.97, 0.99, 0.999, 0.9999)


class PerTokenAnswerTest(unittest.TestCase):
    def test_loss_tokens_accuracy_and_peak_equal_a_loop_over_tokens(self):
        h = Harness(trained_lm(), "blocks.1.mlp.fc")
        result, taus = h.answer("all", RHOS, peak_tokens=3)
        self.assertEqual((result["search"], result["chosen"], result["peak_tokens"], result["declined"]), ("ALL", -1, 3, ""))
        texts = PROBES + TRAIN
        now = reference_stats(h.model, texts)
        self.assertTrue(any(0 < acc < 1 for _, _, acc, _ in now), "per-token accuracy strictly between 0 and 1")
        edited = [reference_stats(h.edited_model(tau), texts) for tau in taus]
        self.assertEqual([e["sample_id"] for e in result["examples"]], ["p0", "p1", "p2", "p3", "t0", "t1", "t2"])
        moved = 0
        for i, e in enumerate(result["examples"]):
            loss, tokens, acc, per_token = now[i]
            self.assertEqual(e["tokens"], tokens)
            self.assertAlmostEqual(e["loss_now"], loss, places=5)
            self.assertAlmostEqual(e["accuracy_now"], acc, places=6)
            self.assertEqual(e["correct_now"], acc == 1.0)
            self.assertEqual(e["candidates"], [])  # ALL: every candidate, in order
            for k in range(len(RHOS)):
                loss_k, _, acc_k, per_token_k = edited[k][i]
                self.assertAlmostEqual(e["loss_edited"][k], loss_k, places=4)
                self.assertAlmostEqual(e["accuracy_edited"][k], acc_k, places=6)
                peak = float(np.sort(per_token_k - per_token)[::-1][:3].mean())
                self.assertAlmostEqual(e["peak_edited"][k], peak, places=4)
                moved += abs(loss_k - loss) > 1e-3
        self.assertGreater(moved, 0, "some edit moved a loss: the comparison is not vacuous")

    def test_peak_is_the_mean_over_all_tokens_when_fewer_than_k(self):
        h = Harness(trained_lm(), "blocks.0.mlp.fc")
        result, taus = h.answer("few", (0.5,), peak_tokens=1000)
        texts = PROBES + TRAIN
        now, edited = reference_stats(h.model, texts), reference_stats(h.edited_model(taus[0]), texts)
        for i, e in enumerate(result["examples"]):
            self.assertAlmostEqual(e["peak_edited"][0], float(np.mean(edited[i][3] - now[i][3])), places=4)

    def test_an_example_without_targets_is_left_out(self):
        h = Harness(trained_lm(), "blocks.1.mlp.fc")
        empty = fortunes.batch(["x"], TOK, 24)  # BOS and one character: one target
        empty["labels"][:] = -100  # ... ignored too
        h.w.step(1, sample_ids=["nothing"], inputs=empty)
        result, _ = h.answer("e", (0.5,))
        self.assertNotIn("nothing", [e["sample_id"] for e in result["examples"]])
        self.assertTrue(all(e["tokens"] >= 1 for e in result["examples"]))

    def test_a_user_per_example_loss_is_what_is_sent(self):
        def per_example_loss(model, batch):
            out = model(**batch)
            return (out.logits.float().pow(2).mean(dim=(1, 2)))  # any per-example measure
        h = Harness(tiny_lm(), "blocks.1.mlp.proj", per_example_loss=per_example_loss)
        result, _ = h.answer("custom", (0.5,))
        with torch.no_grad():
            expected = per_example_loss(h.model.eval(), fortunes.batch(PROBES, TOK, 24))
        for e, x in zip(result["examples"][:4], expected.tolist()):
            self.assertAlmostEqual(e["loss_now"], x, places=5)
            self.assertEqual((e["tokens"], e["accuracy_now"], e["accuracy_edited"]), (1, -1.0, []))


def synthetic(scores, accuracy=True):
    """Stats of one example per score (the probe score of a candidate), one token each."""
    value = torch.tensor([float(scores)], dtype=torch.float64)
    one = torch.ones(1, 1, dtype=torch.bool)
    return Stats(value if not accuracy else torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.long),
                 value if accuracy else None, torch.zeros(1, 1), one)


class BisectTest(unittest.TestCase):
    def test_bisection_finds_the_boundary_of_every_monotone_curve(self):
        for n in range(1, 20):
            for boundary in range(n + 1):  # candidates boundary..n-1 are within tolerance
                now = synthetic(1.0)
                mode = Mode(now, 0.01, 0.05)
                curve = [0.5 if k < boundary else 0.995 for k in range(n)]
                evaluation = Evaluation.__new__(Evaluation)
                evaluation.mode = mode
                seen, chosen = evaluation._bisect(n, lambda k: synthetic(curve[k]))
                self.assertEqual(chosen, boundary if boundary < n else -1, (n, boundary))
                self.assertLessEqual(len(seen), math.ceil(math.log2(n + 1)))  # 5 of the service's 19
                if boundary == n:  # none within: the mildest was evaluated and failed
                    self.assertIn(n - 1, seen)
                    self.assertFalse(mode.within(seen[n - 1]))
                if 0 < boundary < n:  # the service's re-check: the next more aggressive evaluated and failing
                    self.assertIn(boundary - 1, seen)
                    self.assertFalse(mode.within(seen[boundary - 1]))

    def test_mode_is_accuracy_only_when_accuracy_now_is_measured_and_positive(self):
        self.assertTrue(Mode(synthetic(0.3), 0.01, 0.05).accuracy)
        self.assertFalse(Mode(synthetic(0.0), 0.01, 0.05).accuracy)  # all-zero accuracy cannot drop: vacuous
        self.assertFalse(Mode(synthetic(2.5, accuracy=False), 0.01, 0.05).accuracy)
        loss_mode = Mode(synthetic(2.5, accuracy=False), 0.01, 0.05)
        self.assertTrue(loss_mode.within(synthetic(2.55, accuracy=False)))
        self.assertFalse(loss_mode.within(synthetic(2.5501, accuracy=False)))
        self.assertTrue(Mode(synthetic(0.95), 0.01, 0.05).within(synthetic(0.94)))  # exactly the tolerance qualifies

    def test_bisect_answer_equals_the_full_curve_where_it_was_evaluated(self):
        model = trained_lm()
        full = Harness(model, "blocks.1.mlp.fc")
        everything, _ = full.answer("all", RHOS)
        probes = [e for e in everything["examples"] if e["probe"]]
        tokens = np.array([e["tokens"] for e in probes])
        now = float(np.dot([e["accuracy_now"] for e in probes], tokens) / tokens.sum())
        curve = [float(np.dot([e["accuracy_edited"][k] for e in probes], tokens) / tokens.sum()) for k in range(len(RHOS))]
        self.assertGreater(now, 0)
        drops = [now - c for c in curve]
        # a tolerance between two evaluated drops, so that the boundary lies inside the grid
        order = sorted(set(round(d, 9) for d in drops))
        self.assertGreater(len(order), 1, f"the curve needs distinct points: {drops}")
        tolerance = (order[-1] + order[-2]) / 2
        self.assertGreater(tolerance, 0)
        within = [d <= tolerance + 1e-9 for d in drops]
        self.assertEqual(within, sorted(within), f"the test curve must be monotone: {drops}")
        expected = within.index(True) if any(within) else -1
        bisect = Harness(model, "blocks.1.mlp.fc")
        result, _ = bisect.answer("b", RHOS, search="BISECT", accuracy_tolerance=tolerance, train_candidates=[7])
        self.assertEqual((result["search"], result["chosen"]), ("BISECT", expected))
        probe_sets = {tuple(e["candidates"]) for e in result["examples"] if e["probe"]}
        self.assertEqual(len(probe_sets), 1, "every probe evaluated at the same candidates")
        evaluated = list(next(iter(probe_sets)))
        self.assertIn(expected, evaluated)
        self.assertIn(7, evaluated)
        if expected > 0:
            self.assertIn(expected - 1, evaluated)
        self.assertLess(len(evaluated), len(RHOS))
        for e in result["examples"]:
            if not e["probe"]:
                self.assertEqual(e["candidates"], sorted({expected, 7}))
            twin = next(x for x in everything["examples"] if x["sample_id"] == e["sample_id"])
            self.assertEqual(e["loss_now"], twin["loss_now"])
            self.assertEqual(e["loss_edited"], [twin["loss_edited"][k] for k in e["candidates"]])
            self.assertEqual(e["accuracy_edited"], [twin["accuracy_edited"][k] for k in e["candidates"]])


class BudgetTest(unittest.TestCase):
    def test_a_candidate_over_budget_is_declined_with_the_reason(self):
        h = Harness(tiny_lm(), "blocks.1.mlp.fc", answer_budget=1e-9)
        passes = h.w.candidates.passes
        first, _ = h.answer("first", (0.5, 0.9))  # nothing spent yet: started, declined after the unedited passes
        self.assertEqual((first["candidate_id"], first["examples"]), ("first", []))
        self.assertIn("the rest of this answer would take", first["declined"])
        second, _ = h.answer("second", (0.5, 0.9))  # now the budget is known to be spent: declined at once
        self.assertEqual(second["candidate_id"], "second")
        self.assertIn("more training needed", second["declined"])
        self.assertEqual(second["examples"], [])
        self.assertEqual((h.w.candidates.answered, h.w.candidates.declined), (0, 2))
        self.assertEqual(h.w.candidates.passes, passes + 2)  # the unedited passes (probes, training), no edited one

    def test_a_candidate_waits_while_the_budget_can_refill_in_time(self):
        class Budget:
            budget, ok = 0.1, False

            def allows(self, estimate, spent=0.0, share=1.0):
                return self.ok

            def wait(self, estimate, spent=0.0, share=1.0):
                return 5.0  # seconds of training until it fits: well within half the 60 s timeout
        h = Harness(tiny_lm(), "blocks.1.mlp.fc")
        h.w.candidates.overhead = Budget()
        h.send("later", (0.5,))
        self.assertEqual(h.w.answer_candidates(), 0)
        self.assertEqual(probe_results(h.producer), [])
        self.assertIn("blocks.1.mlp.fc", h.w.candidates.pending)
        h.w.candidates.overhead.ok = True
        self.assertEqual(h.w.answer_candidates(), 1)
        self.assertEqual(probe_results(h.producer)[-1]["declined"], "")

    def test_an_answer_that_turns_out_too_long_waits_for_the_budget_after_its_unedited_passes(self):
        class Budget:
            budget, limit = 0.1, 0.0

            def allows(self, estimate, spent=0.0, share=1.0):
                return estimate <= self.limit

            def wait(self, estimate, spent=0.0, share=1.0):
                return 1.0
        h = Harness(tiny_lm(), "blocks.1.mlp.fc")
        h.w.candidates.overhead = Budget()
        passes = h.w.candidates.passes
        h.send("long", (0.5, 0.9))
        self.assertEqual(h.w.answer_candidates(), 0)  # started (nothing known), postponed after the unedited passes
        self.assertEqual(h.w.candidates.passes, passes + 2)
        self.assertIn("blocks.1.mlp.fc", h.w.candidates.pending)
        self.assertEqual(h.w.answer_candidates(), 0)  # its cost is known now: it waits without starting again
        self.assertEqual(h.w.candidates.passes, passes + 2)
        h.w.candidates.overhead.limit = float("inf")
        self.assertEqual(h.w.answer_candidates(), 1)
        self.assertEqual([r["candidate_id"] for r in probe_results(h.producer)], ["long"])
        self.assertEqual((h.w.candidates.answered, h.w.candidates.declined), (1, 0))

    def test_each_layer_gets_its_share_of_the_budget(self):
        from curvewatch.hooks import Clock
        from curvewatch.overhead import Overhead
        clock = Clock()
        o = Overhead(clock, 0.1)
        o.started -= 100.0  # 100 s of training, no answer yet: 10 s of budget, 5 s per layer of two
        self.assertTrue(o.allows(4.0, spent=0.0, share=0.5))
        self.assertFalse(o.allows(4.0, spent=2.0, share=0.5))  # this layer would take 6 of its 5
        self.assertTrue(o.allows(4.0, spent=2.0, share=1.0))
        clock.seconds["answer"] = 2.0  # (wall 100 = training 98 + answers 2)
        self.assertAlmostEqual(o.wait(4.0, spent=2.0, share=0.5), 120.0 - 98.0, delta=0.1)

    def test_a_layer_not_answered_yet_takes_the_whole_budget_and_the_others_wait_for_it(self):
        class Budget:
            """Only answers that may use the whole budget (share 1) fit, while `pool`; every answer once `open`."""
            budget, pool, open = 0.1, False, False

            def allows(self, estimate, spent=0.0, share=1.0):
                return self.open or share == 1.0 and self.pool

            def wait(self, estimate, spent=0.0, share=1.0):
                return 1.0
        first, later = "blocks.1.mlp.fc", "blocks.0.mlp.fc"
        h = Harness(tiny_lm(), first, watched=[first, later])
        h.answer("answered-before", (0.5,))
        h.w.candidates.overhead = Budget()  # the unanswered layer waits for the whole budget, and holds it
        h.send("answered-layer", (0.5,))
        h.send("new-layer", (0.5,), layer=later)
        self.assertEqual(h.w.answer_candidates(), 0)
        self.assertEqual(set(h.w.candidates.pending), {first, later})
        h.w.candidates.overhead.pool = True  # the whole budget fits one answer: the unanswered layer's
        self.assertEqual(h.w.answer_candidates(), 1)
        self.assertEqual(probe_results(h.producer)[-1]["candidate_id"], "new-layer")
        self.assertEqual(set(h.w.candidates.pending), {first})  # its equal share does not fit yet
        h.w.candidates.overhead.open = True
        self.assertEqual(h.w.answer_candidates(), 1)
        self.assertEqual([r["candidate_id"] for r in probe_results(h.producer)],
                         ["answered-before", "new-layer", "answered-layer"])
        self.assertEqual(h.w.candidates.declined, 0)

    def test_overhead_reports_its_parts(self):
        h = Harness(tiny_lm(), "blocks.1.mlp.fc")
        h.answer("one", (0.5,))
        report = h.w.overhead()
        self.assertGreater(report["answer_seconds"], 0)
        self.assertGreater(report["capture_seconds"], 0)
        self.assertAlmostEqual(report["wall_seconds"], report["training_seconds"] + report["capture_seconds"]
                               + report["answer_seconds"], places=6)


class ReplayTest(unittest.TestCase):
    def test_replayed_answers_equal_full_forward_answers_bit_for_bit(self):
        for layer in ("blocks.1.mlp.fc", "blocks.1.attn.out_proj", "blocks.0.mlp.proj"):
            with self.subTest(layer=layer):
                model = trained_lm(20)
                replayed = Harness(model, layer)
                full = Harness(model, layer, replay_bytes=0)
                a, _ = replayed.answer("c", RHOS, peak_tokens=2)
                b, _ = full.answer("c", RHOS, peak_tokens=2)
                a.pop("timestamp_ms"), b.pop("timestamp_ms")
                self.assertEqual(a, b)
                status = replayed.w.candidates.replay_status()[layer]
                self.assertTrue(status["replay"], status)
                self.assertGreater(status["replayed_batches"], 0)
                self.assertEqual(full.w.candidates.replay_status(), {})

    def test_tied_weights_and_a_nondeterministic_earlier_module_turn_replay_off(self):
        model = tiny_lm()
        model.blocks[0].mlp.fc.weight = model.blocks[1].mlp.fc.weight  # tied
        h = Harness(model, "blocks.1.mlp.fc")
        h.answer("tied", (0.5,))
        self.assertIn("shared", h.w.candidates.replay_status()["blocks.1.mlp.fc"]["reason"])

        class Noisy(torch.nn.Module):
            def forward(self, x):
                return x + 1e-3 * torch.randn_like(x)
        noisy = tiny_lm()
        noisy.blocks[0].ln1 = torch.nn.Sequential(noisy.blocks[0].ln1, Noisy())
        h = Harness(noisy, "blocks.1.mlp.fc")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result, _ = h.answer("noisy", (0.5,))
        self.assertEqual(len(result["examples"]), 7)
        self.assertIn("differs", h.w.candidates.replay_status()["blocks.1.mlp.fc"]["reason"])


class LabelShiftTest(unittest.TestCase):
    def test_the_shift_is_the_one_whose_loss_is_the_models(self):
        class Tagger(torch.nn.Module):  # labels aligned with the outputs (token classification)
            def __init__(self):
                super().__init__()
                self.emb, self.head = torch.nn.Embedding(10, 8), torch.nn.Linear(8, 5)

            def forward(self, input_ids, labels=None):
                logits = self.head(self.emb(input_ids))
                loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100)
                return type("Out", (), {"logits": logits, "loss": loss})()
        torch.manual_seed(0)
        ids, labels = torch.randint(0, 10, (3, 6)), torch.randint(0, 5, (3, 6))
        labels[0, 4:] = -100
        m = Measure()
        stats = m(Tagger(), {"input_ids": ids, "labels": labels})
        self.assertEqual(m.label_shift, 0)
        self.assertEqual(stats.tokens.tolist(), [4, 6, 6])
        lm = Measure()
        lm(tiny_lm(), fortunes.batch(PROBES, TOK, 24))
        self.assertEqual(lm.label_shift, 1)

        class Smoothed(Tagger):  # a loss the client cannot reproduce: it says so
            def forward(self, input_ids, labels=None):
                out = super().forward(input_ids, labels)
                out.loss = out.loss * 1.5
                return out
        with self.assertRaisesRegex(ValueError, "per_example_loss"):
            Measure()(Smoothed(), {"input_ids": ids, "labels": labels})


if __name__ == "__main__":
    unittest.main()
