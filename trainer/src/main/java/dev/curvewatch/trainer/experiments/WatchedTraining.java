package dev.curvewatch.trainer.experiments;

import dev.curvewatch.trainer.CandidateResponder;
import dev.curvewatch.trainer.CapturePublisher;
import dev.curvewatch.trainer.EditEvaluator;
import dev.curvewatch.trainer.LayerShape;
import dev.curvewatch.trainer.SnapshotFollower;
import dev.curvewatch.trainer.SnapshotStore;

import dev.curvewatch.avro.EditCandidate;
import dev.curvewatch.avro.ProbeResult;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.avro.RunStatus;
import dev.curvewatch.curvature.safetensors.SafetensorsFile;
import dev.curvewatch.curvature.safetensors.SafetensorsWriter;
import dev.curvewatch.schemas.CurvewatchTopics;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Random;

/**
 * A watched fine-tune (the {@code curvewatch train} command): the noisy-label MLP trained with
 * capture of its hidden layers (fc1, fc2) at every step, published to Kafka (RunInfo, Capture per
 * layer per step, held-out probe captures, WeightSnapshot every N steps), or, without a broker,
 * accumulated into K-FAC factors in-process. Can start from a safetensors snapshot (e.g. the
 * output of {@code curvewatch edit}) and save its final weights as safetensors.
 *
 * <p>With a broker, between steps it also answers the service's edit candidates
 * ({@link CandidateResponder}, SERVICE-CONTRACT §1) and follows edited snapshots
 * ({@link SnapshotFollower}: verified, and with {@code applySnapshots} loaded into the model so
 * training continues from them). The flipped labels can be injected mid-run
 * ({@code injectNoiseAtEpoch}): clean labels before that epoch, flipped ones from it on.
 *
 * <p>About 400 lines, a third of them the run's {@link Config} record and its named presets (the
 * CLI's and the demo's runs); the training loop itself is {@link WatchedRun}.
 */
public final class WatchedTraining {

    /** Training examples per epoch / batch: 2000 generated examples in batches of {@code batch}. */
    public static final int TRAIN_EXAMPLES = 2000;

