package dev.curvewatch.service.internal;

import dev.curvewatch.avro.ExampleScore;
import dev.curvewatch.avro.FactorManifest;
import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.curvature.Eigenbasis;
import dev.curvewatch.curvature.SpectrumSummary;
import dev.curvewatch.schemas.WeightAssembler;
import dev.curvewatch.service.DeadLetterSummary;
import dev.curvewatch.service.LayerStatus;

import java.util.List;

/**
 * Everything the service holds for one run/layer: one weight, the latest eigenbases, the newest
 * manifest, outstanding candidates (one is sent at a time; at most {@link #MAX_OUTSTANDING} are
 * kept), the calibration and the top scores. Bounded by construction. Guarded by its own lock:
 * the ingest thread, refresh threads, the edit thread and HTTP handlers all read or write it.
 *
 * <p>Over 400 lines with its comments (about 280 of code): every field here is guarded by the one
 * lock, and the comments state which thread may touch what; splitting it would split that lock's
 * invariants across classes.
 */
public final class LayerState {
    public static final int MAX_OUTSTANDING = 4;
    public static final int TOP_SCORES = 200;

    /**
     * A consistent copy of what an edit needs.
     *
     * @param noRhoBecause why there is no calibrated rho (meaningful only while {@code calibratedRho} is NaN)
     * @param probeCosts   the probe costs of the calibration that gave {@code calibratedRho}; null when unknown (none yet, or from the history)
     */
    public record EditView(int dIn, int dOut, WeightAssembler.Assembled weight, Eigenbasis g, Eigenbasis a, long basesVersion,
                           double calibratedRho, long factorVersion, boolean refreshPending, String noRhoBecause, JointEdit.Curve probeCosts) {
    }

    /** A consistent copy of what a refresh needs and did. */
    public record Bases(Eigenbasis g, Eigenbasis a, long version, long step, SpectrumSummary spectrumG, SpectrumSummary spectrumA) {
    }

    /** The status and the bases of one moment, taken under one lock (a layer event never pairs vN's status with vN+1's spectra). */
    public record View(LayerStatus status, Bases bases) {
    }

    /**
     * How a layer paces itself: candidates ({@link CandidatePacer}) and refreshes, which need the
     * factors to cover at least {@code refreshMinSteps} trainer steps more than the last refresh's.
     */
    public record Pacing(CandidatePacer.Settings candidates, long refreshMinSteps) {
        /** Every new manifest may refresh, every refresh may send a candidate (while none is out). */
        public static final Pacing NONE = new Pacing(CandidatePacer.Settings.NONE, 0);
    }

    /** Valid calibrations in a row at the same grid edge before the layer status warns. */
    public static final int EDGE_WARNING_AFTER = CalibrationRecord.EDGE_WARNING_AFTER;

    private final String runId;
    private final String layer;
    private final Pacing pacing;
    private final CandidateFlow candidates;
    private int dIn;
    private int dOut;
    private boolean hasBias;
    private boolean registered;

    private FactorManifest manifest;
    private long manifestSeenNanos;
    private long refreshedVersion = -1;
    private long refreshedStep = Long.MIN_VALUE;
    private long historyRefreshVersion = -1;
    private boolean inFlight;
    private boolean force;
    private long forcedAtNanos;
    /** A forced refresh's candidate is not paced: whoever asked wants the calibrated signal of the weights now. */
    private boolean forcedCandidate;
    private long lastStartNanos = Long.MIN_VALUE / 2;
    private long lastRefreshMs;
    private int refreshes;
    private int failures;
    private String status = "waiting for factors";
    private String lastFailure;
    private Bases bases;
    private boolean tooLarge;

    private final CalibrationRecord calibration = new CalibrationRecord();

    private final DeadLetterStats deadLetters = new DeadLetterStats();
    private WeightAssembler.Assembled weight;

    /** A layer without pacing ({@link Pacing#NONE}). */
    public LayerState(String runId, String layer) {
        this(runId, layer, Pacing.NONE);
    }

    public LayerState(String runId, String layer, Pacing pacing) {
        this.runId = runId;
        this.layer = layer;
        this.pacing = pacing;
        this.candidates = new CandidateFlow(pacing.candidates());
    }

    public String runId() {
        return runId;
    }

    public String layer() {
        return layer;
    }

    public String key() {
        return runId + "/" + layer;
    }

    public synchronized void register(LayerInfo info) {
        dIn = info.getDIn();
        dOut = info.getDOut();
        hasBias = info.getHasBias();
        registered = true;
    }

