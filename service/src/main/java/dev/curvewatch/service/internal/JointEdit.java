package dev.curvewatch.service.internal;

import dev.curvewatch.curvature.RhoCalibration;
import dev.curvewatch.curvature.RhoCalibrator;

import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;

/**
 * The rho of each layer of an edit of several layers at once, from the layers' probe costs alone
 * (issue 12). Each layer's calibrated rho spends the whole tolerance on that layer, so editing N
 * layers at their calibrated rho costs the probes up to N tolerances. Here the layers share one
 * tolerance: costs are taken as additive, and every layer gets the same largest share s of it
 * such that the layers' costs at their rho for s sum to at most one tolerance. A layer's rho for
 * s follows {@link RhoCalibrator}'s rule on its evaluated candidates: the most aggressive one
 * whose milder evaluated candidates all cost at most s. A layer with no such candidate is not
 * edited (rho 1). Costs come from the trainer's probes, never from training examples.
 *
 * <p>Additivity is an assumption; the issue-12 measurements on a causal LM found a joint edit of
 * four MLP matrices cheaper on the probes than the sum of its parts (0.039 against a budget of
 * 0.049 nats). An equal share, not a per-layer optimum, because the probes say what an edit costs,
 * not what it removes.
 */
final class JointEdit {
    /**
     * A layer's probe costs at its latest valid calibration: the evaluated candidates (most
     * aggressive first) and the worsening of the token-weighted probe score under each (accuracy
     * drop or loss rise, by the calibration's mode) as a share of that calibration's tolerance.
     */
    record Curve(double[] rhos, double[] shares) {
        Curve {
            if (rhos.length != shares.length || rhos.length == 0) {
                throw new IllegalArgumentException(rhos.length + " rhos, " + shares.length + " shares");
            }
            rhos = rhos.clone();
            shares = shares.clone();
        }

        /** From a calibration's trace: worsening against the baseline, divided by the tolerance. */
        static Curve of(List<RhoCalibration.Evaluation> trace, double baseline, double tolerance, boolean higherIsBetter) {
            double[] rhos = new double[trace.size()];
            double[] shares = new double[trace.size()];
            for (int j = 0; j < rhos.length; j++) {
                RhoCalibration.Evaluation e = trace.get(j);
                double worse = higherIsBetter ? baseline - e.score() : e.score() - baseline;
                rhos[j] = e.rho();
                shares[j] = Double.isNaN(worse) ? Double.POSITIVE_INFINITY
                        : tolerance > 0 ? worse / tolerance : worse <= 0 ? 0 : Double.POSITIVE_INFINITY;
            }
            return new Curve(rhos, shares);
        }

        /** Position of the most aggressive candidate whose milder candidates all cost at most s; -1 if none. */
        int at(double s) {
            int best = -1;
            for (int j = rhos.length - 1; j >= 0 && shares[j] <= s + RhoCalibrator.EPSILON; j--) {
                best = j;
            }
            return best;
        }

        double cost(int j) {
            return j < 0 ? 0 : Math.max(0, shares[j]);
        }

        @Override
        public boolean equals(Object o) {
            return o instanceof Curve c && Arrays.equals(rhos, c.rhos) && Arrays.equals(shares, c.shares);
        }

        @Override
        public int hashCode() {
            return 31 * Arrays.hashCode(rhos) + Arrays.hashCode(shares);
        }

        @Override
        public String toString() {
            return "Curve" + Arrays.toString(rhos) + " -> " + Arrays.toString(shares);
        }
    }

    /** Per layer (in the given order) its rho, 1.0 = not edited; the predicted joint cost as a share of the tolerance. */
    record Choice(Map<String, Double> rhos, double share, double cost) {
    }

    private JointEdit() {
    }

    static Choice choose(Map<String, Curve> curves) {
        TreeSet<Double> levels = new TreeSet<>();
        for (Curve c : curves.values()) {
            double tail = Double.NEGATIVE_INFINITY;
            for (int j = c.shares.length - 1; j >= 0; j--) {
                tail = Math.max(tail, c.shares[j]);
                if (tail <= 1 + RhoCalibrator.EPSILON) {
                    levels.add(Math.max(0, tail));
                }
            }
        }
        for (double s : levels.descendingSet()) {
            double total = 0;
            for (Curve c : curves.values()) {
                total += c.cost(c.at(s));
            }
            if (total <= 1 + RhoCalibrator.EPSILON) {
                return choice(curves, s, total);
            }
        }
        return choice(curves, -1, 0);
    }

    private static Choice choice(Map<String, Curve> curves, double s, double total) {
        Map<String, Double> rhos = new LinkedHashMap<>();
        curves.forEach((layer, c) -> {
            int j = s < 0 ? -1 : c.at(s);
            rhos.put(layer, j < 0 ? 1.0 : c.rhos[j]);
        });
        return new Choice(rhos, Math.max(s, 0), total);
    }
}
