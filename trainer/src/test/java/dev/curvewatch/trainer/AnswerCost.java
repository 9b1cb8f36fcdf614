package dev.curvewatch.trainer;

import dev.curvewatch.trainer.experiments.Metrics;
import dev.curvewatch.trainer.experiments.Mlp;
import dev.curvewatch.trainer.experiments.NoisyLabelData;
import dev.curvewatch.trainer.experiments.NoisyLabelsEvaluator;

import dev.curvewatch.avro.ExampleLosses;
import dev.curvewatch.avro.ProbeResult;
import dev.curvewatch.curvature.CurvatureEdit;
import dev.curvewatch.curvature.FactorAccumulator;
import dev.curvewatch.curvature.KeepMassMask;
import dev.curvewatch.curvature.Precision;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.Set;

/**
 * Timing harness, not a test: the cost of one {@link CandidateScorer#answer} (500 probes + 512
 * training examples, the standard 19 ρ) on the demo's 32-512-512-10 noisy-label MLP, per layer, and
 * of its 19 edits alone, one-shot ({@code apply(w, mask)}) and from coordinates computed once.
 * Prints medians and checksums of every loss in the answer and of every W', so two builds can be
 * compared for speed and for identical results.
 *
 * <pre>
 * mvn -o -q -pl trainer dependency:build-classpath -Dmdep.includeScope=test -Dmdep.outputFile=/tmp/trainer.cp
 * java -Xmx2g -cp trainer/target/classes:trainer/target/test-classes:$(cat /tmp/trainer.cp) \
 *     dev.curvewatch.trainer.AnswerCost [answers per layer, default 5]
 * </pre>
 */
public final class AnswerCost {
    private AnswerCost() {
    }

    public static void main(String[] args) {
        int repeats = args.length > 0 ? Integer.parseInt(args[0]) : 5;
        NoisyLabelData data = NoisyLabelData.generate(1, 32, 10, 1.0, 2000, 1000, 500, 0.1);
        try (Mlp mlp = new Mlp(2, 32, 512, 512, 10)) {
            int n = data.train().n();
            for (int epoch = 0; epoch < 3; epoch++) {
                for (int start = 0; start < n; start += 100) {
                    float[] x = Arrays.copyOfRange(data.train().x(), start * 32, (start + 100) * 32);
                    int[] y = Arrays.copyOfRange(data.trainLabels(), start, start + 100);
                    mlp.adam(mlp.forwardBackward(x, y, 100, Set.of()), 1e-3f);
                }
            }
            float[] logits = mlp.logits(data.train().x(), n);
            Random random = new Random(3);
            int[] sampled = new int[n];
            for (int i = 0; i < n; i++) {
                sampled[i] = Metrics.sampleFromLogits(logits, i * 10, 10, random);
            }
            NoisyLabelsEvaluator evaluator = new NoisyLabelsEvaluator(mlp, data, List.of(0, 1), data.trainLabels());
            int[] all = new int[n];
            for (int i = 0; i < n; i++) {
                all[i] = i;
            }
            evaluator.trained(all);
            for (LayerCapture cap : mlp.forwardBackward(data.train().x(), sampled, n, Set.of(0, 1)).captures()) {
                FactorAccumulator a = FactorAccumulator.cumulative(cap.dIn(), Precision.FLOAT64);
                FactorAccumulator g = FactorAccumulator.cumulative(cap.dOut(), Precision.FLOAT64);
                a.add(0, cap.a(), cap.tokens());
                g.add(0, cap.g(), cap.tokens());
                String layer = Mlp.layerName(cap.layer());
                CandidateValidator.Prepared p = CandidateValidator.prepare(Candidates.builder("c-" + layer, "run", layer, 1,
                        Candidates.bases(a, g), Candidates.standardRhos()).build(), "run", evaluator::layer);
                measure(p, evaluator, layer, cap.dOut() + " x " + cap.dIn(), repeats);
            }
        }
    }

    private static void measure(CandidateValidator.Prepared p, NoisyLabelsEvaluator evaluator, String layer, String shape,
                                int repeats) {
        List<Double> answers = new ArrayList<>();
        List<Double> edits = new ArrayList<>();
        List<Double> once = new ArrayList<>();
        long checksum = 0;
        long weights = 0;
        try (EditEvaluator.Session session = evaluator.begin(CandidateResponder.MAX_TRAINING_EXAMPLES)) {
            float[] w = session.weight(layer).clone();
            CurvatureEdit edit = p.edit();
            for (int r = 0; r <= repeats; r++) { // round 0 warms up
                long t0 = System.nanoTime();
                ProbeResult result = CandidateScorer.answer(p, session, "run", 0);
                long t1 = System.nanoTime();
                long h = 17;
                for (KeepMassMask m : p.masks()) {
                    h = h * 31 + Arrays.hashCode(edit.apply(w, m));
                }
                long t2 = System.nanoTime();
                CurvatureEdit.Coordinates c = edit.coordinates(w);
                long hc = 17;
                for (KeepMassMask m : p.masks()) {
                    hc = hc * 31 + Arrays.hashCode(edit.applyFloat32(c, m));
                }
                long t3 = System.nanoTime();
                if (h != hc) {
                    throw new AssertionError("coordinates once and one-shot edits differ");
                }
                weights = h;
                if (r > 0) {
                    answers.add((t1 - t0) / 1e6);
                    edits.add((t2 - t1) / 1e6);
                    once.add((t3 - t2) / 1e6);
                }
                checksum = checksum(result);
            }
        }
        System.out.printf("%s (%s): answer %s ms; %d edits one-shot %s ms, from coordinates computed once %s ms;"
                + " loss checksum %016x, W' checksum %016x%n", layer, shape, summary(answers), p.masks().size(),
                summary(edits), summary(once), checksum, weights);
    }

    private static long checksum(ProbeResult result) {
        long h = 17;
        for (ExampleLosses e : result.getExamples()) {
            h = h * 31 + Float.floatToIntBits(e.getLossNow());
            for (float l : e.getLossEdited()) {
                h = h * 31 + Float.floatToIntBits(l);
            }
        }
        return h;
    }

    private static String summary(List<Double> ms) {
        double[] v = ms.stream().mapToDouble(Double::doubleValue).sorted().toArray();
        return String.format("median %.0f (min %.0f, max %.0f)", v[v.length / 2], v[0], v[v.length - 1]);
    }
}