    /**
     * Why factors of these sides cannot be this layer's, or null: the run registered it with
     * other sides (e.g. re-registered after the manifest arrived).
     */
    public synchronized String sidesMismatch(int factorDIn, int factorDOut) {
        if (registered && (factorDIn != dIn || factorDOut != dOut)) {
            return "factors are d_in=" + factorDIn + " d_out=" + factorDOut + " but the run registers the layer as d_in=" + dIn
                    + " d_out=" + dOut;
        }
        return null;
    }

    // ---- factors and refreshes -------------------------------------------------------------

    /** A new "factors ready" manifest. */
    public synchronized void manifest(FactorManifest m, long seenNanos) {
        manifest = m;
        manifestSeenNanos = seenNanos;
        if (!registered) {
            dIn = m.getDIn();
            dOut = m.getDOut();
        }
    }

    public synchronized FactorManifest manifest() {
        return manifest;
    }

    /** The highest factor version a refresh signal of the service's own history carries (restart). */
    public synchronized void historyRefreshed(long version) {
        historyRefreshVersion = Math.max(historyRefreshVersion, version);
    }

    /**
     * A refresh should start now: a newer manifest (or a forced one), none in flight, the interval
     * passed, and the factors {@link Pacing#refreshMinSteps} trainer steps ahead of the last refresh.
     */
    public synchronized boolean due(long nowNanos, long intervalNanos) {
        if (manifest == null || inFlight) {
            return false;
        }
        boolean newer = manifest.getVersion() > refreshedVersion;
        if (force) {
            return true;
        }
        boolean stepsAhead = refreshedStep == Long.MIN_VALUE || manifest.getStepLast() - refreshedStep >= pacing.refreshMinSteps();
        return newer && stepsAhead && nowNanos - lastStartNanos >= intervalNanos;
    }

    /**
     * When the refresh about to start was asked for: the newest manifest's arrival, or the
     * POST refresh when it is a forced refresh of factors already refreshed.
     */
    public synchronized long requestedNanos() {
        return force && manifest != null && manifest.getVersion() <= refreshedVersion ? forcedAtNanos : manifestSeenNanos;
    }

    /**
     * Marks a refresh started (in flight until {@link #finished}); returns whether it should stay
     * silent (already published before a restart).
     */
    public synchronized boolean start(long nowNanos) {
        inFlight = true;
        force = false;
        lastStartNanos = nowNanos;
        status = "refreshing v" + manifest.getVersion();
        return manifest.getVersion() <= historyRefreshVersion && bases == null;
    }

    /** A refresh marked started could not be handed to a refresh thread (the service is stopping). */
    public synchronized void notStarted(String why) {
        inFlight = false;
        status = "refresh not started: " + why;
    }

    /**
     * The refresh in flight is over, its signals and candidate published (or it failed): only
     * now may the next one start, so a newer refresh never publishes before an older one.
     */
    public synchronized void finished() {
        inFlight = false;
    }

    public synchronized Bases bases() {
        return bases;
    }

    /** The refresh succeeded; it stays in flight until {@link #finished}. */
    public synchronized void refreshed(LayerRefresh.Outcome o, long nowMs) {
        refreshes++;
        refreshedVersion = Math.max(refreshedVersion, o.input().factorVersion());
        refreshedStep = Math.max(refreshedStep, o.input().step());
        lastRefreshMs = nowMs;
        bases = new Bases(o.g(), o.a(), o.input().factorVersion(), o.input().step(), o.spectrumG(), o.spectrumA());
        candidates.references.refreshed(o.keptG(), o.keptA());
        tooLarge = o.tooLarge();
        status = o.tooLarge() ? "refreshed v" + o.input().factorVersion() + "; calibration=too_large"
                : "refreshed v" + o.input().factorVersion();
    }

    /** The refresh failed (a value, with the reason); it stays in flight until {@link #finished}. */
    public synchronized void failed(LayerRefresh.Input in, String reason, long nowMs) {
        failures++;
        refreshedVersion = Math.max(refreshedVersion, in.factorVersion());
        refreshedStep = Math.max(refreshedStep, in.step());
        lastRefreshMs = nowMs;
        lastFailure = reason;
        status = "refresh failed at v" + in.factorVersion() + ": " + reason;
    }

    /**
     * POST refresh: refresh at the next opportunity even without a newer manifest, and send that
     * refresh's candidate whatever the pacing says (e.g. at the end of a run, to calibrate its
     * final weights, which step pacing would skip when the last candidate is only a few steps old).
     */
    public synchronized void forceRefresh() {
        forcedCandidate = true;
        if (!force) {
            force = true;
            forcedAtNanos = System.nanoTime();
        }
    }

