package dev.curvewatch.service.internal;

/**
 * When a layer's next EditCandidate may go out, in trainer steps and basis drift rather than
 * wall-clock time (issue 11: refreshes paced by the clock gave a slow trainer more candidates per
 * step, and every answer slowed it further). A candidate is sent when none is out (the caller's
 * check), and:
 * <ul>
 *   <li>the factors moved on at least {@code minSteps × 2^backoff} trainer steps since the last
 *       candidate's factors, where {@code backoff} rises by one with every declined or unanswered
 *       candidate (at most {@link #MAX_BACKOFF}) and falls by one with every answer; and</li>
 *   <li>the bases drifted since then: the summed drift of the refreshes since the last candidate
 *       (max of G's and A's) reaches {@code minDrift}, or {@code maxSteps} steps have passed (the
 *       weights change even when the bases do not, and the gap is about the weights).</li>
 * </ul>
 * The first candidate of a layer goes out at once. Pure; its owner ({@link LayerState}) locks it.
 */
public final class CandidatePacer {
    /** The step gap doubles at most this many times (64 × minSteps). */
    public static final int MAX_BACKOFF = 6;

    /** The pacing settings ({@code calibration.min.steps}, {@code calibration.max.steps}, {@code calibration.min.drift}). */
    public record Settings(long minSteps, long maxSteps, double minDrift) {
        public Settings {
            if (minSteps < 0 || maxSteps < minSteps || !(minDrift >= 0)) {
                throw new IllegalArgumentException("need 0 <= minSteps <= maxSteps and minDrift >= 0, got " + minSteps + ", " + maxSteps
                        + ", " + minDrift);
            }
        }

        /** No pacing: a candidate with every refresh while none is out (tests of the round trip). */
        public static final Settings NONE = new Settings(0, 0, 0);
    }

    /** Whether to send now, and if not, why (for the layer status). */
    public record Decision(boolean send, String why) {
        static final Decision SEND = new Decision(true, null);
    }

    private final Settings settings;
    private long lastStep = Long.MIN_VALUE;
    private double driftSince;
    private int backoff;

    public CandidatePacer(Settings settings) {
        this.settings = settings;
    }

    /** A refresh of factors up to trainer step {@code step}, its drift (NaN on a first refresh): may it send a candidate? */
    public Decision refreshed(long step, double drift) {
        return refreshed(step, drift, false);
    }

    /**
     * {@link #refreshed(long, double)}; a forced refresh (POST refresh: someone wants the calibrated
     * signal of the weights as they are now, e.g. a run's final ones) sends whenever its factors are
     * newer than the last candidate's, however few steps newer: the same step again would ask the
     * trainer the same question.
     */
    public Decision refreshed(long step, double drift, boolean forced) {
        if (!Double.isNaN(drift)) {
            driftSince += drift;
        }
        if (lastStep == Long.MIN_VALUE || forced && step > lastStep) {
            return Decision.SEND;
        }
        long steps = step - lastStep;
        long need = requiredSteps();
        if (steps < need) {
            return new Decision(false, "paced: " + steps + " of " + need + " trainer steps since the last candidate"
                    + (backoff > 0 ? " (backed off x" + (1L << backoff) + " after declined or unanswered candidates)" : ""));
        }
        if (driftSince < settings.minDrift() && steps < settings.maxSteps()) {
            return new Decision(false, String.format("paced: bases drifted %.2g since the last candidate (< %s), %d of %d steps",
                    driftSince, settings.minDrift(), steps, settings.maxSteps()));
        }
        return Decision.SEND;
    }

    /** Steps the factors must move on before the next candidate, with the back-off applied. */
    public long requiredSteps() {
        return settings.minSteps() << backoff;
    }

    public int backoff() {
        return backoff;
    }

    /** A candidate of factors up to {@code step} went out. */
    public void sent(long step) {
        lastStep = step;
        driftSince = 0;
    }

    /** The trainer answered (valid or not): it keeps up, so the back-off eases. */
    public void answered() {
        backoff = Math.max(0, backoff - 1);
    }

    /** The trainer declined a candidate, or left it unanswered: fewer candidates per step from now on. */
    public void declinedOrTimedOut() {
        backoff = Math.min(MAX_BACKOFF, backoff + 1);
    }
}
