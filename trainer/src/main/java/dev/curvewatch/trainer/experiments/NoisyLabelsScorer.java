package dev.curvewatch.trainer.experiments;

import dev.curvewatch.curvature.CurvatureEdit;
import dev.curvewatch.curvature.KeepMassMask;
import dev.curvewatch.curvature.RhoCalibration;
import dev.curvewatch.curvature.RhoCalibrator;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * Scores the noisy-label MLP, optionally with one layer's weight replaced by an edit, on the
 * splits of its generated data: what the experiment and the demo report before and after.
 * The model is only read; an edit is applied for the forward pass, never stored.
 */
public final class NoisyLabelsScorer {
    private final Mlp mlp;
    private final NoisyLabelData data;

    public NoisyLabelsScorer(Mlp mlp, NoisyLabelData data) {
        this.mlp = mlp;
        this.data = data;
    }

    /** Held-out probe accuracy; {@code edited == null} scores the model as it is. */
    public double probeAccuracy(float[] edited, int layer) {
        NoisyLabelData.Split p = data.probes();
        int[] pred = Metrics.argmax(mlp.logits(p.x(), p.n(), edited, layer), p.n(), data.classes());
        return Metrics.agreement(pred, p.y(), null, true);
    }

    /** Mean held-out probe cross-entropy. */
    public double probeLoss(float[] edited, int layer) {
        NoisyLabelData.Split p = data.probes();
        return Metrics.mean(Metrics.crossEntropy(mlp.logits(p.x(), p.n(), edited, layer), p.y(), data.classes()));
    }

    /**
     * flipped_memorized (flipped examples predicting their flipped label), flipped_true,
     * clean_train_accuracy, test_accuracy, probe_accuracy.
     */
    public Map<String, Double> evaluate(float[] edited, int layer) {
        int k = data.classes();
        NoisyLabelData.Split tr = data.train();
        NoisyLabelData.Split te = data.test();
        int[] pred = Metrics.argmax(mlp.logits(tr.x(), tr.n(), edited, layer), tr.n(), k);
        int[] predTest = Metrics.argmax(mlp.logits(te.x(), te.n(), edited, layer), te.n(), k);
        Map<String, Double> m = new LinkedHashMap<>();
        m.put("flipped_memorized", Metrics.agreement(pred, data.trainLabels(), data.flipped(), true));
        m.put("flipped_true", Metrics.agreement(pred, tr.y(), data.flipped(), true));
        m.put("clean_train_accuracy", Metrics.agreement(pred, tr.y(), data.flipped(), false));
        m.put("test_accuracy", Metrics.agreement(predTest, te.y(), null, true));
        m.put("probe_accuracy", probeAccuracy(edited, layer));
        return m;
    }

    /**
     * One layer's calibrated edit (DESIGN §3): the most aggressive ρ whose edit keeps held-out
     * probe accuracy within {@code tolerance} of the unedited model; {@code edited} is null when
     * no ρ qualifies.
     */
    public record LayerEdit(int layer, RhoCalibration calibration, KeepMassMask mask, float[] edited,
                            double probeAccuracy, double probeLoss) {
        public boolean found() {
            return edited != null;
        }
    }

    /** Calibrates ρ for {@code layer} with {@code edit} (built from that layer's factors). */
    public LayerEdit calibrate(int layer, CurvatureEdit edit, double tolerance) {
        // C = U_Gᵀ W U_A once: the ρ the calibration tries change only the mask
        CurvatureEdit.Coordinates coordinates = edit.coordinates(mlp.weight(layer));
        RhoCalibration cal = RhoCalibrator.standard(tolerance, RhoCalibrator.Direction.HIGHER_IS_BETTER)
                .calibrate(probeAccuracy(null, -1), rho -> probeAccuracy(edit.applyFloat32(coordinates, edit.select(rho)), layer));
        if (cal.rho().isEmpty()) {
            return new LayerEdit(layer, cal, null, null, Double.NaN, Double.NaN);
        }
        KeepMassMask mask = edit.select(cal.rho().getAsDouble());
        float[] edited = edit.applyFloat32(coordinates, mask);
        return new LayerEdit(layer, cal, mask, edited, probeAccuracy(edited, layer), probeLoss(edited, layer));
    }

    /** The layer whose calibrated edit scores best on the probes (accuracy, then loss); never looks at training labels. */
    public static Optional<LayerEdit> best(List<LayerEdit> edits) {
        LayerEdit best = null;
        for (LayerEdit e : edits) {
            if (e.found() && (best == null || e.probeAccuracy() > best.probeAccuracy()
                    || (e.probeAccuracy() == best.probeAccuracy() && e.probeLoss() < best.probeLoss()))) {
                best = e;
            }
        }
        return Optional.ofNullable(best);
    }
}