    // ---- calibration -----------------------------------------------------------------------

    /**
     * After a successful refresh of factors up to {@code step} with basis drift {@code drift} (NaN
     * on a first refresh): whether its candidate may go out ({@link CandidatePacer}); when not, the
     * reason is kept for the status.
     */
    public synchronized CandidatePacer.Decision candidateDecision(long step, double drift) {
        boolean forced = forcedCandidate && !force;  // force is cleared when the forced refresh starts
        forcedCandidate &= !forced;
        return candidates.decide(step, drift, forced);
    }

    /**
     * A candidate is sent; the oldest outstanding ones beyond the bound are dropped (superseded).
     * Returns how its bases travel, given the leading columns each needs ({@link BasisReferences}).
     */
    public synchronized BasisReferences.Shipment sent(PendingCandidate c, int[] neededColumns, boolean compact) {
        candidates.sent(c);
        status = "calibrating v" + c.factorVersion();
        return candidates.references.ship(c.id(), neededColumns[0], neededColumns[1], dOut, dIn, compact);
    }

    /**
     * The newest bases, marked in flight, when a refresh owes them a candidate (it was deferred while
     * the previous one was out, which has now ended) and nothing else runs; else null. The caller
     * sends the candidate on a refresh thread and calls {@link #finished}.
     */
    public synchronized Bases startOwedCandidate() {
        if (inFlight || bases == null || !candidates.takeOwed()) {
            return null;
        }
        inFlight = true;
        return bases;
    }

    /** Whether a candidate is out and neither answered nor timed out. */
    /** The candidate sent last and still out, or null (what a taker of the run needs, {@link Handover}). */
    public synchronized PendingCandidate newestOutstanding() {
        return candidates.newest();
    }

    /** A candidate the run's previous owner had out (a takeover): its answer is calibrated here. */
    public synchronized void restoreOutstanding(PendingCandidate c) {
        candidates.restored(c);
    }

    public synchronized boolean awaitingAnswer() {
        return candidates.awaiting();
    }

    /**
     * Kafka refused the candidate: it is not outstanding (its answer can never come, so it must
     * not count as a calibration timeout or hold back the next one).
     */
    public synchronized void candidateNotSent(String candidateId, String why) {
        if (candidates.remove(candidateId)) {
            status = "candidate not sent: " + why;
        }
    }

    public synchronized PendingCandidate outstanding(String candidateId) {
        return candidates.outstanding(candidateId);
    }

    /** The candidate an answer is for: one out, or one that timed out lately (a late answer is still a measurement). */
    public synchronized PendingCandidate answerable(String candidateId) {
        return candidates.answerable(candidateId);
    }

    /** The candidate was answered: it and every older outstanding candidate are done. */
    public synchronized boolean answered(PendingCandidate c) {
        if (c.factorVersion() < calibration.version) {
            return false;
        }
        candidates.answered(c);
        return true;
    }

    /**
     * The trainer declined the candidate (e.g. its answer-time budget is spent): the calibration
     * ends now, and the layer backs off ({@link CandidatePacer#declinedOrTimedOut}). False when the
     * candidate is no longer out.
     */
    public synchronized boolean declined(PendingCandidate c, String why) {
        if (!candidates.declined(c)) {
            return false;
        }
        status = "candidate declined at v" + c.factorVersion() + ": " + why;
        return true;
    }

    /** An answer to this outstanding candidate was refused (a dead letter): no other answer will come, so it is no longer out. */
    public synchronized void answerRejected(PendingCandidate c, String why) {
        if (candidates.remove(c.id())) {
            status = "answer to v" + c.factorVersion() + " refused: " + why;
        }
    }

    public synchronized long calibratedVersion() {
        return calibration.version;
    }

    /**
     * The calibration of an answered candidate. A valid one becomes the layer's calibrated rho,
     * kept pairs and scores; an invalid one changes none of them and says why in the status.
     *
     * @param measuredStep the step of the model the trainer measured (the ProbeResult's)
     */
    public synchronized void calibrated(PendingCandidate c, Calibration.Outcome o, long measuredStep) {
        status = calibration.apply(c, o, measuredStep);
    }

    /** Why the latest calibration is not usable (null: it is, or there is none). */
    public synchronized String calibrationProblem() {
        return calibration.problem;
    }

