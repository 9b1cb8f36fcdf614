package dev.curvewatch.service.internal;

import java.util.Arrays;

/**
 * An EditCandidate the service sent and waits to hear back about: what a ProbeResult must echo,
 * and what the calibration needs that the trainer does not send back.
 *
 * @param rhos       candidate keep-mass fractions, most aggressive first
 * @param thresholds tau per rho (keep (i,j) iff lambda_i mu_j &gt;= tau, float32 spectra as sent)
 * @param keptPairs  kept pairs per rho
 * @param totalPairs d_out x d_in
 */
public record PendingCandidate(String id, String runId, String layer, long step, long factorVersion, double[] rhos,
                               double[] thresholds, long[] keptPairs, long totalPairs, long sentMs) {

    public PendingCandidate {
        if (rhos.length != thresholds.length || rhos.length != keptPairs.length) {
            throw new IllegalArgumentException(rhos.length + " rhos, " + thresholds.length + " thresholds, " + keptPairs.length + " pair counts");
        }
        rhos = rhos.clone();
        thresholds = thresholds.clone();
        keptPairs = keptPairs.clone();
    }

    @Override
    public double[] rhos() {
        return rhos.clone();
    }

    /** Index of a rho among the candidates (exact match: the trainer echoes the doubles it got), or -1. */
    public int indexOf(double rho) {
        for (int k = 0; k < rhos.length; k++) {
            if (rhos[k] == rho) {
                return k;
            }
        }
        return -1;
    }

    public double rho(int k) {
        return rhos[k];
    }

    public long keptPairs(int k) {
        return keptPairs[k];
    }

    public int size() {
        return rhos.length;
    }

    @Override
    public String toString() {
        return "PendingCandidate[" + id + " " + runId + "/" + layer + " v" + factorVersion + " step " + step + ", rhos "
                + Arrays.toString(rhos) + "]";
    }
}
