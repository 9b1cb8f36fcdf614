package dev.curvewatch.trainer.experiments;

import dev.curvewatch.avro.FisherKind;
import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.avro.RunStatus;
import dev.curvewatch.curvature.Precision;
import dev.curvewatch.curvature.SpectrumSummary;
import dev.curvewatch.curvature.SymmetricEigensolvers;
import dev.curvewatch.curvature.safetensors.SafetensorsWriter;
import dev.curvewatch.trainer.CandidateResponder;
import dev.curvewatch.trainer.CapturePublisher;
import dev.curvewatch.trainer.LayerCapture;
import dev.curvewatch.trainer.SnapshotFollower;

import java.io.IOException;
import java.io.PrintStream;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;

/**
 * One run of {@link WatchedTraining}: the model, its data and what watches it (publisher,
 * candidate responder, snapshot follower; each null when the run has none), and the loop over
 * epochs and steps with its counters. {@link WatchedTraining} opens and closes the parts; this
 * trains with them.
 */
final class WatchedRun {
    static final int[] WATCHED = {0, 1};
    private static final Set<Integer> WATCHED_SET = Set.of(0, 1);
    private static final int DIM = 32;
    private static final int CLASSES = 10;

    /** The Kafka side of a run; any part may be null (offline, not answering, not following). */
    record Watchers(CapturePublisher publisher, CandidateResponder responder, SnapshotFollower follower) {
    }

    private final WatchedTraining owner;
    private final WatchedTraining.Config c;
    private final NoisyLabelData data;
    private final Mlp mlp;
    private final NoisyLabelsEvaluator evaluator;
    private final CapturePublisher publisher;
    private final CandidateResponder responder;
    private final SnapshotFollower follower;
    private final PrintStream progress;
    private final WatchedTraining.Listener listener;
    private final Random random;
    private final Random tokenSampler;
    private final FisherKind fisher;
    private final Map<Integer, SampledFisher.Factors> factors = new LinkedHashMap<>();
    private final int[] order;
    private RunInfo registered; // as announced at the start (RUNNING); the end announces FINISHED or FAILED
    private long step;
    private long captureNanos;
    private long trainNanos;
    private long loopNanos;
    private long loopFailures;
    private Long injectedAtStep;
    private boolean stopped;

    WatchedRun(WatchedTraining owner, WatchedTraining.Config c, NoisyLabelData data, Mlp mlp,
               NoisyLabelsEvaluator evaluator, Watchers watchers, PrintStream progress, WatchedTraining.Listener listener) {
        this.owner = owner;
        this.c = c;
        this.data = data;
        this.mlp = mlp;
        this.evaluator = evaluator;
        this.publisher = watchers.publisher();
        this.responder = watchers.responder();
        this.follower = watchers.follower();
        this.progress = progress;
        this.listener = listener;
        this.random = new Random(c.seed() + 11);
        this.tokenSampler = new Random(c.seed() + 13); // its own stream: a budget leaves training unchanged
        this.fisher = c.sampledFisher() ? FisherKind.SAMPLED : FisherKind.EMPIRICAL;
        for (int l : WATCHED) {
            factors.put(l, SampledFisher.Factors.of(mlp, l));
        }
        int n = data.train().n();
        this.order = new int[n];
        for (int i = 0; i < n; i++) {
            order[i] = i;
        }
        this.injectedAtStep = c.injectNoiseAtEpoch() == 0 ? Long.valueOf(0) : null;
    }

    /** Trains every epoch (or until stopped), then publishes the final weights and writes the summary into {@code out}. */
    void train(Map<String, Object> out) throws IOException {
        register();
        if (c.injectNoiseAtEpoch() > 0) {
            progress.printf("training on the true labels for %d epochs, then on %d flipped labels (%.0f%%)%s%n",
                    c.injectNoiseAtEpoch(), data.flippedCount(), 100.0 * data.flippedCount() / data.train().n(),
                    c.injectNoiseAtEpoch() >= c.epochs() ? ": after the last epoch, so never" : "");
        }
        for (int epoch = 0; epoch < c.epochs() && !stopped; epoch++) {
            holdBefore(epoch);
            if (owner.stopRequested()) {
                stopped = true;
                progress.println("stop requested while holding before epoch " + (epoch + 1) + ": ending after step " + (step - 1));
                break;
            }
            int[] labels = labelsFor(epoch);
            trainEpoch(epoch, labels);
            if (stopped) {
                break;
            }
            reportEpoch(epoch, labels);
        }
        long last = step - 1;
        publishFinalWeights(last);
        // the end of the run is "before epoch c.epochs()": an observer may hold it too, e.g. until the live guard
        // has looked at the final weights; candidates are answered and snapshots applied meanwhile
        long endHoldNanos = System.nanoTime();
        if (!stopped && last >= 0) {
            holdAtEnd(last);
        }
        out.put("end_hold_ms", (System.nanoTime() - endHoldNanos) / 1e6);
        out.put("steps", step);
        out.put("stopped_early", stopped);
        out.put("noise_injected_at_epoch", c.injectNoiseAtEpoch());
        out.put("noise_injected_at_step", injectedAtStep);
        out.put("train_ms", trainNanos / 1e6);
        out.put("capture_and_publish_ms", captureNanos / 1e6);
        out.put("between_steps_ms", loopNanos / 1e6);
        out.put("between_steps_failures", loopFailures);
        out.put("spectra", spectra());
        if (c.saveFactors() != null) {
            saveFactors();
        }
    }

