package dev.curvewatch.curvature;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * The staircase search must equal the sort-and-cumsum reference exactly (row counts compared
 * as integers), ties included: both the numpy reference (golden) and a plain-Java one here.
 */
class KeepMassSelectorTest {

    /** Sort all pairs, cumsum, keep every pair with Π ≥ the crossing pair's Π (all at ρ = 1); per-row counts. */
    static int[] reference(double[] lambda, double[] mu, double rho) {
        int p = lambda.length;
        int q = mu.length;
        double[] pi = new double[p * q];
        for (int i = 0; i < p; i++) {
            for (int j = 0; j < q; j++) {
                pi[i * q + j] = lambda[i] * mu[j];
            }
        }
        double[] sorted = pi.clone();
        Arrays.sort(sorted);
        double sl = 0;
        double sm = 0;
        for (double l : lambda) {
            sl += l;
        }
        for (double m : mu) {
            sm += m;
        }
        double target = rho * sl * sm;
        double cum = 0;
        double crossing = sorted[0];
        for (int k = sorted.length - 1; k >= 0 && rho < 1; k--) {
            cum += sorted[k];
            if (cum >= target) {
                crossing = sorted[k];
                break;
            }
        }
        int[] rows = new int[p];
        for (int i = 0; i < p; i++) {
            for (int j = 0; j < q; j++) {
                if (pi[i * q + j] >= crossing) {
                    rows[i]++;
                }
            }
        }
        return rows;
    }

    private static int[] ints(long[] v) {
        return Arrays.stream(v).mapToInt(Math::toIntExact).toArray();
    }

    @Test
    void closedFormTieRuleKeepsEveryPairTiedWithTheCrossing() {
        // Π = [[4,2,2],[2,1,1]], total 12. ρ = 0.5 -> target 6: sorted 4,2,2,2,... reaches 6 at
        // the first 2, and all three pairs with Π = 2 are kept (mass 10, 4 pairs).
        KeepMassMask m = KeepMassSelector.select(new double[] {2, 1}, new double[] {2, 1, 1}, 0.5);
        assertArrayEquals(new int[] {3, 1}, m.rowCounts());
        assertEquals(4, m.keptPairs());
        assertEquals(10, m.keptMass(), 0);
        assertEquals(12, m.totalMass(), 0);
        assertEquals(2, m.tau(), 0);
        assertTrue(m.contains(1, 0));
        assertTrue(!m.contains(1, 1));
        assertArrayEquals(new byte[] {1, 1, 1, 1, 0, 0}, m.toDense());
        // ρ just above 4/12 still crosses at the first 2; ρ = 4/12 exactly stops at the top pair
        assertEquals(1, KeepMassSelector.select(new double[] {2, 1}, new double[] {2, 1, 1}, 4.0 / 12).keptPairs());
        assertEquals(12, KeepMassSelector.select(new double[] {2, 1}, new double[] {2, 1, 1}, 1.0).keptMass(), 0);
    }

    @Test
    void matchesNumpyReferenceOnHeavyTailedAndTiedSpectra() {
        double[] rhos = Golden.doubles("mask.rhos");
        for (int k = 0; k < rhos.length; k++) {
            KeepMassMask m = KeepMassSelector.select(Golden.doubles("mask.lambda"), Golden.doubles("mask.mu"), rhos[k]);
            assertArrayEquals(ints(Golden.longs("mask.rows." + k)), m.rowCounts(), "heavy-tailed, rho=" + rhos[k]);
            KeepMassMask t = KeepMassSelector.select(Golden.doubles("mask.tie_lambda"), Golden.doubles("mask.tie_mu"),
                    rhos[k]);
            assertArrayEquals(ints(Golden.longs("mask.tie_rows." + k)), t.rowCounts(), "ties, rho=" + rhos[k]);
        }
    }

    @Test
    void matchesJavaReferenceOnRandomSpectraWithTies() {
        Random r = new Random(11);
        for (int trial = 0; trial < 300; trial++) {
            int p = 1 + r.nextInt(40);
            int q = 1 + r.nextInt(40);
            double[] lambda = spectrum(r, p, trial % 3 == 0);
            double[] mu = spectrum(r, q, trial % 2 == 0);
            double rho = trial % 7 == 0 ? 1.0 : 1 - Math.pow(10, -5 * r.nextDouble());
            KeepMassMask m = KeepMassSelector.select(lambda, mu, rho);
            assertArrayEquals(reference(lambda, mu, rho), m.rowCounts(), "trial " + trial);
            assertTrue(m.keptMass() >= rho * m.totalMass() * (1 - 1e-12), "mass reached, trial " + trial);
        }
    }

