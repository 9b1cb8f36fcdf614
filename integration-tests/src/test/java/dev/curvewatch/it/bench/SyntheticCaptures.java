package dev.curvewatch.it.bench;

import dev.curvewatch.avro.Capture;
import dev.curvewatch.schemas.TensorCodec;

import java.util.SplittableRandom;

/**
 * Captures of one layer with a realistic factor structure at any size: each token's row is
 * {@code s ⊙ z + B c} with z, c standard normal, a decaying per-coordinate scale s_k = (1+k)^-0.5
 * (a long tail of small eigenvalues) and a fixed random rank-{@value #RANK} part B (a few large
 * eigenvalues whose eigenvectors are not coordinate axes). Both factors converge as tokens
 * accumulate, so consecutive refreshes drift little, as in a fine-tune.
 */
public final class SyntheticCaptures {
    static final int RANK = 4;

    private final int dIn;
    private final int dOut;
    private final int tokens;
    private final float[] scaleIn;
    private final float[] scaleOut;
    private final float[] basisIn;
    private final float[] basisOut;
    private final SplittableRandom random;

    public SyntheticCaptures(int dIn, int dOut, int tokens, long seed) {
        this.dIn = dIn;
        this.dOut = dOut;
        this.tokens = tokens;
        this.random = new SplittableRandom(seed);
        this.scaleIn = scales(dIn, 1.0);
        this.scaleOut = scales(dOut, 3.0);
        this.basisIn = basis(dIn);
        this.basisOut = basis(dOut);
    }

    private static float[] scales(int d, double top) {
        float[] s = new float[d];
        for (int k = 0; k < d; k++) {
            s[k] = (float) (top / Math.sqrt(1 + k));
        }
        return s;
    }

    private float[] basis(int d) {
        float[] b = new float[d * RANK];
        for (int i = 0; i < b.length; i++) {
            b[i] = (float) (random.nextGaussian() * 2 / Math.sqrt(RANK));
        }
        return b;
    }

    private float[] rows(int d, float[] scale, float[] basis) {
        float[] out = new float[tokens * d];
        double[] c = new double[RANK];
        for (int t = 0; t < tokens; t++) {
            for (int r = 0; r < RANK; r++) {
                c[r] = random.nextGaussian();
            }
            int row = t * d;
            for (int k = 0; k < d; k++) {
                double v = scale[k] * random.nextGaussian();
                int b = k * RANK;
                for (int r = 0; r < RANK; r++) {
                    v += basis[b + r] * c[r];
                }
                out[row + k] = (float) v;
            }
        }
        return out;
    }

    public Capture next(String runId, String layer, long step) {
        return Capture.newBuilder().setRunId(runId).setLayer(layer).setStep(step)
                .setActivations(TensorCodec.ofFloats(rows(dIn, scaleIn, basisIn), tokens, dIn))
                .setGradients(TensorCodec.ofFloats(rows(dOut, scaleOut, basisOut), tokens, dOut))
                .setTimestampMs(System.currentTimeMillis()).build();
    }
}
