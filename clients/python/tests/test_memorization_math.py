"""The studies' K-FAC and scores (examples/memorization) against independent references:
numpy/scipy for factors, eigenbases, keep-mass thresholds and edits; brute force for AUROC,
peak statistics and the exceedance alarm's null distribution."""
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

import numpy as np  # noqa: E402
import scipy.linalg  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from memorization import kfac, scores  # noqa: E402


def spd(n, rng, decay=0.7):
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return q @ np.diag(decay ** np.arange(n) + 1e-3) @ q.T


class KfacTest(unittest.TestCase):
    def setUp(self):
        self.rng = np.random.default_rng(3)

    def test_basis_threshold_and_edit_match_scipy_and_sort_cumsum(self):
        a, g = spd(7, self.rng), spd(5, self.rng, 0.5)
        w = torch.tensor(self.rng.standard_normal((5, 7)))
        basis = kfac.Basis.of(torch.tensor(a), torch.tensor(g))
        mu, ua = scipy.linalg.eigh(a)
        lam, ug = scipy.linalg.eigh(g)
        mu, ua, lam, ug = mu[::-1], ua[:, ::-1], lam[::-1], ug[:, ::-1]
        np.testing.assert_allclose(basis.mu.numpy(), mu, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(basis.lam.numpy(), lam, rtol=1e-10, atol=1e-12)
        # eigenvectors up to sign: compare the projectors
        np.testing.assert_allclose(np.abs((basis.u_a.numpy() * ua).sum(0)), 1, atol=1e-8)
        pi = np.outer(lam, mu)
        for rho in (0.3, 0.6, 0.9, 0.999):
            flat = np.sort(pi.ravel())[::-1]
            k = np.argmax(np.cumsum(flat) >= rho * flat.sum())  # first index reaching rho: included
            mask = pi >= flat[k]
            self.assertEqual(int(basis.mask(rho).sum()), int(mask.sum()), rho)
            self.assertGreaterEqual(pi[mask].sum(), rho * pi.sum() * (1 - 1e-12))
            ref = ug @ ((ug.T @ w.numpy() @ ua) * mask) @ ua.T
            np.testing.assert_allclose(kfac.edited_weight(w, basis, rho).numpy(), ref, atol=1e-12)
        # keeping every pair gives W back
        np.testing.assert_allclose(kfac.edited_weight(w, basis, 1.0).numpy(), w.numpy(), atol=1e-12)

    def test_sampled_fisher_pass_captures_per_token_a_and_g(self):
        torch.manual_seed(0)
        lin = nn.Linear(4, 3)
        model = nn.Sequential(lin, nn.Tanh(), nn.Linear(3, 6))
        x = torch.randn(2, 5, 4)
        keep = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
        cap = kfac.Capture(model, ["0"])
        factors = {"0": kfac.Factors(4, 3)}

        def logits_fn(m):
            return m(x).reshape(-1, 6), keep.reshape(-1)
        gen = torch.Generator().manual_seed(5)
        kfac.sampled_fisher_pass(model, cap, factors, logits_fn, keep, gen)
        self.assertTrue(all(p.grad is None for p in model.parameters()))
        # reference: the same sampled labels (same generator state), per-token gradients by autograd
        gen = torch.Generator().manual_seed(5)
        logits = model(x).reshape(-1, 6)
        y = torch.multinomial(torch.softmax(logits.detach(), -1), 1, generator=gen).squeeze(1)
        a_rows, g_rows = [], []
        for t in torch.nonzero(keep.reshape(-1)).flatten().tolist():
            s = lin(x.reshape(-1, 4)[t])
            s.retain_grad()
            out = model[2](torch.tanh(s))
            nn.functional.cross_entropy(out[None], y[t:t + 1]).backward()
            a_rows.append(x.reshape(-1, 4)[t].double())
            g_rows.append(s.grad.double())
        a, g = torch.stack(a_rows), torch.stack(g_rows)
        fa, fg = factors["0"].get()
        torch.testing.assert_close(fa, a.T @ a / len(a_rows), atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(fg, g.T @ g / len(g_rows), atol=1e-6, rtol=1e-5)
        self.assertEqual(factors["0"].count, 8)

    def test_ema_weights_the_newest_pass(self):
        f = kfac.Factors(2, 2, decay=0.5)
        one, two = torch.eye(2, dtype=torch.float64), 2 * torch.eye(2, dtype=torch.float64)
        f.add(one, one)
        f.add(two, two)
        a, _ = f.get("ema")
        torch.testing.assert_close(a, (0.5 * 0.5 + 0.5 * 2) * torch.eye(2, dtype=torch.float64))
        a, _ = f.get("cumulative")
        torch.testing.assert_close(a, (1 + 4) / 4 * torch.eye(2, dtype=torch.float64))


class ScoresTest(unittest.TestCase):
    def test_auroc_equals_pair_counting(self):
        rng = np.random.default_rng(0)
        pos, neg = rng.integers(0, 5, 30).astype(float), rng.integers(0, 6, 40).astype(float)
        pairs = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
        self.assertAlmostEqual(scores.auroc(pos, neg), pairs, places=12)

    def test_peak_is_the_mean_of_the_k_largest_valid_increases(self):
        now = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.5, 0.5, 0.0, 0.0]])
        edited = torch.tensor([[1.5, 4.0, 1.1, 9.0], [0.6, 1.5, 7.0, 7.0]])
        valid = torch.tensor([[True, True, True, False], [True, True, False, False]])
        got = scores.peak(now, edited, valid, 2)
        self.assertAlmostEqual(float(got[0]), (3.0 + 0.5) / 2)
        self.assertAlmostEqual(float(got[1]), (1.0 + 0.1) / 2)
        self.assertAlmostEqual(float(scores.peak(now, edited, valid, 5)[1]), 1.1 / 2)
        self.assertAlmostEqual(float(scores.mean_increase(now, edited, valid)[0]), (0.5 + 3.0 + 0.1) / 3)

    def test_exceedance_p_value_is_calibrated_under_exchangeability(self):
        rng = np.random.default_rng(1)
        p_values = []
        for _ in range(2000):
            probe, train = rng.standard_normal(64), rng.standard_normal(200)
            p_values.append(scores.exceedance(train, probe, 0.95)["p_value"])
        p_values = np.array(p_values)
        # a valid (discrete, conservative) p-value: P(p <= alpha) <= alpha, and not far below it
        for alpha in (0.01, 0.05, 0.2):
            self.assertLessEqual(np.mean(p_values <= alpha), alpha * 1.25 + 0.005, alpha)
            self.assertGreaterEqual(np.mean(p_values <= alpha), alpha * 0.5, alpha)
        # 40 of 500 training scores far above the rest are detected against 256 probes at the 0.99 quantile
        probe = rng.standard_normal(256)
        train = np.concatenate([rng.standard_normal(460), rng.standard_normal(40) + 6])
        r = scores.exceedance(train, probe, 0.99)
        self.assertEqual(r["j"], 3)
        self.assertGreaterEqual(r["count"], 40)
        self.assertLess(r["p_value"], 1e-3)


