package dev.curvewatch.service;

import dev.curvewatch.avro.EditCandidate;
import dev.curvewatch.avro.ExampleLosses;
import dev.curvewatch.avro.ProbeResult;
import dev.curvewatch.curvature.RhoCalibration;
import dev.curvewatch.curvature.RhoCalibrator;
import dev.curvewatch.schemas.TensorCodec;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

import static dev.curvewatch.trainer.testing.TrainerSimulator.argmax;
import static dev.curvewatch.trainer.testing.TrainerSimulator.crossEntropy;

/**
 * The trainer's side of the calibration round trip for a tiny linear classifier (logits = W x + b,
 * 4 classes, 8 inputs), written out with plain loops and independent of the service's code: from
 * an EditCandidate it builds every W'_k = U_G ((U_Gᵀ W U_A) ⊙ M_k) U_Aᵀ with M_k from the
 * thresholds, measures per-example cross-entropy and correctness, and predicts what the service
 * must conclude (calibrated rho, memorization gap, kept pairs, EXACT scores).
 *
 * <p>The data are built so that memorization shows: training examples put large values on the
 * two input directions the captures barely excite (low curvature), which W maps strongly; probes
 * live in the well-excited directions. Labels are the model's own predictions.
 */
final class TinyTrainer {
    /** A real trainer measures its model a few steps after the factors' last step (workers lag it). */
    static final long MEASURED_AHEAD = 7;

    static final int D_IN = 8;
    static final int D_OUT = 4;
    /** Standard deviations of the captured inputs per coordinate: the last two are the low-curvature ones. */
    static final double[] INPUT_SD = {3, 2, 1.5, 1, 0.6, 0.3, 0.05, 0.02};
    static final double[] GRAD_SD = {2, 1, 0.5, 0.1};

    final float[] w = new float[D_OUT * D_IN];
    final float[] bias = new float[D_OUT];
    final List<float[]> probes = new ArrayList<>();
    final List<float[]> train = new ArrayList<>();
    final List<Integer> probeLabels = new ArrayList<>();
    final List<Integer> trainLabels = new ArrayList<>();

    /** What the service must conclude from one answer. */
    record Expected(EditCandidate candidate, ProbeResult result, int index, double rho, double gap, long keptPairs,
                    Map<String, Double> exact, double[][] edited) {
    }

    TinyTrainer(long seed) {
        Random r = new Random(seed);
        for (int i = 0; i < D_OUT; i++) {
            for (int j = 0; j < D_IN; j++) {
                w[i * D_IN + j] = (float) (r.nextGaussian() * (j >= 6 ? 2.0 : 0.5));
            }
            bias[i] = (float) (0.1 * r.nextGaussian());
        }
        for (int e = 0; e < 120; e++) {
            float[] x = new float[D_IN];
            for (int j = 0; j < 4; j++) {
                x[j] = (float) (r.nextGaussian() * INPUT_SD[j]);
            }
            probes.add(x);
            probeLabels.add(argmax(logits(toDouble(w), x)));
        }
        for (int e = 0; e < 80; e++) {
            float[] x = new float[D_IN];
            for (int j = 0; j < D_IN; j++) {
                x[j] = (float) (r.nextGaussian() * (j >= 6 ? 2.5 : 0.2));
            }
            train.add(x);
            trainLabels.add(argmax(logits(toDouble(w), x)));
        }
    }

    static double[] toDouble(float[] f) {
        double[] d = new double[f.length];
        for (int i = 0; i < f.length; i++) {
            d[i] = f[i];
        }
        return d;
    }

    double[] logits(double[] weight, float[] x) {
        double[] z = new double[D_OUT];
        for (int i = 0; i < D_OUT; i++) {
            double s = bias[i];
            for (int j = 0; j < D_IN; j++) {
                s += weight[i * D_IN + j] * x[j];
            }
            z[i] = s;
        }
        return z;
    }

    /** W' = U_G ((U_Gᵀ W U_A) ⊙ M) U_Aᵀ, M_ij = [lambda_i mu_j >= tau], all in double from the candidate's float32 data. */
    static double[] edit(float[] weight, float[] ug, float[] ua, float[] lambda, float[] mu, double tau) {
        int m = lambda.length;
        int n = mu.length;
        double[] t = new double[m * n];
        for (int i = 0; i < m; i++) {           // t = W U_A
            for (int j = 0; j < n; j++) {
                double s = 0;
                for (int k = 0; k < n; k++) {
                    s += weight[i * n + k] * (double) ua[k * n + j];
                }
                t[i * n + j] = s;
            }
        }
        double[] c = new double[m * n];
        for (int i = 0; i < m; i++) {           // C = U_Gᵀ t, masked
            for (int j = 0; j < n; j++) {
                double s = 0;
                for (int k = 0; k < m; k++) {
                    s += (double) ug[k * m + i] * t[k * n + j];
                }
                c[i * n + j] = (double) lambda[i] * (double) mu[j] >= tau ? s : 0;
            }
        }
        double[] u = new double[m * n];
        for (int i = 0; i < m; i++) {           // u = U_G C
            for (int j = 0; j < n; j++) {
                double s = 0;
                for (int k = 0; k < m; k++) {
                    s += (double) ug[i * m + k] * c[k * n + j];
                }
                u[i * n + j] = s;
            }
        }
        double[] out = new double[m * n];
        for (int i = 0; i < m; i++) {           // W' = u U_Aᵀ
            for (int j = 0; j < n; j++) {
                double s = 0;
                for (int k = 0; k < n; k++) {
                    s += u[i * n + k] * (double) ua[j * n + k];
                }
                out[i * n + j] = s;
            }
        }
        return out;
    }