    /** A warning when the calibrated rho has sat at a grid edge for {@link #EDGE_WARNING_AFTER} valid calibrations in a row. */
    public synchronized String warning() {
        return calibration.warning();
    }

    /** The calibrated rho from the service's own history (restart). */
    public synchronized void calibratedFromHistory(long version, double rho) {
        calibration.fromHistory(version, rho);
    }

    /**
     * A kept_pairs signal from the history (restart): the kept pairs of the calibration of that
     * factor version, whichever of it and calibrated_rho is read first.
     */
    public synchronized void keptPairsFromHistory(long version, long kept) {
        calibration.keptPairsFromHistory(version, kept);
    }

    /** Removes candidates older than the timeout; returns them. */
    public synchronized List<PendingCandidate> expire(long nowMs, long timeoutMs) {
        List<PendingCandidate> out = candidates.expire(nowMs, timeoutMs);
        if (!out.isEmpty()) {
            status = "calibration timed out at v" + out.get(out.size() - 1).factorVersion();
        }
        return out;
    }

    public synchronized int calibrationTimeouts() {
        return candidates.timeouts;
    }

    public synchronized double calibratedRho() {
        return calibration.rho;
    }

    public synchronized List<ExampleScore> topExact() {
        return calibration.topExact;
    }

    public synchronized List<ExampleScore> topLoss() {
        return calibration.topLoss;
    }

    /** Top PEAK scores (memorization score at the calibrated rho) of the latest valid calibration with an edit. */
    public synchronized List<ExampleScore> topPeak() {
        return calibration.topPeak;
    }

    /** The examples an alert names: by memorization score (PEAK) when the latest calibration had them, else EXACT. */
    public synchronized List<ExampleScore> topForAlerts() {
        return calibration.topPeak.isEmpty() ? calibration.topExact : calibration.topPeak;
    }

    public synchronized long scoresStep() {
        return calibration.scoresStep;
    }

    public synchronized double scoresRho() {
        return calibration.scoresRho;
    }

    // ---- dead letters ----------------------------------------------------------------------

    /** A dead letter of this layer (its captures, factors, weights, ...), read from topic dead-letters. */
    public void deadLetter(String topic, String code, String reason, String component, long failedMs) {
        deadLetters.add(topic, code, reason, component, failedMs);
    }

    // ---- weights and edits -----------------------------------------------------------------

    public synchronized void weight(WeightAssembler.Assembled w) {
        weight = w;
    }

    public synchronized EditView editView() {
        return new EditView(dIn, dOut, weight, bases == null ? null : bases.g(), bases == null ? null : bases.a(),
                bases == null ? -1 : bases.version(), calibration.rho, manifest == null ? -1 : manifest.getVersion(),
                manifest != null && (inFlight || manifest.getVersion() > refreshedVersion), noRhoBecause(), calibration.curve);
    }

    private String noRhoBecause() {
        if (tooLarge) {
            return "its EditCandidate would exceed candidate.max.bytes, so it is never calibrated (calibration=too_large)";
        }
        if (calibration.problem != null) {
            return calibration.problem;
        }
        return candidates.sent == 0 ? "no candidate sent yet (" + status + ")" : "no valid answer to its candidates yet (" + status + ")";
    }

    /** Status and bases together, under one lock. */
    public synchronized View view() {
        return new View(status(), bases);
    }

    /**
     * The status; a layer without factors whose records were dead-lettered says so rather than
     * "waiting for factors" (issue 11: every capture of a layer was refused and nothing said why).
     */
    public synchronized LayerStatus status() {
        DeadLetterSummary dl = deadLetters.summary();
        String shown = manifest == null && dl.total() > 0
                ? "no factors: " + dl.total() + " dead letter(s), the latest from " + dl.lastTopic() + ": "
                        + (dl.lastReason().startsWith(dl.lastReasonCode()) ? "" : dl.lastReasonCode() + ": ") + dl.lastReason()
                : status;
        return new LayerStatus(runId, layer, dIn, dOut, hasBias, manifest == null ? -1 : manifest.getVersion(),
                manifest == null ? 0 : manifest.getTokenCount(), refreshedVersion, bases == null ? -1 : bases.step(), calibration.rho,
                calibration.version, calibration.keptPairs, shown, lastFailure, lastRefreshMs, refreshes, failures, candidates.sent,
                candidates.timeouts, weight == null ? -1 : weight.step(), calibration.valid, calibration.problem, calibration.warning(),
                candidates.declined, candidates.backoff(), candidates.paced, dl);
    }

}