    /** Pareto-tailed, sorted descending; with ties, values are powers of two so products tie exactly. */
    private static double[] spectrum(Random r, int n, boolean ties) {
        double[] v = new double[n];
        for (int i = 0; i < n; i++) {
            v[i] = ties ? Math.scalb(1.0, -r.nextInt(6)) : Math.pow(1 - r.nextDouble(), -1 / 1.3) - 1 + 1e-6;
        }
        if (n > 2 && r.nextBoolean()) {
            v[0] = 0;
        }
        Arrays.sort(v);
        for (int i = 0; i < n / 2; i++) {
            double t = v[i];
            v[i] = v[n - 1 - i];
            v[n - 1 - i] = t;
        }
        return v;
    }

    /**
     * The OLMo MLP size, checked against closed forms: the mask is every pair with λ_i μ_j ≥ τ
     * (counted per row by bisection on μ), its mass reaches ρ of (Σλ)(Σμ), and the pairs strictly
     * above τ alone do not. Its speed (target < 1 s) is measured by bench's SelectionBenchmark.
     */
    @Test
    void selectsAtTheOlmoMlpSizeByClosedForms() {
        Random r = new Random(3);
        double[] lambda = spectrum(r, 11008, false);
        double[] mu = spectrum(r, 4096, false);
        double rho = 0.6;
        KeepMassMask m = KeepMassSelector.select(lambda, mu, rho);
        double[] muPrefix = new double[mu.length + 1];
        for (int j = 0; j < mu.length; j++) {
            muPrefix[j + 1] = muPrefix[j] + mu[j];
        }
        double total = Arrays.stream(lambda).sum() * muPrefix[mu.length];
        assertEquals(total, m.totalMass(), 1e-9 * total);
        double tau = m.tau();
        long pairs = 0;
        double kept = 0;
        double above = 0;
        for (int i = 0; i < lambda.length; i++) {
            // relative 1e-12 either side of τ: the selector may round λ_i μ_j differently at the crossing
            int atLeast = countAtLeast(mu, tau * (1 - 1e-12) / lambda[i]);
            int strictlyAbove = countAtLeast(mu, tau * (1 + 1e-12) / lambda[i]);
            int got = m.rowCount(i);
            assertTrue(got >= strictlyAbove && got <= atLeast, "row " + i + ": " + got + " not in [" + strictlyAbove + ", " + atLeast + "]");
            pairs += got;
            kept += lambda[i] * muPrefix[got];
            above += lambda[i] * muPrefix[strictlyAbove];
        }
        assertEquals(pairs, m.keptPairs());
        assertEquals(kept, m.keptMass(), 1e-9 * total);
        assertTrue(m.keptMass() >= rho * m.totalMass() * (1 - 1e-12), "kept " + m.keptMass() + " of " + m.totalMass());
        assertTrue(above < rho * total, "the pairs above τ alone must not reach ρ: " + above + " of " + total);
    }

    /** Number of leading entries of a descending array that are ≥ x. */
    private static int countAtLeast(double[] descending, double x) {
        int lo = 0;
        int hi = descending.length;
        while (lo < hi) {
            int mid = (lo + hi) >>> 1;
            if (descending[mid] >= x) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        return lo;
    }

    @Test
    void rejectsBadInput() {
        assertThrows(IllegalArgumentException.class, () -> KeepMassSelector.select(new double[] {1}, new double[] {1}, 0));
        assertThrows(IllegalArgumentException.class, () -> KeepMassSelector.select(new double[] {1}, new double[] {1}, 1.1));
        assertThrows(IllegalArgumentException.class,
                () -> KeepMassSelector.select(new double[] {1, 2}, new double[] {1}, 0.5), "ascending");
        assertThrows(IllegalArgumentException.class,
                () -> KeepMassSelector.select(new double[] {Double.NaN}, new double[] {1}, 0.5));
        assertThrows(IllegalArgumentException.class,
                () -> KeepMassSelector.select(new double[] {1, -1}, new double[] {1}, 0.5));
    }
}
