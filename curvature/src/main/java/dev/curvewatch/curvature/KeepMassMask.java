package dev.curvewatch.curvature;

import java.util.Arrays;

/**
 * The keep set S_ρ = {(i, j): λ_i μ_j ≥ τ} of a layer (DESIGN §2) as a staircase: row i (an
 * eigenvector of G) keeps the first {@link #rowCount(int)} columns (eigenvectors of A). Never
 * holds d_out·d_in entries unless {@link #toDense()} is asked for.
 */
public final class KeepMassMask {
    private final double rho;
    private final double tau;
    private final int[] rowCounts;
    private final int columns;
    private final long keptPairs;
    private final double keptMass;
    private final double totalMass;

    KeepMassMask(double rho, double tau, int[] rowCounts, int columns, long keptPairs, double keptMass,
                 double totalMass) {
        this.rho = rho;
        this.tau = tau;
        this.rowCounts = rowCounts;
        this.columns = columns;
        this.keptPairs = keptPairs;
        this.keptMass = keptMass;
        this.totalMass = totalMass;
    }

    /** Requested keep fraction of the curvature mass. */
    public double rho() {
        return rho;
    }

    /** Threshold: the Π value of the pair that crosses ρ of the mass; every pair with Π ≥ τ is kept. */
    public double tau() {
        return tau;
    }

    /** Number of kept pairs. */
    public long keptPairs() {
        return keptPairs;
    }

    /** Σ of Π over kept pairs. */
    public double keptMass() {
        return keptMass;
    }

    /** (Σλ)(Σμ). */
    public double totalMass() {
        return totalMass;
    }

    /** d_out (rows, G side). */
    public int rows() {
        return rowCounts.length;
    }

    /** d_in (columns, A side). */
    public int columns() {
        return columns;
    }

    /** Columns kept in row i: exactly j &lt; rowCount(i); non-increasing in i. */
    public int rowCount(int i) {
        return rowCounts[i];
    }

    /** Per-row kept column counts (a copy). */
    public int[] rowCounts() {
        return rowCounts.clone();
    }

    public boolean contains(int i, int j) {
        return j < rowCounts[i];
    }

    /** Materialises M as a row-major d_out x d_in 0/1 matrix: only for small layers or tests. */
    public byte[] toDense() {
        byte[] m = new byte[Math.multiplyExact(rowCounts.length, columns)];
        for (int i = 0; i < rowCounts.length; i++) {
            Arrays.fill(m, i * columns, i * columns + rowCounts[i], (byte) 1);
        }
        return m;
    }

    @Override
    public String toString() {
        return "KeepMassMask[rho=" + rho + ", tau=" + tau + ", keptPairs=" + keptPairs + " of "
                + ((long) rowCounts.length * columns) + ", keptMass=" + keptMass + "/" + totalMass + "]";
    }
}
