package dev.curvewatch.trainer;

import dev.curvewatch.avro.FisherKind;
import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.curvature.FactorAccumulator;
import dev.curvewatch.curvature.Precision;
import dev.curvewatch.curvature.SpectrumSummary;
import dev.curvewatch.curvature.SymmetricEigensolvers;
import dev.curvewatch.curvature.safetensors.SafetensorsFile;
import dev.curvewatch.curvature.safetensors.SafetensorsWriter;
import dev.curvewatch.schemas.CurvewatchTopics;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;

/**
 * A watched fine-tune (the {@code curvewatch train} command): the noisy-label MLP trained with
 * capture of its hidden layers (fc1, fc2) at every step, published to Kafka (RunInfo, Capture per
 * layer per step, held-out probe captures, WeightSnapshot every N steps), or, without a broker,
 * accumulated into K-FAC factors in-process. Can start from a safetensors snapshot (e.g. the
 * output of {@code curvewatch edit}) and save its final weights as safetensors.
 */
public final class WatchedTraining {

    public record Config(String runId, long seed, double noise, int hidden, int epochs, int batch, float lr,
                         int weightsEvery, int probeEvery, boolean sampledFisher, int tokensPerStep, String bootstrap,
                         CapturePublisher.Policy policy, int inFlightBytes, Path initWeights, Path saveWeights,
                         Path saveFactors) {
        public Config {
            if (tokensPerStep < 0) {
                throw new IllegalArgumentException("tokens per step must be >= 0 (0 = all), got " + tokensPerStep);
            }
        }

        /** The same run, writing its final weights and in-process factors to these files (null: not written). */
        public Config saving(Path weights, Path factors) {
            return new Config(runId, seed, noise, hidden, epochs, batch, lr, weightsEvery, probeEvery, sampledFisher,
                    tokensPerStep, bootstrap, policy, inFlightBytes, initWeights, weights, factors);
        }
    }

    /** Progress after each epoch, for callers that show it (the demo); {@code published}/{@code dropped} are 0 offline. */
    public record EpochProgress(String runId, int epoch, int epochs, long step, double flippedMemorized,
                                double testAccuracy, long published, long dropped) {
    }

    /** Called on the training thread after every epoch; keep it quick. */
    @FunctionalInterface
    public interface Listener {
        void onEpoch(EpochProgress progress);
    }

    private static final int[] WATCHED = {0, 1};

    private final Config config;
    private final PrintStream progress;
    private final Listener listener;

    public WatchedTraining(Config config, PrintStream progress) {
        this(config, progress, p -> { });
    }

    /**
     * @param progress human-readable log lines (e.g. {@code System.out})
     * @param listener structured progress after every epoch
     */
    public WatchedTraining(Config config, PrintStream progress, Listener listener) {
        this.config = config;
        this.progress = progress;
        this.listener = listener;
    }

    /**
     * The demo's watched noisy-labels fine-tune: 512-wide MLP, 10% flipped labels, sampled-label
     * Fisher captures of fc1/fc2 every step, probes every 10 steps, weights every 20 steps,
     * BLOCK policy with 64 MiB in flight, published to {@code bootstrap} (null: offline).
     */
    public static Config noisyLabelsRun(String runId, String bootstrap, int epochs) {
        return new Config(runId, 1, 0.1, 512, epochs, 100, 1e-3f, 20, 10, true, 0, bootstrap,
                CapturePublisher.Policy.BLOCK, 64 << 20, null, null, null);
    }

    /** The run's generated data (32-d, 10 classes; 2000 train, 1000 test, 500 held-out probes). */
    public static NoisyLabelData data(Config c) {
        return NoisyLabelData.generate(c.seed(), 32, 10, 1.0, 2000, 1000, 500, c.noise());
    }

    /** The run's MLP at its seeded initialisation (32 → hidden → hidden → 10); the caller closes it. */
    public static Mlp model(Config c) {
        return new Mlp(c.seed() + 1, 32, c.hidden(), c.hidden(), 10);
    }

