package dev.curvewatch.cli;

import dev.curvewatch.avro.GuardDecision;
import dev.curvewatch.service.CurvewatchService;

import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;

/**
 * Holds the demo's training (asked before every epoch, {@link dev.curvewatch.trainer.experiments.WatchedTraining.Observer#holdBeforeEpoch}):
 * before epoch {@code holdAt} (the injection, or the same epoch in the clean control) until the
 * service has the clean baseline its alert rule compares with ({@link #BASELINE} calibrated
 * refreshes per layer), so the demo shows the same thing on a fast or a loaded machine; and at the
 * end of the run until the guard has looked at the final weights.
 */
final class DemoTrainingHold {
    private static final int BASELINE = 5;
    private static final long BASELINE_WAIT_MS = 180_000;
    private static final long END_WAIT_MS = 180_000;
    private static final long END_SETTLE_MS = 3_000;
    private final CurvewatchService service;
    private final String run;
    private final List<String> layers;
    private final int holdAt;
    private final int totalEpochs;
    private final DemoNarration narration;
    private long endSinceMs = -1;
    private long settledSinceMs = -1;
    private long waitingSinceMs = -1;
    private boolean baselineReady;

    DemoTrainingHold(CurvewatchService service, String run, List<String> layers, int holdAt, int totalEpochs,
                     DemoNarration narration) {
        this.service = service;
        this.run = run;
        this.layers = List.copyOf(layers);
        this.holdAt = holdAt;
        this.totalEpochs = totalEpochs;
        this.narration = narration;
    }

    /**
     * Holds training before epoch {@code holdAt} until every layer has its clean baseline; the
     * trainer keeps answering candidates meanwhile (on the training thread, every 50 ms).
     */
    boolean holdBeforeEpoch(int epoch) {
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
        long since = narration.lastStep();
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
            narration.printDecisions();
            System.out.printf("      end of the run: held %.1f s until the guard had looked at the final weights%s%n",
                    (now - endSinceMs) / 1e3, done ? "" : " (gave up waiting)");
            return false;
        }
        narration.printDecisions();
        return true;
    }

}
