package dev.curvewatch.curvature.spi;

import dev.curvewatch.curvature.EigenResult;
import dev.curvewatch.curvature.Precision;

/**
 * Symmetric eigendecomposition backend (CPU LAPACK by default, a GPU one may plug in through
 * {@link java.util.ServiceLoader}). Must pass the abstract {@code SymmetricEigensolverContract}
 * suite in curvature's test-jar.
 */
public interface SymmetricEigensolver {

    /** Short name used in logs and benchmark tables. */
    String name();

    /** Higher wins when several solvers are available. */
    int priority();

    /** False when the native library cannot be loaded on this machine. */
    boolean isAvailable();

    /**
     * Decomposes the symmetric n x n row-major {@code matrix} (only the upper triangle is read,
     * the array is not modified). Never throws for bad numbers: NaN/Inf input or a LAPACK
     * {@code info != 0} comes back as {@link EigenResult#failure(String)}.
     *
     * @param precision FLOAT64 (dsyevd) or FLOAT32 (ssyevd, faster, ~1e-6 relative accuracy)
     */
    EigenResult decompose(double[] matrix, int n, Precision precision);
}