    public Map<String, Object> run() throws IOException {
        Config c = config;
        NoisyLabelData data = data(c);
        Map<String, Object> out = new LinkedHashMap<>();
        Random random = new Random(c.seed() + 11);
        Random tokenSampler = new Random(c.seed() + 13); // its own stream: a budget leaves training unchanged
        try (Mlp mlp = model(c);
             CapturePublisher publisher = c.bootstrap() == null ? null
                     : new CapturePublisher(c.bootstrap(), CurvewatchTopics.withDefaultPrefix(), c.policy(),
                     c.inFlightBytes())) {
            if (c.initWeights() != null) {
                loadWeights(mlp, c.initWeights());
                progress.println("loaded weights from " + c.initWeights());
            }
            Map<Integer, FactorAccumulator[]> factors = new LinkedHashMap<>();
            for (int l : WATCHED) {
                factors.put(l, new FactorAccumulator[] {FactorAccumulator.cumulative(mlp.inDim(l), Precision.FLOAT64),
                        FactorAccumulator.cumulative(mlp.outDim(l), Precision.FLOAT64)});
            }
            FisherKind fisher = c.sampledFisher() ? FisherKind.SAMPLED : FisherKind.EMPIRICAL;
            if (publisher != null) {
                List<LayerInfo> layers = new ArrayList<>();
                for (int l : WATCHED) {
                    layers.add(LayerInfo.newBuilder().setName(Mlp.layerName(l)).setDIn(mlp.inDim(l))
                            .setDOut(mlp.outDim(l)).setTransposed(false).setHasBias(true).build());
                }
                Map<String, String> cfg = new LinkedHashMap<>();
                cfg.put("seed", String.valueOf(c.seed()));
                cfg.put("noise", String.valueOf(c.noise()));
                cfg.put("lr", String.valueOf(c.lr()));
                cfg.put("batch", String.valueOf(c.batch()));
                cfg.put("tokens_per_step", String.valueOf(c.tokensPerStep()));
                publisher.publishRun(RunInfo.newBuilder().setRunId(c.runId()).setModel("mlp-32-" + c.hidden() + "-"
                                + c.hidden() + "-10").setSource("djl-trainer").setCreatedMs(System.currentTimeMillis())
                        .setLayers(layers).setFisher(fisher).setWeightsEvery(c.weightsEvery()).setConfig(cfg).build());
            }
            int n = data.train().n();
            int[] order = new int[n];
            for (int i = 0; i < n; i++) {
                order[i] = i;
            }
            long step = 0;
            long captureNanos = 0;
            long trainNanos = 0;
            for (int epoch = 0; epoch < c.epochs(); epoch++) {
                Metrics.shuffle(order, random);
                for (int start = 0; start < n; start += c.batch()) {
                    int m = Math.min(c.batch(), n - start);
                    float[] x = new float[m * 32];
                    int[] y = new int[m];
                    String[] ids = new String[m];
                    for (int k = 0; k < m; k++) {
                        int idx = order[start + k];
                        System.arraycopy(data.train().x(), idx * 32, x, k * 32, 32);
                        y[k] = data.trainLabels()[idx];
                        ids[k] = "train-" + idx;
                    }
                    long t0 = System.nanoTime();
                    Mlp.StepResult r = mlp.forwardBackward(x, y, m, Set.of(0, 1));
                    mlp.adam(r, c.lr());
                    long t1 = System.nanoTime();
                    trainNanos += t1 - t0;
                    List<LayerCapture> caps = r.captures();
                    if (c.sampledFisher()) {
                        float[] logits = mlp.logits(x, m);
                        int[] sampled = new int[m];
                        for (int k = 0; k < m; k++) {
                            sampled[k] = Metrics.sampleFromLogits(logits, k * 10, 10, random);
                        }
                        caps = mlp.forwardBackward(x, sampled, m, Set.of(0, 1)).captures();
                    }
                    // token budget: the same random rows of every watched layer, so a and g stay paired per example
                    int[] keep = c.tokensPerStep() > 0 && m > c.tokensPerStep()
                            ? sampleRows(m, c.tokensPerStep(), tokenSampler) : null;
                    String[] keptIds = keep == null ? ids : select(ids, keep);
                    float[] keptLosses = keep == null ? r.perExampleLoss() : select(r.perExampleLoss(), keep);
                    for (LayerCapture full : caps) {
                        LayerCapture cap = keep == null ? full : full.rows(keep);
                        factors.get(cap.layer())[0].add(step, cap.a(), cap.tokens());
                        factors.get(cap.layer())[1].add(step, cap.g(), cap.tokens());
                        if (publisher != null) {
                            publisher.publishCapture(c.runId(), Mlp.layerName(cap.layer()), step, cap, keptIds,
                                    keptLosses, false, fisher, m);
                        }
                    }
                    if (publisher != null && c.probeEvery() > 0 && step % c.probeEvery() == 0) {
                        publishProbes(publisher, mlp, data, step);
                    }
                    if (publisher != null && c.weightsEvery() > 0 && step % c.weightsEvery() == 0) {
                        for (int l : WATCHED) {
                            publisher.publishWeights(c.runId(), Mlp.layerName(l), step, mlp.weight(l), mlp.outDim(l),
                                    mlp.inDim(l), mlp.bias(l));
                        }
                    }
                    captureNanos += System.nanoTime() - t1;
                    step++;
                }
                int[] pred = Metrics.argmax(mlp.logits(data.train().x(), n), n, 10);
                int[] predTest = Metrics.argmax(mlp.logits(data.test().x(), data.test().n()), data.test().n(), 10);
                EpochProgress ep = new EpochProgress(c.runId(), epoch + 1, c.epochs(), step,
                        Metrics.agreement(pred, data.trainLabels(), data.flipped(), true),
                        Metrics.agreement(predTest, data.test().y(), null, true),
                        publisher == null ? 0 : publisher.sent(), publisher == null ? 0 : publisher.dropped());
                progress.printf("epoch %d/%d step %d: flipped memorized %.3f, test accuracy %.4f%s%n", ep.epoch(),
                        ep.epochs(), ep.step(), ep.flippedMemorized(), ep.testAccuracy(),
                        publisher == null ? "" : String.format(", published %d records, dropped %d",
                                ep.published(), ep.dropped()));
                listener.onEpoch(ep);
            }
            out.put("steps", step);
            out.put("train_ms", trainNanos / 1e6);
            out.put("capture_and_publish_ms", captureNanos / 1e6);
            if (publisher != null) {
                publisher.flush();
                out.put("published_records", publisher.sent());
                out.put("published_bytes", publisher.sentBytes());
                out.put("dropped_captures", publisher.dropped());
                out.put("failed_records", publisher.failed());
            }
            Map<String, Object> spectra = new LinkedHashMap<>();
            for (int l : WATCHED) {
                FactorAccumulator[] ag = factors.get(l);
                SpectrumSummary a = SpectrumSummary.of(SymmetricEigensolvers.best()
                        .decompose(ag[0].mean(), ag[0].dim(), Precision.FLOAT64).orThrow().values());
                SpectrumSummary g = SpectrumSummary.of(SymmetricEigensolvers.best()
                        .decompose(ag[1].mean(), ag[1].dim(), Precision.FLOAT64).orThrow().values());
                spectra.put(Mlp.layerName(l), Map.of("A", a, "G", g, "tokens", ag[0].tokenCount()));
                progress.printf("%s in-process factors over %d tokens: A %s%n  G %s%n", Mlp.layerName(l),
                        ag[0].tokenCount(), a, g);
            }
            out.put("spectra", spectra);
            if (c.saveFactors() != null) {
                SafetensorsWriter fw = new SafetensorsWriter();
                fw.metadata(Map.of("curvewatch.run", c.runId(), "curvewatch.step", String.valueOf(step),
                        "curvewatch.fisher", fisher.toString()));
                for (int l : WATCHED) {
                    FactorAccumulator[] ag = factors.get(l);
                    fw.addFloat64(Mlp.layerName(l) + ".A", new long[] {ag[0].dim(), ag[0].dim()}, ag[0].mean());
                    fw.addFloat64(Mlp.layerName(l) + ".G", new long[] {ag[1].dim(), ag[1].dim()}, ag[1].mean());
                }
                fw.write(c.saveFactors());
                progress.println("saved factors to " + c.saveFactors());
            }
            if (c.saveWeights() != null) {
                saveWeights(mlp, c.saveWeights(), c.runId(), step);
                progress.println("saved weights to " + c.saveWeights());
            }
        }
        return out;
    }

