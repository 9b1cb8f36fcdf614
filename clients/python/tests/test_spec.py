"""The shared golden vectors of docs/SPEC-SHARED-RULES.md, read from spec/ at the repository root.

The Java suites read the same files (trainer CandidateSpecTest, schemas SnapshotUriSpecTest and
LimitsSpecTest); both implementations must reach the same verdict on every vector.
"""
import json
import math
import re
import unittest
from pathlib import Path

import numpy as np

from curvewatch import limits
from curvewatch.candidates import CandidateError, keep_mass_tau, keep_mass_taus, parse_candidate
from curvewatch.snapshots import SnapshotError, parse_uri

SPEC = Path(__file__).resolve().parents[3] / "spec"


def number(v):
    return float(v) if isinstance(v, str) else v  # NaN / Infinity / -Infinity are strings in the files


def tensor(t):
    """As the avro decoder hands it over: little-endian bytes of the dtype (4-byte floats for FLOAT32 and INT32)."""
    wide = t["dtype"] in ("FLOAT64", "INT64")
    data = np.asarray([number(v) for v in t["values"]], dtype="<f8" if wide else "<f4").tobytes()
    return {"dtype": t["dtype"], "shape": list(t["shape"]), "data": data}


def record(c):
    r = dict(c)
    for name in ("basis_g", "basis_a", "eigenvalues_g", "eigenvalues_a"):
        r[name] = tensor(c[name])
    r["rhos"] = [number(v) for v in c["rhos"]]
    r["thresholds"] = [number(v) for v in c["thresholds"]]
    r["accuracy_tolerance"] = number(c["accuracy_tolerance"])
    r["loss_tolerance"] = number(c["loss_tolerance"])
    return r


class CandidateSpecTest(unittest.TestCase):
    def setUp(self):
        self.doc = json.loads((SPEC / "candidates.json").read_text())
        self.layers = {name: (d["d_in"], d["d_out"]) for name, d in self.doc["layers"].items()}

    def verdict(self, c):
        try:
            parse_candidate(record(c), self.layers, run_id=self.doc["run_id"])
            return "ACCEPT"
        except CandidateError as e:
            return e.reason

    def test_every_golden_candidate_gets_the_verdict_the_spec_gives(self):
        for v in self.doc["vectors"]:
            with self.subTest(v["name"]):
                self.assertEqual(self.verdict(v["candidate"]), v["expect"])

    def test_keep_mass_tau_is_the_largest_product_whose_upper_mass_reaches_rho(self):
        # independent reference: sort + cumulative sum over every product (no ties at the crossings here)
        rng = np.random.default_rng(4)
        lam, mu = np.sort(rng.random(37))[::-1], np.sort(rng.random(23))[::-1]
        pi = np.sort(np.outer(lam, mu).ravel())[::-1]
        cs = np.cumsum(pi)
        for rho in (0.05, 0.5, 0.9, 0.999):
            with self.subTest(rho=rho):
                self.assertEqual(keep_mass_tau(lam, mu, rho), float(pi[int(np.searchsorted(cs, rho * cs[-1]))]))
        self.assertEqual(keep_mass_tau(lam, mu, 1.0), 0.0)

    def test_the_sorted_product_search_gives_the_bit_bisection_s_thresholds(self):
        # the two ways keep_mass_taus finds τ (sorted products for small layers, bisection over the bits
        # of doubles above SORTED_PRODUCTS_MAX) must agree to the bit: ties, zero eigenvalues, ρ near 0 and 1
        rng = np.random.default_rng(7)
        rhos = [1e-9, 0.01, 0.3, 0.6, 0.9, 0.99, 0.999999, 1.0] + list(1 - np.logspace(np.log10(0.4), -5, 19))
        cases = [(np.sort(rng.random(50))[::-1], np.sort(rng.random(20))[::-1]),
                 (np.sort(rng.integers(0, 4, 40).astype(float))[::-1], np.sort(rng.integers(1, 3, 30).astype(float))[::-1]),
                 (np.array([1.0, 1.0, 1.0]), np.array([2.0, 2.0])),
                 (np.sort(rng.random(128) ** 6)[::-1], np.sort(rng.random(33) ** 3)[::-1])]
        for i, (lam, mu) in enumerate(cases):
            with self.subTest(case=i):
                fast = keep_mass_taus(lam, mu, rhos)
                self.assertEqual(fast, keep_mass_taus(lam, mu, rhos, sorted_max=0))
                self.assertEqual(fast[-20], 0.0)  # ρ = 1
                self.assertTrue(all(a >= b for a, b in zip(fast[:7], fast[1:8])), fast)  # more mass, lower τ


class SnapshotUriSpecTest(unittest.TestCase):
    def test_every_golden_uri_parses_as_the_spec_says(self):
        doc = json.loads((SPEC / "snapshot-uris.json").read_text())
        for v in doc["vectors"]:
            with self.subTest(v["uri"]):
                if v["expect"] == "INVALID":
                    with self.assertRaises(SnapshotError):
                        parse_uri(v["uri"])
                else:
                    self.assertEqual(parse_uri(v["uri"]), (v["expect"]["run_id"], v["expect"]["snapshot_id"]))


class LimitsSpecTest(unittest.TestCase):
    def test_the_clients_limits_are_the_specs(self):
        spec = json.loads((SPEC / "limits.json").read_text())
        self.assertEqual(limits.DEFAULT_TOPIC_MAX_MESSAGE_BYTES, spec["default_topic_max_message_bytes"])
        self.assertEqual(limits.TENSOR_TOPIC_MAX_MESSAGE_BYTES, spec["tensor_topic_max_message_bytes"])
        self.assertEqual(limits.RECORD_OVERHEAD_BYTES, spec["record_overhead_bytes"])
        self.assertEqual(limits.ID_PATTERN.pattern, spec["id_pattern"])
        self.assertEqual(limits.MAX_CANDIDATE_ID_CHARS, spec["max_candidate_id_chars"])
        self.assertEqual(limits.MAX_RHOS, spec["max_rhos"])
        self.assertEqual(limits.MAX_TRAINING_EXAMPLES, spec["max_training_examples"])
        self.assertTrue(math.isclose(limits.ORTHONORMAL_TOLERANCE, spec["orthonormal_tolerance"], rel_tol=0))
        self.assertEqual(limits.TAU_RELATIVE_TOLERANCE, spec["tau_relative_tolerance"])

    def test_no_module_keeps_its_own_copy_of_a_limit(self):
        package = Path(limits.__file__).parent
        copies = re.compile(r"^\s*[A-Z_]+\s*=\s*(1024 \* 1024|16 \* 1024 \* 1024|4096)\b", re.M)
        for path in package.glob("*.py"):
            if path.name != "limits.py":
                with self.subTest(path.name):
                    self.assertIsNone(copies.search(path.read_text()), "a limit belongs in limits.py")


if __name__ == "__main__":
    unittest.main()
