package dev.curvewatch.it.bench;

import dev.curvewatch.curvature.CurvatureEdit;
import dev.curvewatch.curvature.Eigenbasis;
import dev.curvewatch.curvature.KeepMassMask;
import dev.curvewatch.curvature.Precision;

import java.util.SplittableRandom;

/**
 * What the Java trainer's answer to one candidate costs at a layer's size, on this machine: its
 * {@code CandidateResponder} computes the coordinates C = U_Gᵀ W U_A once and then one masked
 * reconstruction U_G (C ⊙ M) U_Aᵀ per candidate ρ with a distinct mask (19 under search ALL),
 * before any forward pass. Timed with {@link CurvatureEdit} on bases of the layer's sides (random
 * entries: a gemm's time does not depend on them), ρ = 0.6.
 */
final class AnswerCost {
    record Seconds(double coordinates, double perMask) {
        /** Coordinates plus {@code masks} reconstructions. */
        double answer(int masks) {
            return coordinates + masks * perMask;
        }
    }

    private AnswerCost() {
    }

    /** {@code AnswerCost dOut dIn}: prints the measured seconds (run with -Xmx of ~1.3x {@code CandidateResponder.answerBytes}). */
    public static void main(String[] args) {
        int dOut = Integer.parseInt(args[0]);
        int dIn = Integer.parseInt(args[1]);
        Seconds s = measure(dOut, dIn);
        System.out.printf(java.util.Locale.ROOT, "Java trainer answer at %d x %d (CurvatureEdit, fp64 gemms): coordinates %.1f s, "
                + "one masked reconstruction %.1f s; an answer under search ALL (19 masks) %.0f s, under BISECT (~6 masks) %.0f s, "
                + "before any forward pass%n", dOut, dIn, s.coordinates(), s.perMask(), s.answer(19), s.answer(6));
    }

    static Seconds measure(int dOut, int dIn) {
        SplittableRandom r = new SplittableRandom(5);
        Eigenbasis g = basis(dOut, r);
        Eigenbasis a = basis(dIn, r);
        float[] w = new float[dOut * dIn];
        for (int i = 0; i < w.length; i++) {
            w[i] = (float) r.nextGaussian();
        }
        CurvatureEdit edit = new CurvatureEdit(g, a);
        long t0 = System.nanoTime();
        CurvatureEdit.Coordinates c = edit.coordinates(w);
        long t1 = System.nanoTime();
        KeepMassMask mask = edit.select(0.6);
        float[] edited = edit.applyFloat32(c, mask);
        long t2 = System.nanoTime();
        if (edited.length != w.length) {
            throw new IllegalStateException("edit of " + edited.length + " values");
        }
        return new Seconds((t1 - t0) / 1e9, (t2 - t1) / 1e9);
    }

    private static Eigenbasis basis(int n, SplittableRandom r) {
        double[] values = new double[n];
        for (int k = 0; k < n; k++) {
            values[k] = 1.0 / (1 + k);
        }
        double[] vectors = new double[n * n];
        for (int i = 0; i < vectors.length; i++) {
            vectors[i] = r.nextGaussian() / Math.sqrt(n);
        }
        return new Eigenbasis(n, values, vectors, values[n - 1], Precision.FLOAT64);
    }
}
