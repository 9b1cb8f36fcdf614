package dev.curvewatch.trainer;

import dev.curvewatch.trainer.experiments.NoisyLabelData;

import dev.curvewatch.avro.ExampleLosses;
import dev.curvewatch.avro.ProbeResult;

import static org.junit.jupiter.api.Assertions.assertEquals;

/** A ProbeResult checked example by example against {@link Reference} (fp64 loops, no DJL, no CurvatureEdit). */
final class ProbeResultCheck {
    private ProbeResultCheck() {
    }

    /**
     * Checks every example against the reference; tolerance 1e-4 x (1 + |loss|) nats: DJL runs
     * float32 (relative error ~1e-6), the reference fp64; both edits are rounded to float32 once.
     *
     * @return how many (example, rho) losses the edit moved by more than 1e-3 nats
     */
    static int check(ProbeResult r, float[][] w, float[][] b, int[] dims, NoisyLabelData data, int layer,
                     Candidates.Bases bases, double[] taus, int[] trainLabels) {
        int n = r.getExamples().size();
        int dim = dims[0];
        float[] x = new float[n * dim];
        int[] y = new int[n];
        for (int i = 0; i < n; i++) {
            ExampleLosses e = r.getExamples().get(i);
            String id = e.getSampleId();
            int k = Integer.parseInt(id.substring(id.indexOf('-') + 1));
            NoisyLabelData.Split split = e.getProbe() ? data.probes() : data.train();
            assertEquals(e.getProbe() ? "probe-" + k : "train-" + k, id);
            System.arraycopy(split.x(), k * dim, x, i * dim, dim);
            y[i] = e.getProbe() ? split.y()[k] : trainLabels[k];
        }
        double[] now = Reference.logits(w, b, dims, x, n);
        int changed = 0;
        for (int i = 0; i < n; i++) {
            ExampleLosses e = r.getExamples().get(i);
            double ref = Reference.crossEntropy(now, i, 10, y[i]);
            assertEquals(ref, e.getLossNow(), 1e-4 * (1 + Math.abs(ref)), "loss_now of " + e.getSampleId());
            if (Reference.margin(now, i, 10) > 1e-4) {
                assertEquals(Reference.argmax(now, i, 10) == y[i], e.getCorrectNow(), "correct_now of " + e.getSampleId());
            }
        }
        int dOut = dims[layer + 1];
        int dIn = dims[layer];
        for (int k = 0; k < taus.length; k++) {
            float[][] edited = w.clone();
            edited[layer] = Reference.edit(w[layer], dOut, dIn, bases.ug(), bases.ua(), bases.lambda(), bases.mu(), taus[k]);
            double[] after = Reference.logits(edited, b, dims, x, n);
            for (int i = 0; i < n; i++) {
                ExampleLosses e = r.getExamples().get(i);
                double ref = Reference.crossEntropy(after, i, 10, y[i]);
                float got = e.getLossEdited().get(k);
                assertEquals(ref, got, 1e-4 * (1 + Math.abs(ref)), "loss_edited[" + k + "] of " + e.getSampleId());
                if (Reference.margin(after, i, 10) > 1e-4) {
                    assertEquals(Reference.argmax(after, i, 10) == y[i], e.getCorrectEdited().get(k),
                            "correct_edited[" + k + "] of " + e.getSampleId());
                }
                changed += Math.abs(got - e.getLossNow()) > 1e-3 ? 1 : 0;
            }
        }
        return changed;
    }
}