if __name__ == "__main__":
    unittest.main()


class ExperimentReportTest(unittest.TestCase):
    def test_alert_timing_counts_the_alerted_layers_refreshes_from_the_injection(self):
        from memorization.alarm import alert_timing
        refreshes = [{"step": s, "layers": {"a": {}, "b": ({} if s % 2 else None)}} for s in (60, 119, 121, 181, 240, 301)]
        # layer a's refreshes from step 120: 121, 181, 240 (the 3rd), then 301
        self.assertTrue(alert_timing(refreshes, 120, [{"step": 240, "layer": "a"}])["within"])
        self.assertFalse(alert_timing(refreshes, 120, [{"step": 301, "layer": "a"}])["within"])
        # layer b is refreshed at odd steps only: 121, 181, 301, so 301 is its 3rd
        self.assertTrue(alert_timing(refreshes, 120, [{"step": 301, "layer": "b"}])["within"])
        early = alert_timing(refreshes, 120, [{"step": 60, "layer": "a"}, {"step": 181, "layer": "a"}])
        self.assertEqual(([60], 181, True), (early["before_injection"], early["first"], early["within"]))
        self.assertEqual((None, False), (alert_timing(refreshes, 120, [])["first"], alert_timing(refreshes, 120, [])["within"]))

    def test_report_json_is_standard_json(self):
        import json
        from memorization.report import finite
        out = finite({"budget": float("inf"), "xs": [np.float32(1.5), np.int64(3), float("nan")], "a": np.array([1.0, np.inf])})
        self.assertEqual({"budget": None, "xs": [1.5, 3, None], "a": [1.0, None]}, json.loads(json.dumps(out, allow_nan=False)))


