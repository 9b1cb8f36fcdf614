package dev.curvewatch.trainer.experiments;

import dev.curvewatch.trainer.EditEvaluator;
import dev.curvewatch.trainer.LayerShape;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Optional;

/**
 * {@link EditEvaluator} of the noisy-label MLP of {@link WatchedTraining}: every held-out probe
 * ({@code probe-<k>}, true labels) and up to 512 of the training examples trained on most recently
 * ({@code train-<i>}, with the labels the run trains on now: clean before a noise injection,
 * flipped after it), scored through {@link Mlp#logits(float[], int, float[], int)} as
 * {@link NoisyLabelsScorer} does, on a frozen copy of the model ({@link Mlp#frozenCopy()}).
 * Cross-entropy in nats, correct = argmax equals the label.
 */
public final class NoisyLabelsEvaluator implements EditEvaluator {
    private final Mlp mlp;
    private final NoisyLabelData data;
    private final List<Integer> watched;
    private final RecentExamples recent;
    private int[] labels;

    /**
     * @param watched layer indices (0 = fc1) the evaluator may edit
     * @param labels the training labels in force now (see {@link #labels(int[])})
     */
    public NoisyLabelsEvaluator(Mlp mlp, NoisyLabelData data, List<Integer> watched, int[] labels) {
        this.mlp = mlp;
        this.data = data;
        this.watched = List.copyOf(watched);
        this.recent = new RecentExamples(Math.max(1, data.train().n()));
        this.labels = labels;
    }

    /** The training labels in force from now on (the run switches them when it injects noise). */
    public void labels(int[] labels) {
        this.labels = labels;
    }

    /** The training labels in force now. */
    public int[] labels() {
        return labels;
    }

    /** Records that these training examples were just trained on. */
    public void trained(int[] trainIndices) {
        recent.add(trainIndices);
    }

    @Override
    public Optional<LayerShape> layer(String name) {
        for (int l : watched) {
            if (Mlp.layerName(l).equals(name)) {
                return Optional.of(new LayerShape(name, mlp.outDim(l), mlp.inDim(l), true));
            }
        }
        return Optional.empty();
    }

    @Override
    public MlpSession begin(int maxTrainingExamples) {
        NoisyLabelData.Split probes = data.probes();
        int[] train = recent.latest(Math.max(0, maxTrainingExamples));
        int dim = data.dim();
        int n = probes.n() + train.length;
        float[] x = new float[n * dim];
        int[] y = new int[n];
        boolean[] probe = new boolean[n];
        List<String> ids = new ArrayList<>(n);
        System.arraycopy(probes.x(), 0, x, 0, probes.n() * dim);
        for (int k = 0; k < probes.n(); k++) {
            y[k] = probes.y()[k];
            probe[k] = true;
            ids.add("probe-" + k);
        }
        int[] now = labels;
        for (int k = 0; k < train.length; k++) {
            int i = train[k];
            System.arraycopy(data.train().x(), i * dim, x, (probes.n() + k) * dim, dim);
            y[probes.n() + k] = now[i];
            ids.add("train-" + i);
        }
        return new MlpSession(mlp.frozenCopy(), now.clone(), Collections.unmodifiableList(ids), probe, x, y);
    }

    /** One answer's frozen MLP (parameters copied at {@link #begin}) and examples. */
    public final class MlpSession implements Session {
        private final Mlp frozen;
        private final int[] trainLabels;
        private final List<String> sampleIds;
        private final boolean[] probe;
        private final float[] x;
        private final int[] y;

        private MlpSession(Mlp frozen, int[] trainLabels, List<String> sampleIds, boolean[] probe, float[] x, int[] y) {
            this.frozen = frozen;
            this.trainLabels = trainLabels;
            this.sampleIds = sampleIds;
            this.probe = probe;
            this.x = x;
            this.y = y;
        }

        /** The frozen model (valid until {@link #close}). */
        public Mlp model() {
            return frozen;
        }

        /** The training labels in force when the session began (indexed by training example). */
        public int[] trainLabels() {
            return trainLabels.clone();
        }

        @Override
        public float[] weight(String layer) {
            return frozen.weight(index(layer));
        }

        @Override
        public List<String> sampleIds() {
            return sampleIds;
        }

        @Override
        public boolean[] probe() {
            return probe.clone();
        }

        @Override
        public boolean hasCorrect() {
            return true;
        }

        @Override
        public Scores score(String layer, float[] weight) {
            int n = y.length;
            float[] logits = weight == null ? frozen.logits(x, n) : frozen.logits(x, n, weight, index(layer));
            double[] ce = Metrics.crossEntropy(logits, y, data.classes());
            int[] pred = Metrics.argmax(logits, n, data.classes());
            float[] loss = new float[n];
            boolean[] correct = new boolean[n];
            for (int i = 0; i < n; i++) {
                loss[i] = (float) ce[i];
                correct[i] = pred[i] == y[i];
            }
            return new Scores(loss, correct);
        }

        @Override
        public void close() {
            frozen.close();
        }
    }

    private int index(String layer) {
        for (int l : watched) {
            if (Mlp.layerName(l).equals(layer)) {
                return l;
            }
        }
        throw new IllegalArgumentException("layer " + layer + " is not watched (watched: " + watched + ")");
    }
}