    /** The run registry's lifecycle (DESIGN §5 runs): the registration again with its final status. */
    void announce(RunStatus status) {
        if (publisher != null && registered != null) {
            publisher.publishRun(RunInfo.newBuilder(registered).setStatus(status).build());
        }
    }

    private void register() {
        if (publisher == null) {
            return;
        }
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
        cfg.put("inject_noise_at_epoch", String.valueOf(c.injectNoiseAtEpoch()));
        cfg.put("answers_candidates", String.valueOf(responder != null));
        cfg.put("applies_snapshots", String.valueOf(follower != null && c.applySnapshots()));
        registered = RunInfo.newBuilder().setRunId(c.runId()).setModel("mlp-32-" + c.hidden() + "-"
                        + c.hidden() + "-10").setSource("djl-trainer").setCreatedMs(System.currentTimeMillis())
                .setLayers(layers).setFisher(fisher).setWeightsEvery(c.weightsEvery()).setConfig(cfg).build();
        publisher.publishRun(registered);
    }

    /** Waits while the observer holds epoch {@code epoch} (not before the first step), working between steps. */
    private void holdBefore(int epoch) {
        while (step > 0 && !owner.stopRequested() && owner.observer().holdBeforeEpoch(epoch)) {
            long t = System.nanoTime();
            loopFailures += betweenSteps(step - 1) ? 0 : 1;
            loopNanos += System.nanoTime() - t;
            pause();
        }
    }

    private void holdAtEnd(long last) {
        while (!owner.stopRequested() && owner.observer().holdBeforeEpoch(c.epochs())) {
            loopFailures += betweenSteps(last) ? 0 : 1;
            pause();
        }
    }

    private void pause() {
        try {
            Thread.sleep(50);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            owner.stop();
        }
    }

    /** The labels in force in {@code epoch}; tells the evaluator (and the log) when they change. */
    private int[] labelsFor(int epoch) {
        int[] labels = data.labelsForEpoch(epoch, c.injectNoiseAtEpoch());
        if (labels != evaluator.labels()) {
            evaluator.labels(labels);
            injectedAtStep = step;
            progress.printf("epoch %d, step %d: memorization injected: %d of %d training labels are flipped from now on%n",
                    epoch + 1, step, data.flippedCount(), order.length);
        }
        return labels;
    }

    private void trainEpoch(int epoch, int[] labels) {
        int n = order.length;
        Metrics.shuffle(order, random);
        for (int start = 0; start < n; start += c.batch()) {
            step(epoch, labels, start, Math.min(c.batch(), n - start));
            step++;
            if (owner.stopRequested()) {
                stopped = true;
                progress.println("stop requested: ending after step " + (step - 1));
                return;
            }
        }
    }

    /** One step on the batch {@code order[start .. start + m)}: train, capture, publish, then the between-steps work. */
    private void step(int epoch, int[] labels, int start, int m) {
        float[] x = new float[m * DIM];
        int[] y = new int[m];
        int[] idxs = new int[m];
        String[] ids = new String[m];
        for (int k = 0; k < m; k++) {
            int idx = order[start + k];
            System.arraycopy(data.train().x(), idx * DIM, x, k * DIM, DIM);
            y[k] = labels[idx];
            idxs[k] = idx;
            ids[k] = "train-" + idx;
        }
        long t0 = System.nanoTime();
        Mlp.StepResult r = mlp.forwardBackward(x, y, m, WATCHED_SET);
        mlp.adam(r, c.lr());
        long t1 = System.nanoTime();
        trainNanos += t1 - t0;
        List<LayerCapture> caps = c.sampledFisher()
                ? SampledFisher.captures(mlp, x, m, CLASSES, WATCHED_SET, random) : r.captures();
        // token budget: the same random rows of every watched layer, so a and g stay paired per example
        int[] keep = c.tokensPerStep() > 0 && m > c.tokensPerStep()
                ? WatchedTraining.sampleRows(m, c.tokensPerStep(), tokenSampler) : null;
        String[] keptIds = keep == null ? ids : select(ids, keep);
        float[] keptLosses = keep == null ? r.perExampleLoss() : select(r.perExampleLoss(), keep);
        for (LayerCapture full : caps) {
            LayerCapture cap = keep == null ? full : full.rows(keep);
            factors.get(cap.layer()).add(step, cap);
            if (publisher != null) {
                publisher.publishCapture(c.runId(), Mlp.layerName(cap.layer()), step, cap, keptIds,
                        keptLosses, false, fisher, m);
            }
        }
        if (publisher != null && c.probeEvery() > 0 && step % c.probeEvery() == 0) {
            publishProbes();
        }
        if (publisher != null && c.weightsEvery() > 0 && step % c.weightsEvery() == 0) {
            publishWeights(step);
        }
        long t2 = System.nanoTime();
        captureNanos += t2 - t1;
        evaluator.trained(idxs);
        owner.observer().stepTrained(step, epoch, idxs, labels);
        loopFailures += betweenSteps(step) ? 0 : 1;
        loopNanos += System.nanoTime() - t2;
    }

