package dev.curvewatch.cli;

import dev.curvewatch.avro.Alert;
import dev.curvewatch.avro.GuardAction;
import dev.curvewatch.avro.GuardDecision;
import dev.curvewatch.service.CurvewatchService;
import dev.curvewatch.trainer.experiments.Mlp;
import dev.curvewatch.trainer.SnapshotFollower;
import dev.curvewatch.trainer.experiments.WatchedTraining;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.OptionalDouble;
import java.util.Set;

/**
 * The demo's narration: after every epoch, the labels in force, memorization, the service's gap
 * per layer, and every new alert and guard decision. Before epoch {@code holdAt} (the injection, or
 * the same epoch in the clean control) it holds training until the service has the clean baseline
 * its alert rule compares with ({@link #BASELINE} calibrated refreshes per layer), so the demo
 * shows the same thing on a fast or a loaded machine.
 */
final class DemoLiveLog implements WatchedTraining.Observer {
    private static final int BASELINE = 5;
    private static final long BASELINE_WAIT_MS = 180_000;
    private static final long END_WAIT_MS = 180_000;
    private static final long END_SETTLE_MS = 3_000;
    private final CurvewatchService service;
    private final String run;
    private final List<String> layers;
    private final int holdAt;
    private final int totalEpochs;
    private long lastStep = -1;
    private long endSinceMs = -1;
    private long settledSinceMs = -1;
    private final Set<String> printedAlerts = new LinkedHashSet<>();
    private final Set<String> printedDecisions = new LinkedHashSet<>();
    private long waitingSinceMs = -1;
    private boolean baselineReady;
    final List<Map<String, Object>> applied = new ArrayList<>();
    final List<Map<String, Object>> epochs = new ArrayList<>();

    DemoLiveLog(CurvewatchService service, String run, List<String> layers, int holdAt, int totalEpochs) {
        this.service = service;
        this.run = run;
        this.layers = List.copyOf(layers);
        this.holdAt = holdAt;
        this.totalEpochs = totalEpochs;
    }

    /**
     * Holds training before epoch {@code holdAt} until every layer has its clean baseline; the
     * trainer keeps answering candidates meanwhile (on the training thread, every 50 ms).
     */
    @Override
    public boolean holdBeforeEpoch(int epoch) {
        if (epoch == totalEpochs) {
            return holdAtTheEnd();
        }
        if (baselineReady || epoch != holdAt) {
            return false;
        }
        long now = System.currentTimeMillis();
        if (waitingSinceMs < 0) {
            waitingSinceMs = now;
        }
        int fewest = Integer.MAX_VALUE;
        for (String layer : layers) {
            fewest = Math.min(fewest, service.state().signal(run, layer, "memorization_gap").size());
        }
        if (fewest >= BASELINE || now - waitingSinceMs > BASELINE_WAIT_MS) {
            baselineReady = true;
            System.out.printf("      clean baseline: %d calibrated refreshes per layer (training held %.1f s for it)%n", fewest,
                    (now - waitingSinceMs) / 1e3);
            return false;
        }
        return true;
    }