    static long kept(float[] lambda, float[] mu, double tau) {
        long k = 0;
        for (float l : lambda) {
            for (float m : mu) {
                if ((double) l * (double) m >= tau) {
                    k++;
                }
            }
        }
        return k;
    }

    /** The square bases of the candidates answered, by candidate id: what a v4 candidate may name instead of sending. */
    private final java.util.Map<String, float[][]> held = new java.util.concurrent.ConcurrentHashMap<>();

    /**
     * A basis as a square d x d array: sent as its leading k columns (EditCandidate v4; the columns
     * after k have no kept pair at any threshold, so zeros there give the same edit), or named, the
     * columns of an earlier candidate's basis in the order given.
     */
    private float[] square(dev.curvewatch.avro.Tensor sent, String of, List<Integer> order, int which, int d) {
        float[] out = new float[d * d];
        if (of != null) {
            float[][] earlier = held.get(of);
            if (earlier == null) {
                throw new IllegalStateException("candidate names the bases of " + of + ", which this trainer does not hold");
            }
            for (int i = 0; i < d; i++) {
                for (int c = 0; c < order.size(); c++) {
                    out[i * d + c] = earlier[which][i * d + order.get(c)];
                }
            }
            return out;
        }
        float[] v = TensorCodec.toFloatArray(sent, which == 0 ? "basis_g" : "basis_a");
        int k = sent.getShape().get(1);
        for (int i = 0; i < d; i++) {
            System.arraycopy(v, i * k, out, i * d, k);
        }
        return out;
    }

    Expected answer(EditCandidate c, double tolerance) {
        float[] lambda = TensorCodec.toFloatArray(c.getEigenvaluesG(), "eigenvalues_g");
        float[] mu = TensorCodec.toFloatArray(c.getEigenvaluesA(), "eigenvalues_a");
        float[] ug = square(c.getBasisG(), c.getBasisGOf(), c.getBasisGOrder(), 0, lambda.length);
        float[] ua = square(c.getBasisA(), c.getBasisAOf(), c.getBasisAOrder(), 1, mu.length);
        held.put(c.getCandidateId(), new float[][] {ug, ua});
        int n = c.getRhos().size();
        double[][] edited = new double[n][];
        for (int k = 0; k < n; k++) {
            edited[k] = edit(w, ug, ua, lambda, mu, c.getThresholds().get(k));
        }
        double[] now = toDouble(w);
        List<ExampleLosses> examples = new ArrayList<>();
        for (int set = 0; set < 2; set++) {
            boolean probe = set == 0;
            List<float[]> xs = probe ? probes : train;
            List<Integer> ys = probe ? probeLabels : trainLabels;
            for (int e = 0; e < xs.size(); e++) {
                double[] z = logits(now, xs.get(e));
                List<Float> le = new ArrayList<>();
                List<Boolean> ce = new ArrayList<>();
                for (int k = 0; k < n; k++) {
                    double[] zk = logits(edited[k], xs.get(e));
                    le.add((float) crossEntropy(zk, ys.get(e)));
                    ce.add(argmax(zk) == ys.get(e));
                }
                examples.add(ExampleLosses.newBuilder().setSampleId((probe ? "probe-" : "train-") + e).setProbe(probe)
                        .setLossNow((float) crossEntropy(z, ys.get(e))).setCorrectNow(argmax(z) == ys.get(e))
                        .setLossEdited(le).setCorrectEdited(ce).build());
            }
        }
        ProbeResult result = ProbeResult.newBuilder().setRunId(c.getRunId()).setCandidateId(c.getCandidateId()).setLayer(c.getLayer())
                .setStep(c.getStep() + MEASURED_AHEAD).setRhos(c.getRhos()).setExamples(examples).setTimestampMs(System.currentTimeMillis()).build();

        // the contract's rule over these measurements: the most aggressive rho with every milder one within tolerance
        // (RhoCalibrator.calibrateMeasured over the standard grid on probe accuracy)
        double baseline = examples.stream().filter(ExampleLosses::getProbe).mapToDouble(x -> x.getCorrectNow() ? 1 : 0).average().orElseThrow();
        double[] acc = new double[n];
        for (int k = 0; k < n; k++) {
            final int kk = k;
            acc[k] = examples.stream().filter(ExampleLosses::getProbe).mapToDouble(x -> x.getCorrectEdited().get(kk) ? 1 : 0).average().orElseThrow();
        }
        RhoCalibration cal = RhoCalibrator.standard(tolerance, RhoCalibrator.Direction.HIGHER_IS_BETTER).calibrateMeasured(baseline, acc);
        int index = cal.rho().isPresent() ? c.getRhos().indexOf(cal.rho().getAsDouble()) : -1;
        double trainSens = 0;
        double probeSens = 0;
        Map<String, Double> exact = new LinkedHashMap<>();
        for (ExampleLosses x : examples) {
            double s = index < 0 ? 0 : (double) x.getLossEdited().get(index) - x.getLossNow();
            if (x.getProbe()) {
                probeSens += s;
            } else {
                trainSens += s;
                exact.put(x.getSampleId(), s);
            }
        }
        double gap = trainSens / train.size() - probeSens / probes.size();
        long keptPairs = index < 0 ? (long) D_OUT * D_IN : kept(lambda, mu, c.getThresholds().get(index));
        return new Expected(c, result, index, index < 0 ? 1.0 : c.getRhos().get(index), gap, keptPairs, exact, edited);
    }
}
