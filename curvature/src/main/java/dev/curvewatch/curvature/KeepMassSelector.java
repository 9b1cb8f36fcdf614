package dev.curvewatch.curvature;

/**
 * Finds the keep-mass set S_ρ: the smallest set of top-Π pairs (Π_ij = λ_i μ_j) whose Π sum
 * reaches ρ·(Σλ)(Σμ), the crossing pair included.
 *
 * <p><b>Tie rule.</b> Let v be the Π value of the pair at which the descending sorted cumulative
 * sum first reaches the target. Every pair with Π ≥ v is kept, so all pairs tied with the
 * crossing value are in. Equivalently v is the largest Π value t with Σ_{Π≥t} Π ≥ target;
 * this does not depend on how a sort orders tied pairs.
 *
 * <p>ρ = 1 keeps every pair, zero-curvature ones included, so it is exactly "no edit" rather
 * than depending on how the last few products round.
 *
 * <p><b>Search.</b> v is found by bisection over the bit patterns of non-negative doubles (at
 * most 64 steps, exact rather than approximate) where each step counts, per row, the columns with
 * λ_i μ_j ≥ τ by binary search over μ and takes the row mass from prefix sums of μ:
 * O(d_out log d_in) per step, no pair is ever materialised.
 */
public final class KeepMassSelector {
    private KeepMassSelector() {
    }

    /**
     * @param lambda eigenvalues of G (rows), descending, ≥ 0
     * @param mu eigenvalues of A (columns), descending, ≥ 0
     * @param rho fraction of mass to keep, in (0, 1]
     */
    public static KeepMassMask select(double[] lambda, double[] mu, double rho) {
        if (!(rho > 0 && rho <= 1)) {
            throw new IllegalArgumentException("rho must be in (0, 1], got " + rho);
        }
        checkSpectrum("lambda", lambda);
        checkSpectrum("mu", mu);
        double[] prefixMu = new double[mu.length + 1];
        for (int j = 0; j < mu.length; j++) {
            prefixMu[j + 1] = prefixMu[j] + mu[j];
        }
        double sumLambda = 0;
        for (double l : lambda) {
            sumLambda += l;
        }
        double total = sumLambda * prefixMu[mu.length];
        double target = rho * total;
        int[] counts = new int[lambda.length];

        // Invariant: mass(>= bits lo) >= target, mass(>= bits hi) < target (hi past the top pair).
        long lo = 0;
        long hi = Double.doubleToLongBits(lambda[0] * mu[0]) + 1;
        while (rho < 1 && hi - lo > 1) {
            long mid = lo + (hi - lo) / 2;
            if (massAtLeast(lambda, mu, prefixMu, Double.longBitsToDouble(mid), counts) >= target) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        double tau = Double.longBitsToDouble(lo);
        double kept = massAtLeast(lambda, mu, prefixMu, tau, counts);
        long pairs = 0;
        for (int c : counts) {
            pairs += c;
        }
        return new KeepMassMask(rho, tau, counts, mu.length, pairs, kept, total);
    }

    /** Σ of Π over pairs with Π ≥ tau; fills the per-row counts. */
    private static double massAtLeast(double[] lambda, double[] mu, double[] prefixMu, double tau, int[] counts) {
        double mass = 0;
        int bound = mu.length;
        for (int i = 0; i < lambda.length; i++) {
            // rows are sorted, so row i keeps no more columns than row i-1
            int c = columnsAtLeast(lambda[i], mu, tau, bound);
            counts[i] = c;
            bound = c;
            mass += lambda[i] * prefixMu[c];
        }
        return mass;
    }

    /** Count of leading j &lt; bound with l·μ_j ≥ tau; the product is compared as computed, so ties are exact. */
    private static int columnsAtLeast(double l, double[] mu, double tau, int bound) {
        int lo = 0;
        int hi = bound;
        while (lo < hi) {
            int mid = (lo + hi) >>> 1;
            if (l * mu[mid] >= tau) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        return lo;
    }

    private static void checkSpectrum(String name, double[] s) {
        if (s.length == 0) {
            throw new IllegalArgumentException(name + " is empty");
        }
        for (int k = 0; k < s.length; k++) {
            if (!(s[k] >= 0) || Double.isInfinite(s[k]) || (k > 0 && s[k] > s[k - 1])) {
                throw new IllegalArgumentException(name + " must be finite, >= 0 and descending; index " + k
                        + " is " + s[k]);
            }
        }
    }
}
