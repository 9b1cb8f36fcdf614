package dev.curvewatch.curvature;

import dev.curvewatch.curvature.spi.SymmetricEigensolver;
import java.util.Arrays;
import java.util.Comparator;
import java.util.stream.IntStream;

/**
 * Drift-gated refresh of a factor's eigenbasis (DESIGN §3, warm start): if the previous basis
 * still nearly diagonalises the new factor (off-diagonal drift below {@code tolerance}), keep its
 * vectors and take the Rayleigh quotients diag(QᵀFQ) as the new eigenvalues; otherwise
 * decompose from scratch.
 */
public final class EigenbasisRefresh {
    private final SymmetricEigensolver solver;
    private final double tolerance;
    private final Precision precision;

    public EigenbasisRefresh(SymmetricEigensolver solver, double tolerance, Precision precision) {
        if (!(tolerance >= 0)) {
            throw new IllegalArgumentException("tolerance must be >= 0, got " + tolerance);
        }
        this.solver = solver;
        this.tolerance = tolerance;
        this.precision = precision;
    }

    /** Outcome of one refresh: {@code drift} is NaN when there was no previous basis. */
    public record Outcome(EigenResult result, boolean skipped, double drift) {
    }

    /**
     * @param previous last basis of this factor, or null on the first refresh
     * @param factor new factor, n x n row-major symmetric
     */
    public Outcome refresh(Eigenbasis previous, double[] factor, int n) {
        if (previous == null || previous.size() != n) {
            return new Outcome(solver.decompose(factor, n, precision), false, Double.NaN);
        }
        double[] rotated = BasisDrift.rotate(previous, factor, BlasBackends.best());
        double drift = BasisDrift.offDiagonalRatio(rotated, factor, n);
        if (!(drift < tolerance)) {
            return new Outcome(solver.decompose(factor, n, precision), false, drift);
        }
        Integer[] order = IntStream.range(0, n).boxed().toArray(Integer[]::new);
        Arrays.sort(order, Comparator.comparingDouble((Integer k) -> rotated[k * n + k]).reversed());
        double[] q = previous.vectorsView();
        double[] values = new double[n];
        double[] vectors = new double[n * n];
        double rawMin = Double.POSITIVE_INFINITY;
        for (int c = 0; c < n; c++) {
            double v = rotated[order[c] * n + order[c]];
            rawMin = Math.min(rawMin, v);
            values[c] = Math.max(v, 0);
            for (int r = 0; r < n; r++) {
                vectors[r * n + c] = q[r * n + order[c]];
            }
        }
        return new Outcome(EigenResult.success(new Eigenbasis(n, values, vectors, rawMin, previous.precision())),
                true, drift);
    }
}