    /**
     * @param injectNoiseAtEpoch epochs trained on the true labels before the flipped ones take over
     *                           (0: flipped from the start, the plain noisy-label run)
     * @param answerCandidates   with a broker: answer edit candidates with probe results
     * @param snapshotDir        with a broker: the snapshot store whose edited snapshots are followed (null: none)
     * @param applySnapshots     load verified snapshots into the model (needs {@code snapshotDir})
     */
    public record Config(String runId, long seed, double noise, int hidden, int epochs, int batch, float lr,
                         int weightsEvery, int probeEvery, boolean sampledFisher, int tokensPerStep, String bootstrap,
                         CapturePublisher.Policy policy, int inFlightBytes, Path initWeights, Path saveWeights,
                         Path saveFactors, int injectNoiseAtEpoch, boolean answerCandidates, Path snapshotDir,
                         boolean applySnapshots) {
        public Config {
            if (tokensPerStep < 0) {
                throw new IllegalArgumentException("tokens per step must be >= 0 (0 = all), got " + tokensPerStep);
            }
            if (injectNoiseAtEpoch < 0) {
                throw new IllegalArgumentException("noise injection epoch must be >= 0 (0 = noisy from the start), got "
                        + injectNoiseAtEpoch);
            }
            if (applySnapshots && snapshotDir == null) {
                throw new IllegalArgumentException("applying snapshots needs a snapshot directory (--snapshot-dir)");
            }
        }

        /** The configuration before mid-run injection and the loop: noisy from the start, answering candidates. */
        public Config(String runId, long seed, double noise, int hidden, int epochs, int batch, float lr,
                      int weightsEvery, int probeEvery, boolean sampledFisher, int tokensPerStep, String bootstrap,
                      CapturePublisher.Policy policy, int inFlightBytes, Path initWeights, Path saveWeights,
                      Path saveFactors) {
            this(runId, seed, noise, hidden, epochs, batch, lr, weightsEvery, probeEvery, sampledFisher, tokensPerStep,
                    bootstrap, policy, inFlightBytes, initWeights, saveWeights, saveFactors, 0, true, null, false);
        }

        /** The same run, writing its final weights and in-process factors to these files (null: not written). */
        public Config saving(Path weights, Path factors) {
            return new Config(runId, seed, noise, hidden, epochs, batch, lr, weightsEvery, probeEvery, sampledFisher,
                    tokensPerStep, bootstrap, policy, inFlightBytes, initWeights, weights, factors, injectNoiseAtEpoch,
                    answerCandidates, snapshotDir, applySnapshots);
        }

        /** The same run on clean labels for {@code epoch} epochs, then on the flipped labels (0: flipped throughout). */
        public Config withNoiseInjectedAt(int epoch) {
            return new Config(runId, seed, noise, hidden, epochs, batch, lr, weightsEvery, probeEvery, sampledFisher,
                    tokensPerStep, bootstrap, policy, inFlightBytes, initWeights, saveWeights, saveFactors, epoch,
                    answerCandidates, snapshotDir, applySnapshots);
        }

        /** The same run, answering (or not) the service's edit candidates when it has a broker. */
        public Config answeringCandidates(boolean answer) {
            return new Config(runId, seed, noise, hidden, epochs, batch, lr, weightsEvery, probeEvery, sampledFisher,
                    tokensPerStep, bootstrap, policy, inFlightBytes, initWeights, saveWeights, saveFactors,
                    injectNoiseAtEpoch, answer, snapshotDir, applySnapshots);
        }

        /** The same run, following the edited snapshots of store {@code dir} (null: none), loading them if {@code apply}. */
        public Config followingSnapshots(Path dir, boolean apply) {
            return new Config(runId, seed, noise, hidden, epochs, batch, lr, weightsEvery, probeEvery, sampledFisher,
                    tokensPerStep, bootstrap, policy, inFlightBytes, initWeights, saveWeights, saveFactors,
                    injectNoiseAtEpoch, answerCandidates, dir, apply);
        }

        /** Steps per epoch: the training set in batches. */
        public int stepsPerEpoch() {
            return (TRAIN_EXAMPLES + batch - 1) / batch;
        }
    }

    /**
     * Progress after each epoch, for callers that show it (the demo); {@code published}/{@code dropped}
     * are 0 offline; {@code flippedLabels}: this epoch trained on the flipped labels.
     */
    public record EpochProgress(String runId, int epoch, int epochs, long step, double flippedMemorized,
                                double testAccuracy, long published, long dropped, boolean flippedLabels) {
    }

    /**
     * Everything that happens between steps, on the training thread (for demos that narrate it and
     * for tests). {@code model} is the live model: read (copy) it inside the call, never keep it.
     */
    public interface Observer {
        /** After step {@code step} (epoch 0-based): the training-set indices of its batch and the labels in force. */
        default void stepTrained(long step, int epoch, int[] exampleIndices, int[] labels) {
        }

        /**
         * Asked before epoch {@code epoch} (0-based) starts, again every 50 ms while it answers true:
         * training waits, the between-steps work (answering candidates, following snapshots) goes on.
         * For a demo that waits until the service has seen enough of the run; {@link #stop()} ends a hold.
         * {@code epoch} = the number of epochs is the end of the run, after the final weights were
         * published and before they are saved (a demo waits there for the live guard's last look).
         */
        default boolean holdBeforeEpoch(int epoch) {
            return false;
        }

        /**
         * A candidate's answer was handed to the publisher (which sent or dropped it; not called when
         * it threw); {@code model} is the frozen copy it measured (taken after step
         * {@code result.getStep()}), {@code trainLabels} the training labels then in force. An
         * exception thrown by this or any other callback is logged and counted, never retried.
         */
        default void candidateAnswered(EditCandidate candidate, ProbeResult result, Mlp model, int[] trainLabels) {
        }

        default void candidateSkipped(EditCandidate candidate, String why) {
        }