    private void publishProbes(CapturePublisher publisher, Mlp mlp, NoisyLabelData data, long step) {
        NoisyLabelData.Split p = data.probes();
        int m = Math.min(100, p.n());
        float[] x = new float[m * 32];
        System.arraycopy(p.x(), 0, x, 0, m * 32);
        int[] y = new int[m];
        System.arraycopy(p.y(), 0, y, 0, m);
        String[] ids = new String[m];
        for (int k = 0; k < m; k++) {
            ids[k] = "probe-" + k;
        }
        Mlp.StepResult r = mlp.forwardBackward(x, y, m, Set.of(0, 1));
        for (LayerCapture cap : r.captures()) {
            publisher.publishCapture(config.runId(), Mlp.layerName(cap.layer()), step, cap, ids, r.perExampleLoss(),
                    true, FisherKind.EMPIRICAL, m);
        }
    }

    /** Loads {@code fc<l>.weight} (and {@code fc<l>.bias} if present) for every layer found in the file. */
    public static void loadWeights(Mlp mlp, Path file) throws IOException {
        try (SafetensorsFile f = SafetensorsFile.open(file)) {
            for (int l = 0; l < mlp.layers(); l++) {
                String name = Mlp.layerName(l);
                if (f.tensor(name + ".weight").isPresent()) {
                    mlp.setWeight(l, f.readFloat32(name + ".weight"));
                }
                if (f.tensor(name + ".bias").isPresent()) {
                    float[] b = f.readFloat32(name + ".bias");
                    System.arraycopy(b, 0, mlp.bias(l), 0, mlp.bias(l).length);
                }
            }
        }
    }

