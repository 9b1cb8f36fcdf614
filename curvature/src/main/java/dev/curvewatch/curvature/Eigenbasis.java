package dev.curvewatch.curvature;

import java.util.Arrays;

/**
 * Eigendecomposition F = U diag(values) Uᵀ of a symmetric factor: eigenvalues sorted descending
 * and clamped at 0 (a PSD factor only goes negative through rounding), eigenvectors as the
 * columns of the row-major n x n matrix {@link #vectors()}.
 */
public final class Eigenbasis {
    private final int n;
    private final double[] values;
    private final double[] vectors;
    private final double rawMin;
    private final Precision precision;

    /**
     * @param values eigenvalues, descending, already clamped at 0 (copied)
     * @param vectors n x n row-major, column k belongs to {@code values[k]} (copied)
     * @param rawMin smallest eigenvalue before clamping
     */
    public Eigenbasis(int n, double[] values, double[] vectors, double rawMin, Precision precision) {
        this(values.clone(), vectors.clone(), n, rawMin, precision);
    }

    /**
     * Takes the arrays without copying them (the caller gives them up): for the decompositions
     * that build them (a 11008-side basis is 970 MB).
     */
    public static Eigenbasis owning(int n, double[] values, double[] vectors, double rawMin, Precision precision) {
        return new Eigenbasis(values, vectors, n, rawMin, precision);
    }

    private Eigenbasis(double[] values, double[] vectors, int n, double rawMin, Precision precision) {
        if (values.length != n || vectors.length != (long) n * n) {
            throw new IllegalArgumentException("eigenbasis of side " + n + " needs " + n
                    + " values and " + ((long) n * n) + " vector entries, got " + values.length
                    + " and " + vectors.length);
        }
        for (int k = 0; k < n; k++) {
            if (!(values[k] >= 0) || Double.isInfinite(values[k]) || (k > 0 && values[k] > values[k - 1])) {
                throw new IllegalArgumentException("eigenvalues must be finite, >= 0 and descending; index "
                        + k + " has " + values[k]);
            }
        }
        this.n = n;
        this.values = values;
        this.vectors = vectors;
        this.rawMin = rawMin;
        this.precision = precision;
    }

    /** Side of the factor. */
    public int size() {
        return n;
    }

    /** Eigenvalues, descending, clamped at 0 (a copy). */
    public double[] values() {
        return values.clone();
    }

    /** Eigenvalue k without copying. */
    public double value(int k) {
        return values[k];
    }

    /** Eigenvectors as columns, row-major n x n (a copy). */
    public double[] vectors() {
        return vectors.clone();
    }

    /** Smallest eigenvalue before clamping at 0 (negative values show rounding or a non-PSD input). */
    public double rawMin() {
        return rawMin;
    }

    /** Precision the decomposition ran in. */
    public Precision precision() {
        return precision;
    }

    /** Eigenvector matrix without a defensive copy, for kernels inside this module. */
    double[] vectorsView() {
        return vectors;
    }

    @Override
    public String toString() {
        return "Eigenbasis[n=" + n + ", precision=" + precision + ", top="
                + Arrays.toString(Arrays.copyOf(values, Math.min(3, n))) + ", rawMin=" + rawMin + "]";
    }
}