        default void candidateRefused(String candidateId, String reason, String message) {
        }

        /** A snapshot was loaded; {@code model} holds its weights now. */
        default void snapshotApplied(SnapshotFollower.Applied applied, Mlp model) {
        }

        default void snapshotRefused(String snapshotId, String reason, String message) {
        }
    }

    /** Called on the training thread after every epoch; keep it quick. */
    @FunctionalInterface
    public interface Listener {
        void onEpoch(EpochProgress progress);
    }

    private final Config config;
    private final PrintStream progress;
    private final Listener listener;
    private volatile Observer observer = new Observer() { };
    private volatile boolean stopRequested;

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

    /** Observes what happens between steps (see {@link Observer}); set before {@link #run()}. */
    public WatchedTraining observe(Observer o) {
        this.observer = o;
        return this;
    }

    /**
     * Asks a running {@link #run()} to end after the step in progress (from any thread); the
     * summary then says {@code stopped_early}. For live demos and tests that train "until done".
     */
    public void stop() {
        stopRequested = true;
    }

    /**
     * The demo's watched noisy-labels fine-tune: 512-wide MLP, 10% flipped labels, sampled-label
     * Fisher captures of fc1/fc2 every step, probes every 10 steps, weights every 20 steps,
     * BLOCK policy with 64 MiB in flight, published to {@code bootstrap} (null: offline); with a
     * broker it answers edit candidates. Snapshots: {@link Config#followingSnapshots}.
     */
    public static Config noisyLabelsRun(String runId, String bootstrap, int epochs) {
        return new Config(runId, 1, 0.1, 512, epochs, 100, 1e-3f, 20, 10, true, 0, bootstrap,
                CapturePublisher.Policy.BLOCK, 64 << 20, null, null, null, 0, true, null, false);
    }

    /**
     * {@link #noisyLabelsRun} with memorization injected mid-run, for a live demo: the true labels
     * for the first {@code injectAt} epochs, then the 10% flipped labels (from step
     * {@code injectAt * 20} on), so the memorization gap jumps while the run is watched.
     */
    public static Config memorizationRun(String runId, String bootstrap, int epochs, int injectAt) {
        if (injectAt < 1) {
            throw new IllegalArgumentException("inject the noise after at least one clean epoch, got " + injectAt);
        }
        return noisyLabelsRun(runId, bootstrap, epochs).withNoiseInjectedAt(injectAt);
    }

    /** The run's generated data (32-d, 10 classes; 2000 train, 1000 test, 500 held-out probes). */
    public static NoisyLabelData data(Config c) {
        return NoisyLabelData.generate(c.seed(), 32, 10, 1.0, TRAIN_EXAMPLES, 1000, 500, c.noise());
    }

    /** The run's MLP at its seeded initialisation (32 → hidden → hidden → 10); the caller closes it. */
    public static Mlp model(Config c) {
        return new Mlp(c.seed() + 1, 32, c.hidden(), c.hidden(), 10);
    }