    /** Writes every layer as {@code fc<l>.weight} (d_out x d_in, F32) and {@code fc<l>.bias}. */
    public static void saveWeights(Mlp mlp, Path file, String runId, long step) throws IOException {
        SafetensorsWriter w = new SafetensorsWriter();
        w.metadata(Map.of("curvewatch.run", runId, "curvewatch.step", String.valueOf(step)));
        for (int l = 0; l < mlp.layers(); l++) {
            w.addFloat32(Mlp.layerName(l) + ".weight", new long[] {mlp.outDim(l), mlp.inDim(l)}, mlp.weight(l));
            w.addFloat32(Mlp.layerName(l) + ".bias", new long[] {mlp.outDim(l)}, mlp.bias(l));
        }
        w.write(file);
    }

    /** {@code k} distinct rows of {@code n}, ascending (a partial Fisher–Yates shuffle). */
    static int[] sampleRows(int n, int k, Random random) {
        int[] idx = new int[n];
        for (int i = 0; i < n; i++) {
            idx[i] = i;
        }
        for (int i = 0; i < k; i++) {
            int j = i + random.nextInt(n - i);
            int t = idx[i];
            idx[i] = idx[j];
            idx[j] = t;
        }
        int[] keep = java.util.Arrays.copyOf(idx, k);
        java.util.Arrays.sort(keep);
        return keep;
    }

    private static String[] select(String[] values, int[] keep) {
        String[] out = new String[keep.length];
        for (int i = 0; i < keep.length; i++) {
            out[i] = values[keep[i]];
        }
        return out;
    }

    private static float[] select(float[] values, int[] keep) {
        if (values == null) {
            return null;
        }
        float[] out = new float[keep.length];
        for (int i = 0; i < keep.length; i++) {
            out[i] = values[keep[i]];
        }
        return out;
    }
}