class StudyCalibrationTest(unittest.TestCase):
    """The studies' shared calibration pieces against brute force over the grid, on toy costs: a
    layer's edit at ρ costs w_layer·(1 − ρ), a joint edit the sum (decreasing towards the mild end)."""
    W = {"a": 0.02, "b": 0.05}

    @staticmethod
    def smallest_within(cost, budget):
        from memorization.calibrate import FINE_GRID
        return next((k for k, rho in enumerate(FINE_GRID) if cost(rho) <= budget + 1e-12), -1)

    def test_joint_calibration_measures_each_edit_once_and_matches_brute_force(self):
        from memorization.calibrate import FINE_GRID, calibrate_joint
        asked = []

        def cost(rhos):
            asked.append(tuple(sorted(rhos.items())))
            return sum(self.W[l] * (1 - r) for l, r in rhos.items())
        cal = calibrate_joint(["a", "b"], cost, FINE_GRID, 0.004, rounds=3)
        self.assertEqual(len(asked), len(set(asked)), "every distinct edit measured once")
        first = cal["rounds"][0]["rhos"]
        for layer in ("a", "b"):
            k = self.smallest_within(lambda r: self.W[layer] * (1 - r), 0.002)
            self.assertEqual(FINE_GRID[k], first[layer], layer)
        self.assertLessEqual(cal["cost"], 0.004 + 1e-12)
        self.assertAlmostEqual(cal["cost"], sum(self.W[l] * (1 - r) for l, r in cal["rhos"].items()), places=12)

    def test_layer_alarms_edit_each_layer_alone_and_count_the_marked_examples_over_every_probe(self):
        from memorization.alarm import layer_alarms
        from memorization.calibrate import FINE_GRID
        built = []
        marked = np.array([True, True, False, False, False])
        rng = np.random.default_rng(0)
        probes = rng.uniform(0, 1, 40)

        def edited(rhos):
            built.append(tuple(rhos.items()))
            return dict(rhos)
        weights_cost = {"a": 0.02, "b": 1e6}  # b: no ρ of the grid keeps the probes within tolerance
        alarms = layer_alarms(["a", "b"], edited, FINE_GRID, 0.005,
                              lambda w: sum(weights_cost[l] * (1 - r) for l, r in w.items()),
                              lambda w: (np.array([5.0, 4.0, 0.5, 0.2, 0.1]), probes), marked, "marked_over")
        self.assertIsNone(alarms["b"])
        a = alarms["a"]
        self.assertEqual(FINE_GRID[self.smallest_within(lambda r: 0.02 * (1 - r), 0.005)], a["rho"])
        self.assertEqual((2, 2, 1.0), (a["count"], a["marked_over"], a["auroc"]))
        self.assertEqual(len(built), len(set(built)), "each layer's edit at a ρ built once")

    def test_a_series_calibration_records_the_measures_change_and_bisects_on_its_cost(self):
        from memorization import series
        from memorization.calibrate import FINE_GRID
        basis = kfac.Basis.of(torch.eye(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64))
        # an accuracy that drops by 0.3·(1 − ρ): the most aggressive ρ with a drop <= 0.01
        entry = series.calibration(lambda r: -0.3 * (1 - r), -1.0, 0.01, 1e-9, basis)
        k = self.smallest_within(lambda r: 0.3 * (1 - r), 0.01)
        self.assertEqual((k, FINE_GRID[k]), (entry["chosen"], entry["rho"]))
        self.assertIn(str(k), entry["trace"])
        self.assertTrue(all(v == -0.3 * (1 - FINE_GRID[int(i)]) for i, v in entry["trace"].items()), entry["trace"])
        none = series.calibration(lambda r: 1.0, 1.0, 0.01, 0.0, basis)
        self.assertEqual((-1, 1.0), (none["chosen"], none["rho"]))
        over = series.exceedances(np.array([3.0, 2.0, 0.1, 0.2]), np.array([0.5, 0.4, 0.3]),
                                  np.array([True, False, False, False]), "canaries_over")
        self.assertEqual((2, 1), (over["q1.0"]["count"], over["q1.0"]["canaries_over"]))


class LiveAlertsTest(unittest.TestCase):
    def test_a_resolved_outliers_alert_is_read_off_the_alarm_series(self):
        from memorization import live
        refreshes = [{"step": 18, "layers": {"a": {"surprise": 0.6}}}, {"step": 102, "layers": {"a": {"surprise": 5.1}, "b": None}},
                     {"step": 146, "layers": {"a": {"surprise": 1.3}}}]
        listed = [{"step": 146, "rule": "memorization-outliers", "layer": "a", "status": "RESOLVED"},
                  {"step": 90, "rule": "gap-jump", "layer": "b", "status": "RESOLVED"}]
        self.assertEqual([(90, "gap-jump", "b"), (102, "memorization-outliers", "a")],
                         [(a["step"], a["rule"], a["layer"]) for a in live.firings(listed, refreshes)])
        self.assertEqual([], live.firings([], refreshes[:1]))

    def test_the_alarm_threshold_is_the_experiments_rule(self):
        from memorization.alarm import ALARM_THRESHOLD
        rules = Path(__file__).resolve().parents[1] / "examples" / "memorization" / "pipeline" / "alert-rules.properties"
        line = [x for x in rules.read_text().splitlines() if x.startswith("alert.memorization-outliers.threshold=")]
        self.assertEqual([ALARM_THRESHOLD], [float(x.split("=")[1]) for x in line])