    /** Snapshots first, so an answer after an applied snapshot measures the edited model; false when it failed (training goes on). */
    private boolean betweenSteps(long afterStep) {
        try {
            if (follower != null) {
                follower.poll(afterStep);
            }
            if (responder != null) {
                responder.poll(afterStep);
            }
            return true;
        } catch (RuntimeException e) {
            progress.println("between steps after step " + afterStep + ": " + e + " (training goes on)");
            return false;
        }
    }

    private void reportEpoch(int epoch, int[] labels) {
        int n = order.length;
        int[] pred = Metrics.argmax(mlp.logits(data.train().x(), n), n, CLASSES);
        int[] predTest = Metrics.argmax(mlp.logits(data.test().x(), data.test().n()), data.test().n(), CLASSES);
        WatchedTraining.EpochProgress ep = new WatchedTraining.EpochProgress(c.runId(), epoch + 1, c.epochs(), step,
                Metrics.agreement(pred, data.trainLabels(), data.flipped(), true),
                Metrics.agreement(predTest, data.test().y(), null, true),
                publisher == null ? 0 : publisher.sent(), publisher == null ? 0 : publisher.dropped(),
                labels == data.trainLabels());
        progress.printf("epoch %d/%d step %d: flipped memorized %.3f, test accuracy %.4f%s%n", ep.epoch(),
                ep.epochs(), ep.step(), ep.flippedMemorized(), ep.testAccuracy(),
                publisher == null ? "" : String.format(", published %d records, dropped %d",
                        ep.published(), ep.dropped()));
        listener.onEpoch(ep);
    }

    /** The final weights too, so an edit requested after the run edits what the run ended with. */
    private void publishFinalWeights(long last) {
        if (publisher != null && c.weightsEvery() > 0 && last > 0 && last % c.weightsEvery() != 0) {
            publishWeights(last);
        }
    }

    private void publishWeights(long atStep) {
        for (int l : WATCHED) {
            publisher.publishWeights(c.runId(), Mlp.layerName(l), atStep, mlp.weight(l), mlp.outDim(l), mlp.inDim(l),
                    mlp.bias(l));
        }
    }

    private void publishProbes() {
        NoisyLabelData.Split p = data.probes();
        int m = Math.min(100, p.n());
        float[] x = new float[m * DIM];
        System.arraycopy(p.x(), 0, x, 0, m * DIM);
        int[] y = new int[m];
        System.arraycopy(p.y(), 0, y, 0, m);
        String[] ids = new String[m];
        for (int k = 0; k < m; k++) {
            ids[k] = "probe-" + k;
        }
        Mlp.StepResult r = mlp.forwardBackward(x, y, m, WATCHED_SET);
        for (LayerCapture cap : r.captures()) {
            publisher.publishCapture(c.runId(), Mlp.layerName(cap.layer()), step, cap, ids, r.perExampleLoss(),
                    true, FisherKind.EMPIRICAL, m);
        }
    }

    private Map<String, Object> spectra() {
        Map<String, Object> spectra = new LinkedHashMap<>();
        for (int l : WATCHED) {
            SampledFisher.Factors ag = factors.get(l);
            if (ag.a().tokenCount() == 0) {
                continue; // stopped before the first step
            }
            SpectrumSummary a = SpectrumSummary.of(SymmetricEigensolvers.best()
                    .decompose(ag.a().mean(), ag.a().dim(), Precision.FLOAT64).orThrow().values());
            SpectrumSummary g = SpectrumSummary.of(SymmetricEigensolvers.best()
                    .decompose(ag.g().mean(), ag.g().dim(), Precision.FLOAT64).orThrow().values());
            spectra.put(Mlp.layerName(l), Map.of("A", a, "G", g, "tokens", ag.a().tokenCount()));
            progress.printf("%s in-process factors over %d tokens: A %s%n  G %s%n", Mlp.layerName(l),
                    ag.a().tokenCount(), a, g);
        }
        return spectra;
    }

    private void saveFactors() throws IOException {
        SafetensorsWriter fw = new SafetensorsWriter();
        fw.metadata(Map.of("curvewatch.run", c.runId(), "curvewatch.step", String.valueOf(step),
                "curvewatch.fisher", fisher.toString()));
        for (int l : WATCHED) {
            SampledFisher.Factors ag = factors.get(l);
            fw.addFloat64(Mlp.layerName(l) + ".A", new long[] {ag.a().dim(), ag.a().dim()}, ag.a().mean());
            fw.addFloat64(Mlp.layerName(l) + ".G", new long[] {ag.g().dim(), ag.g().dim()}, ag.g().mean());
        }
        fw.write(c.saveFactors());
        progress.println("saved factors to " + c.saveFactors());
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