    public Map<String, Object> run() throws IOException {
        Config c = config;
        NoisyLabelData data = data(c);
        Map<String, Object> out = new LinkedHashMap<>();
        CurvewatchTopics topics = CurvewatchTopics.withDefaultPrefix();
        try (Mlp mlp = model(c);
             CapturePublisher publisher = c.bootstrap() == null ? null
                     : new CapturePublisher(c.bootstrap(), topics, c.policy(), c.inFlightBytes())) {
            if (c.initWeights() != null) {
                loadWeights(mlp, c.initWeights());
                progress.println("loaded weights from " + c.initWeights());
            }
            NoisyLabelsEvaluator evaluator = new NoisyLabelsEvaluator(mlp, data, List.of(0, 1),
                    data.labelsForEpoch(0, c.injectNoiseAtEpoch()));
            try (CandidateResponder responder = publisher == null || !c.answerCandidates() ? null
                         : responder(c, evaluator, mlp, publisher);
                 SnapshotFollower follower = publisher == null || c.snapshotDir() == null ? null
                         : follower(c, evaluator, mlp).reportingTo(publisher::publishGuardDecision)) {
                // both tails are positioned at the end before the run is announced, so nothing sent for it is missed
                if (responder != null) {
                    responder.tail(c.bootstrap(), topics);
                }
                if (follower != null) {
                    follower.tail(c.bootstrap(), topics);
                }
                WatchedRun run = new WatchedRun(this, c, data, mlp, evaluator,
                        new WatchedRun.Watchers(publisher, responder, follower), progress, listener);
                try {
                    run.train(out);
                } catch (RuntimeException | Error e) {
                    run.announce(RunStatus.FAILED);
                    throw e;
                }
                run.announce(RunStatus.FINISHED);
                if (responder != null) {
                    responder.close(java.time.Duration.ofSeconds(60)); // publishes an answer still being scored
                    out.putAll(responder.summary());
                } else {
                    out.put("answering_candidates", false);
                }
                if (follower != null) {
                    out.put("snapshot_dir", c.snapshotDir().toString());
                    out.put("applying_snapshots", c.applySnapshots());
                    out.putAll(follower.summary());
                } else {
                    out.put("following_snapshots", false);
                }
            }
            if (publisher != null) {
                publisher.flush();
                out.put("published_records", publisher.sent());
                out.put("published_bytes", publisher.sentBytes());
                out.put("dropped_captures", publisher.dropped());
                out.put("dropped_probe_results", publisher.droppedProbeResults());
                out.put("failed_records", publisher.failed());
            }
            if (c.saveWeights() != null) {
                saveWeights(mlp, c.saveWeights(), c.runId(), (Long) out.get("steps"));
                progress.println("saved weights to " + c.saveWeights());
            }
        }
        return out;
    }

    boolean stopRequested() {
        return stopRequested;
    }

    Observer observer() {
        return observer;
    }

    private CandidateResponder responder(Config c, NoisyLabelsEvaluator evaluator, Mlp mlp, CapturePublisher publisher) {
        return new CandidateResponder(c.runId(), evaluator, publisher::publishProbeResult, progress,
                new CandidateResponder.Events() {
                    @Override
                    public void candidateAnswered(EditCandidate candidate, ProbeResult result,
                                                  EditEvaluator.Session measured) {
                        NoisyLabelsEvaluator.MlpSession s = (NoisyLabelsEvaluator.MlpSession) measured;
                        observer.candidateAnswered(candidate, result, s.model(), s.trainLabels());
                    }

                    @Override
                    public void candidateSkipped(EditCandidate candidate, String why) {
                        observer.candidateSkipped(candidate, why);
                    }

                    @Override
                    public void candidateRefused(String candidateId, String reason, String message) {
                        observer.candidateRefused(candidateId, reason, message);
                    }
                });
    }

    private SnapshotFollower follower(Config c, NoisyLabelsEvaluator evaluator, Mlp mlp) throws IOException {
        Files.createDirectories(c.snapshotDir());
        SnapshotFollower.Target target = new SnapshotFollower.Target() {
            @Override
            public Optional<LayerShape> layer(String name) {
                return evaluator.layer(name);
            }

            @Override
            public void load(String layer, float[] weight, float[] bias) {
                int l = Integer.parseInt(layer.substring(2)) - 1; // "fc<l+1>", a watched layer by now
                mlp.setWeight(l, weight);
                if (bias != null) {
                    System.arraycopy(bias, 0, mlp.bias(l), 0, mlp.bias(l).length);
                }
            }
        };
        return new SnapshotFollower(c.runId(), new SnapshotStore(c.snapshotDir()), target, c.applySnapshots(), progress,
                new SnapshotFollower.Events() {
                    @Override
                    public void snapshotApplied(SnapshotFollower.Applied applied) {
                        observer.snapshotApplied(applied, mlp);
                    }

                    @Override
                    public void snapshotRefused(String snapshotId, String reason, String message) {
                        observer.snapshotRefused(snapshotId, reason, message);
                    }
                });
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
}
