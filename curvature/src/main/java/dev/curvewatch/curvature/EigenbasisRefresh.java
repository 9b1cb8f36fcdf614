package dev.curvewatch.curvature;

import dev.curvewatch.curvature.internal.RotatedFactor;
import dev.curvewatch.curvature.spi.SymmetricEigensolver;
import java.util.Arrays;
import java.util.Comparator;
import java.util.Optional;
import java.util.stream.IntStream;

/**
 * Drift-gated refresh of a factor's eigenbasis (DESIGN §3, warm start). The new factor F is
 * seen in the previous basis Q (M = QᵀFQ, fp64; {@code RotatedFactor}) and the basis drift
 * ‖M − diag M‖_F / ‖F‖_F decides:
 * <ul>
 *   <li>below {@code skipTolerance}: {@link Mode#SKIPPED}, the previous vectors are kept and the
 *       Rayleigh quotients diag M are the new eigenvalues;</li>
 *   <li>below {@code warmTolerance}: {@link Mode#WARM}, one first-order (Jacobi-type) rotation of
 *       the previous basis from the same M, made orthogonal by a Cayley transform, with
 *       second-order eigenvalues (no eigendecomposition; see {@code RotatedFactor});</li>
 *   <li>otherwise, and on the first refresh: {@link Mode#FULL}, a fresh eigendecomposition.</li>
 * </ul>
 * Both gates compare the same drift measure; a warm step whose numbers are not finite falls back
 * to a full decomposition. Accuracy against a full eigh is a function of the drift (curvature
 * README, "Warm refresh").
 */
public final class EigenbasisRefresh {
    private final SymmetricEigensolver solver;
    private final double skipTolerance;
    private final double warmTolerance;
    private final Precision precision;

    /** Skip or decompose only (no warm band). */
    public EigenbasisRefresh(SymmetricEigensolver solver, double skipTolerance, Precision precision) {
        this(solver, skipTolerance, skipTolerance, precision);
    }

    /**
     * @param skipTolerance below this drift the previous vectors are kept
     * @param warmTolerance below this drift (and not below the skip one) the basis is rotated, not decomposed
     * @param precision     of a full decomposition
     */
    public EigenbasisRefresh(SymmetricEigensolver solver, double skipTolerance, double warmTolerance, Precision precision) {
        if (!(skipTolerance >= 0) || !(warmTolerance >= skipTolerance)) {
            throw new IllegalArgumentException("tolerances must satisfy 0 <= skip <= warm, got skip " + skipTolerance
                    + " and warm " + warmTolerance);
        }
        this.solver = solver;
        this.skipTolerance = skipTolerance;
        this.warmTolerance = warmTolerance;
        this.precision = precision;
    }

    /** What a refresh did. */
    public enum Mode { FULL, WARM, SKIPPED }

    /**
     * Outcome of one refresh: {@code drift} is NaN when there was no previous basis.
     *
     * @param kept SKIPPED only (else null): column c of the new basis is column {@code kept[c]} of
     *             the previous one, the same vector (re-sorted by the new Rayleigh quotients)
     */
    public record Outcome(EigenResult result, Mode mode, double drift, int[] kept) {
        public Outcome(EigenResult result, Mode mode, double drift) {
            this(result, mode, drift, null);
        }

        /** The previous vectors were kept. */
        public boolean skipped() {
            return mode == Mode.SKIPPED;
        }
    }

    /**
     * @param previous last basis of this factor, or null on the first refresh
     * @param factor new factor, n x n row-major symmetric
     */
    public Outcome refresh(Eigenbasis previous, double[] factor, int n) {
        if (previous == null || previous.size() != n) {
            return new Outcome(solver.decompose(factor, n, precision), Mode.FULL, Double.NaN);
        }
        RotatedFactor rotated;
        try {
            rotated = new RotatedFactor(previous.vectorsView(), factor, n);
        } catch (IllegalArgumentException notPsd) { // the solver reports what is wrong with it (NaN, not symmetric, ...)
            return new Outcome(solver.decompose(factor, n, precision), Mode.FULL, Double.NaN);
        }
        try (rotated) {
            double drift = rotated.drift();
            if (drift < skipTolerance) {
                double[] quotients = rotated.rayleighQuotients();
                return new Outcome(EigenResult.success(sorted(n, quotients, previous.vectorsView(), previous.precision())),
                        Mode.SKIPPED, drift, descending(quotients));
            }
            if (drift < warmTolerance) {
                Optional<RotatedFactor.Update> u = rotated.firstOrderUpdate();
                if (u.isPresent()) {
                    return new Outcome(EigenResult.success(sorted(n, u.get().values(), u.get().vectors(), Precision.FLOAT64)),
                            Mode.WARM, drift);
                }
            }
            return new Outcome(solver.decompose(factor, n, precision), Mode.FULL, drift);
        }
    }

    /** Indices of {@code values} by descending value (a stable sort: ties keep their order). */
    private static int[] descending(double[] values) {
        Integer[] order = IntStream.range(0, values.length).boxed().toArray(Integer[]::new);
        Arrays.sort(order, Comparator.comparingDouble((Integer k) -> values[k]).reversed());
        return Arrays.stream(order).mapToInt(Integer::intValue).toArray();
    }

    /** Columns reordered by descending value, values clamped at 0 (rawMin keeps the smallest before clamping). */
    private static Eigenbasis sorted(int n, double[] values, double[] columns, Precision precision) {
        int[] order = descending(values);
        double[] v = new double[n];
        double[] vectors = new double[n * n];
        double rawMin = Double.POSITIVE_INFINITY;
        for (int c = 0; c < n; c++) {
            double x = values[order[c]];
            rawMin = Math.min(rawMin, x);
            v[c] = Math.max(x, 0);
        }
        for (int r = 0; r < n; r++) {
            int row = r * n;
            for (int c = 0; c < n; c++) {
                vectors[row + c] = columns[row + order[c]];
            }
        }
        return Eigenbasis.owning(n, v, vectors, rawMin, precision);
    }
}
