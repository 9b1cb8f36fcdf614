package dev.curvewatch.cli;

import dev.curvewatch.avro.GuardDecision;
import dev.curvewatch.service.CurvewatchService;

import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;

/**
 * Holds the demo's training (asked before every epoch, {@link dev.curvewatch.trainer.experiments.WatchedTraining.Observer#holdBeforeEpoch}):
 * through the clean epochs, in step with the service, so that by epoch {@code holdAt} (the injection,
 * or the same epoch in the clean control) it has the clean baseline its alert rule compares with
 * ({@link #BASELINE} calibrated refreshes per layer), on a fast or a loaded machine alike; and at
 * the end of the run until the guard has looked at the final weights.
 *
 * <p>Why in step, not once at {@code holdAt}: refreshes are paced by new training data, so a
 * service that has calibrated everything published cannot calibrate again while training waits. A
 * single hold at the injection therefore waited out its deadline whenever the trainer had outrun
 * the service (CI, 2026-12-03: 4 of 5 after 180 s). Asking for a share of the baseline every few
 * epochs ({@code BASELINE * epoch / holdAt}, rounded down) always leaves new data to calibrate.
 */
final class DemoTrainingHold {
    private static final int BASELINE = 5;
    private static final long BASELINE_WAIT_MS = 120_000;
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
    private long heldMs;
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
     * Holds training before a clean epoch until every layer has its share of the clean baseline
     * (all of it before epoch {@code holdAt}); the trainer keeps answering candidates meanwhile (on
     * the training thread, every 50 ms). Gives up on a hold after {@link #BASELINE_WAIT_MS}.
     */
    boolean holdBeforeEpoch(int epoch) {
        if (epoch == totalEpochs) {
            return holdAtTheEnd();
        }
        if (baselineReady || epoch > holdAt) {
            return false;
        }
        int need = BASELINE * epoch / holdAt;
        long now = System.currentTimeMillis();
        if (waitingSinceMs < 0) {
            waitingSinceMs = now;
        }
        int fewest = Integer.MAX_VALUE;
        for (String layer : layers) {
            fewest = Math.min(fewest, service.state().signal(run, layer, "memorization_gap").size());
        }
        boolean gaveUp = now - waitingSinceMs > BASELINE_WAIT_MS;
        if (fewest < need && !gaveUp) {
            return true;
        }
        heldMs += now - waitingSinceMs;
        waitingSinceMs = -1;
        if (epoch == holdAt) {
            baselineReady = true;
            System.out.printf("      clean baseline: %d calibrated refreshes per layer (training held %.1f s in all for it%s)%n",
                    fewest, heldMs / 1e3, gaveUp ? ", then gave up waiting" : "");
        } else if (gaveUp) {
            System.out.printf("      epoch %d: %d of %d calibrated refreshes per layer after %.0f s, training goes on%n", epoch, fewest,
                    need, BASELINE_WAIT_MS / 1e3);
        }
        return false;
    }

    /**
     * Holds the end of the run (final weights published, not yet saved) until the guard has looked at
     * them (asked for at once, {@link CurvewatchService#refreshNow}): every layer calibrated on the final
     * weights (or on the snapshot applied last), no edit
     * waiting to be applied, and both true for {@link #END_SETTLE_MS} (an alert on the last
     * calibration reaches the guard a moment later). What the demo then scores is the model the run
     * ends with, under the guard.
     */
    private boolean holdAtTheEnd() {
        long now = System.currentTimeMillis();
        if (endSinceMs < 0) {
            endSinceMs = now;
            // step pacing skips a candidate of weights only a few steps newer than the last one's: ask for the final ones
            service.refreshNow(run);
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
