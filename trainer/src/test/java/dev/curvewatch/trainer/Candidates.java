package dev.curvewatch.trainer;

import dev.curvewatch.avro.EditCandidate;
import dev.curvewatch.curvature.Eigenbasis;
import dev.curvewatch.curvature.FactorAccumulator;
import dev.curvewatch.curvature.KeepMassSelector;
import dev.curvewatch.curvature.Precision;
import dev.curvewatch.curvature.RhoCalibrator;
import dev.curvewatch.curvature.SymmetricEigensolvers;
import dev.curvewatch.schemas.TensorCodec;

import java.util.ArrayList;
import java.util.List;

/**
 * Builds edit candidates the way the service does (SERVICE-CONTRACT §1): float32 eigenbases and
 * spectra of real factors, the standard ρ grid, τ from {@link KeepMassSelector} on the float32
 * spectra the candidate carries.
 */
final class Candidates {
    private Candidates() {
    }

    /** Eigenbases (G, A) of one layer's factors accumulated from captures. */
    record Bases(Eigenbasis g, Eigenbasis a) {
        /** U as float32 row-major, widened back: exactly what the candidate carries. */
        double[] ug() {
            return widen(narrow(g.vectors()));
        }

        double[] ua() {
            return widen(narrow(a.vectors()));
        }

        double[] lambda() {
            return widen(narrow(g.values()));
        }

        double[] mu() {
            return widen(narrow(a.values()));
        }
    }

    static Bases bases(FactorAccumulator a, FactorAccumulator g) {
        Eigenbasis ea = SymmetricEigensolvers.best().decompose(a.mean(), a.dim(), Precision.FLOAT64).orThrow();
        Eigenbasis eg = SymmetricEigensolvers.best().decompose(g.mean(), g.dim(), Precision.FLOAT64).orThrow();
        return new Bases(eg, ea);
    }

    static double[] standardRhos() {
        return RhoCalibrator.standard(0.01, RhoCalibrator.Direction.HIGHER_IS_BETTER).candidates();
    }

    static double[] thresholds(Bases b, double[] rhos) {
        double[] taus = new double[rhos.length];
        for (int k = 0; k < rhos.length; k++) {
            taus[k] = KeepMassSelector.select(b.lambda(), b.mu(), rhos[k]).tau();
        }
        return taus;
    }

    static EditCandidate.Builder builder(String id, String run, String layer, long version, Bases b, double[] rhos) {
        return builder(id, run, layer, version, b, rhos, thresholds(b, rhos));
    }

    static EditCandidate.Builder builder(String id, String run, String layer, long version, Bases b, double[] rhos,
                                         double[] taus) {
        int m = b.g().size();
        int n = b.a().size();
        return EditCandidate.newBuilder().setCandidateId(id).setRunId(run).setLayer(layer).setStep(version * 10)
                .setFactorVersion(version)
                .setBasisG(TensorCodec.ofFloats(narrow(b.g().vectors()), m, m))
                .setBasisA(TensorCodec.ofFloats(narrow(b.a().vectors()), n, n))
                .setEigenvaluesG(TensorCodec.ofFloats(narrow(b.g().values()), m))
                .setEigenvaluesA(TensorCodec.ofFloats(narrow(b.a().values()), n))
                .setRhos(list(rhos)).setThresholds(list(taus)).setCreatedMs(System.currentTimeMillis());
    }

    static List<Double> list(double[] v) {
        List<Double> out = new ArrayList<>();
        for (double d : v) {
            out.add(d);
        }
        return out;
    }

    static float[] narrow(double[] v) {
        float[] out = new float[v.length];
        for (int i = 0; i < v.length; i++) {
            out[i] = (float) v[i];
        }
        return out;
    }

    static double[] widen(float[] v) {
        double[] out = new double[v.length];
        for (int i = 0; i < v.length; i++) {
            out[i] = v[i];
        }
        return out;
    }
}