    /**
     * Holds the end of the run (final weights published, not yet saved) until the guard has looked at
     * them: every layer calibrated on the final weights (or on the snapshot applied last), no edit
     * waiting to be applied, and both true for {@link #END_SETTLE_MS} (an alert on the last
     * calibration reaches the guard a moment later). What the demo then scores is the model the run
     * ends with, under the guard.
     */
    private boolean holdAtTheEnd() {
        long now = System.currentTimeMillis();
        if (endSinceMs < 0) {
            endSinceMs = now;
        }
        long since = lastStep;
        Set<String> requested = new LinkedHashSet<>();
        Set<String> answered = new LinkedHashSet<>();
        for (GuardDecision d : service.guardDecisions(run)) {
            if (d.getIdempotencyKey() == null) {
                continue;
            }
            switch (d.getAction()) {
                case EDIT, ESCALATE -> requested.add(d.getIdempotencyKey());
                case APPLIED -> {
                    answered.add(d.getIdempotencyKey());
                    since = Math.max(since, d.getStep());
                }
                case REFUSED, NOT_APPLIED -> answered.add(d.getIdempotencyKey());
                default -> { }
            }
        }
        boolean settled = answered.containsAll(requested);
        for (String layer : layers) {
            long s = since;
            settled &= service.state().signal(run, layer, "memorization_gap").stream().anyMatch(p -> p.step() >= s);
        }
        if (!settled) {
            settledSinceMs = -1;
        } else if (settledSinceMs < 0) {
            settledSinceMs = now;
        }
        boolean done = settled && now - settledSinceMs >= END_SETTLE_MS;
        if (done || now - endSinceMs > END_WAIT_MS) {
            printDecisions();
            System.out.printf("      end of the run: held %.1f s until the guard had looked at the final weights%s%n",
                    (now - endSinceMs) / 1e3, done ? "" : " (gave up waiting)");
            return false;
        }
        printDecisions();
        return true;
    }

    void epoch(WatchedTraining.EpochProgress p) {
        lastStep = p.step() - 1;
        StringBuilder gaps = new StringBuilder();
        Map<String, Object> e = new LinkedHashMap<>();
        e.put("epoch", p.epoch());
        e.put("step", p.step());
        e.put("flipped_labels", p.flippedLabels());
        e.put("flipped_memorized", p.flippedMemorized());
        e.put("test_accuracy", p.testAccuracy());
        for (String layer : layers) {
            OptionalDouble gap = service.state().latest(run, layer, "memorization_gap");
            OptionalDouble rho = service.state().latest(run, layer, "calibrated_rho");
            gaps.append(String.format("  %s gap %s rho %s", layer, gap.isPresent() ? String.format("%+.3f", gap.getAsDouble()) : "-",
                    rho.isPresent() ? String.format("%.5f", rho.getAsDouble()) : "-"));
            e.put(layer + "_gap", gap.isPresent() ? gap.getAsDouble() : null);
        }
        epochs.add(e);
        System.out.printf("      epoch %2d/%d %s: flipped memorized %.3f, test %.4f |%s%n", p.epoch(), p.epochs(),
                p.flippedLabels() ? "flipped labels" : "true labels   ", p.flippedMemorized(), p.testAccuracy(), gaps);
        for (Alert a : service.state().alerts()) {
            String key = a.getFingerprint() + "/" + a.getStatus() + "/" + a.getSeverity() + "/" + a.getFirstSeenMs();
            if (run.equals(a.getRunId()) && printedAlerts.add(key)) {
                System.out.printf("      ALERT %s %s %s: %s (rule %s, step %d)%n", a.getSeverity(), a.getStatus(),
                        a.getLayer(), a.getSummary(), a.getRule(), a.getStep());
            }
        }
        printDecisions();
        System.out.flush();
    }

    /** New guard decisions, one line each; the guard's waits (SKIP) in short. */
    void printDecisions() {
        for (GuardDecision d : service.guardDecisions(run)) {
            if (!printedDecisions.add(d.getId())) {
                continue;
            }
            String reason = d.getAction() == GuardAction.SKIP && d.getReason().length() > 110
                    ? d.getReason().substring(0, 110) + "..." : d.getReason();
            System.out.printf("      GUARD %-16s %s step %d (%s): %s%n", d.getAction(), d.getLayer() == null ? "-" : d.getLayer(),
                    d.getStep(), d.getSource().replaceFirst(":.*", ""), reason);
        }
    }

    @Override
    public void snapshotApplied(SnapshotFollower.Applied a, Mlp model) {
        applied.add(a.toMap());
        System.out.printf("      SNAPSHOT %s applied after step %d: %s (edited at step %d), training continues from it%n",
                a.snapshotId(), a.atStep(), a.rhos(), a.snapshotStep());
    }

    @Override
    public void snapshotRefused(String snapshotId, String reason, String message) {
        System.out.printf("      snapshot %s refused: %s %s%n", snapshotId, reason, message);
    }
}
