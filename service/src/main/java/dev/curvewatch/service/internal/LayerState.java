package dev.curvewatch.service.internal;

import dev.curvewatch.avro.ExampleScore;
import dev.curvewatch.avro.FactorManifest;
import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.curvature.Eigenbasis;
import dev.curvewatch.curvature.SpectrumSummary;
import dev.curvewatch.schemas.WeightAssembler;
import dev.curvewatch.service.LayerStatus;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;

/**
 * Everything the service holds for one run/layer: one weight, the latest eigenbases, the newest
 * manifest, outstanding candidates (one is sent at a time; at most {@link #MAX_OUTSTANDING} are
 * kept), the calibration and the top scores. Bounded by construction. Guarded by its own lock:
 * the ingest thread, refresh threads, the edit thread and HTTP handlers all read or write it.
 */
public final class LayerState {
    public static final int MAX_OUTSTANDING = 4;
    public static final int TOP_SCORES = 200;

    /** A consistent copy of what an edit needs. */
    public record EditView(int dIn, int dOut, WeightAssembler.Assembled weight, Eigenbasis g, Eigenbasis a, long basesVersion,
                           double calibratedRho, long factorVersion, boolean refreshPending) {
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
    public static final int EDGE_WARNING_AFTER = 3;

    private final String runId;
    private final String layer;
    private final Pacing pacing;
    private final CandidatePacer pacer;
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
    private long lastStartNanos = Long.MIN_VALUE / 2;
    private long lastRefreshMs;
    private int refreshes;
    private int failures;
    private String status = "waiting for factors";
    private String lastFailure;
    private Bases bases;

    private final LinkedHashMap<String, PendingCandidate> outstanding = new LinkedHashMap<>();
    private long candidatesSent;
    private int calibrationTimeouts;
    private int candidatesDeclined;
    private String paced;
    private int calibrationValid = -1;
    private String calibrationProblem;
    private int edge;
    private int edgeRun;
    private long calibratedVersion = -1;
    private double calibratedRho = Double.NaN;
    private long keptPairs = -1;
    private long historyKeptVersion = -1;
    private long historyKept = -1;

    private WeightAssembler.Assembled weight;
    private List<ExampleScore> topExact = List.of();
    private List<ExampleScore> topLoss = List.of();
    private long scoresStep = -1;
    private double scoresRho = Double.NaN;

    /** A layer without pacing ({@link Pacing#NONE}). */
    public LayerState(String runId, String layer) {
        this(runId, layer, Pacing.NONE);
    }

    public LayerState(String runId, String layer, Pacing pacing) {
        this.runId = runId;
        this.layer = layer;
        this.pacing = pacing;
        this.pacer = new CandidatePacer(pacing.candidates());
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

    /** POST refresh: refresh at the next opportunity even without a newer manifest. */
    public synchronized void forceRefresh() {
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
        CandidatePacer.Decision d = pacer.refreshed(step, drift);
        if (!outstanding.isEmpty()) {
            // one candidate at a time per layer: a newer one would supersede the answer the trainer is computing now
            d = new CandidatePacer.Decision(false, "candidate " + outstanding.keySet().iterator().next() + " is still out");
        }
        paced = d.send() ? null : d.why();
        return d;
    }

    /** A candidate was sent; the oldest outstanding ones beyond the bound are dropped (superseded). */
    public synchronized void sent(PendingCandidate c) {
        outstanding.put(c.id(), c);
        candidatesSent++;
        pacer.sent(c.step());
        while (outstanding.size() > MAX_OUTSTANDING) {
            Iterator<String> it = outstanding.keySet().iterator();
            it.next();
            it.remove();
        }
        status = "calibrating v" + c.factorVersion();
    }

    /** Whether a candidate is out and neither answered nor timed out. */
    public synchronized boolean awaitingAnswer() {
        return !outstanding.isEmpty();
    }

    /**
     * Kafka refused the candidate: it is not outstanding (its answer can never come, so it must
     * not count as a calibration timeout or hold back the next one).
     */
    public synchronized void candidateNotSent(String candidateId, String why) {
        if (outstanding.remove(candidateId) != null) {
            status = "candidate not sent: " + why;
        }
    }

    public synchronized PendingCandidate outstanding(String candidateId) {
        return outstanding.get(candidateId);
    }

    /** The candidate was answered: it and every older outstanding candidate are done. */
    public synchronized boolean answered(PendingCandidate c) {
        if (c.factorVersion() < calibratedVersion) {
            return false;
        }
        outstanding.values().removeIf(o -> o.factorVersion() <= c.factorVersion());
        pacer.answered();
        return true;
    }

    /**
     * The trainer declined the candidate (e.g. its answer-time budget is spent): the calibration
     * ends now, and the layer backs off ({@link CandidatePacer#declinedOrTimedOut}). False when the
     * candidate is no longer out.
     */
    public synchronized boolean declined(PendingCandidate c, String why) {
        if (outstanding.remove(c.id()) == null) {
            return false;
        }
        candidatesDeclined++;
        pacer.declinedOrTimedOut();
        status = "candidate declined at v" + c.factorVersion() + ": " + why;
        return true;
    }

    /** An answer to this outstanding candidate was refused (a dead letter): no other answer will come, so it is no longer out. */
    public synchronized void answerRejected(PendingCandidate c, String why) {
        if (outstanding.remove(c.id()) != null) {
            status = "answer to v" + c.factorVersion() + " refused: " + why;
        }
    }

    public synchronized long calibratedVersion() {
        return calibratedVersion;
    }

    /**
     * The calibration of an answered candidate. A valid one becomes the layer's calibrated rho,
     * kept pairs and scores; an invalid one changes none of them and says why in the status.
     *
     * @param measuredStep the step of the model the trainer measured (the ProbeResult's)
     */
    public synchronized void calibrated(PendingCandidate c, Calibration.Outcome o, long measuredStep) {
        if (!o.valid()) {
            calibrationValid = 0;
            calibrationProblem = "calibration invalid at v" + c.factorVersion() + ": " + o.invalidReason();
            status = calibrationProblem;
            return;
        }
        calibrationValid = 1;
        calibrationProblem = null;
        edgeRun = o.rhoAtEdge() != 0 && o.rhoAtEdge() == edge ? edgeRun + 1 : o.rhoAtEdge() != 0 ? 1 : 0;
        edge = o.rhoAtEdge();
        calibratedVersion = c.factorVersion();
        calibratedRho = o.rho();
        keptPairs = o.keptPairs();
        topExact = top(o.exact());
        topLoss = top(o.loss());
        scoresStep = measuredStep;
        scoresRho = o.rho();
        status = "calibrated v" + c.factorVersion() + ": rho " + o.rho() + " (" + o.mode().name().toLowerCase(java.util.Locale.ROOT)
                + (o.flags().contains(Calibration.Flag.ACCURACY_SATURATED) ? ", accuracy saturated" : "")
                + (o.flags().contains(Calibration.Flag.NON_MONOTONE) ? ", non-monotone" : "") + ")";
    }

    /** Why the latest calibration is not usable (null: it is, or there is none). */
    public synchronized String calibrationProblem() {
        return calibrationProblem;
    }

    /** A warning when the calibrated rho has sat at a grid edge for {@link #EDGE_WARNING_AFTER} valid calibrations in a row. */
    public synchronized String warning() {
        if (edgeRun < EDGE_WARNING_AFTER) {
            return null;
        }
        return edge < 0
                ? "rho at the grid's most aggressive end for " + edgeRun + " calibrations in a row: the probes do not limit the edit "
                        + "within the grid (its true rho* may be lower)"
                : "no candidate rho kept the probes within tolerance for " + edgeRun + " calibrations in a row: no edit";
    }

    /** The calibrated rho from the service's own history (restart). */
    public synchronized void calibratedFromHistory(long version, double rho) {
        if (version >= calibratedVersion) {
            calibratedVersion = version;
            calibratedRho = rho;
            keptPairs = version == historyKeptVersion ? historyKept : -1;
        }
    }

    /**
     * A kept_pairs signal from the history (restart): the kept pairs of the calibration of that
     * factor version, whichever of it and calibrated_rho is read first.
     */
    public synchronized void keptPairsFromHistory(long version, long kept) {
        if (version >= historyKeptVersion) {
            historyKeptVersion = version;
            historyKept = kept;
        }
        if (version == calibratedVersion) {
            keptPairs = kept;
        }
    }

    /** Removes candidates older than the timeout; returns them. */
    public synchronized List<PendingCandidate> expire(long nowMs, long timeoutMs) {
        List<PendingCandidate> out = new ArrayList<>();
        outstanding.values().removeIf(c -> {
            if (nowMs - c.sentMs() > timeoutMs) {
                out.add(c);
                return true;
            }
            return false;
        });
        if (!out.isEmpty()) {
            calibrationTimeouts += out.size();
            pacer.declinedOrTimedOut();
            status = "calibration timed out at v" + out.get(out.size() - 1).factorVersion();
        }
        return out;
    }

    public synchronized int calibrationTimeouts() {
        return calibrationTimeouts;
    }

    public synchronized double calibratedRho() {
        return calibratedRho;
    }

    public synchronized List<ExampleScore> topExact() {
        return topExact;
    }

    public synchronized List<ExampleScore> topLoss() {
        return topLoss;
    }

    public synchronized long scoresStep() {
        return scoresStep;
    }

    public synchronized double scoresRho() {
        return scoresRho;
    }

    private static List<ExampleScore> top(List<ExampleScore> all) {
        List<ExampleScore> sorted = new ArrayList<>(all);
        sorted.sort(Comparator.comparingDouble(ExampleScore::getScore).reversed());
        return List.copyOf(sorted.subList(0, Math.min(TOP_SCORES, sorted.size())));
    }

    // ---- weights and edits -----------------------------------------------------------------

    public synchronized void weight(WeightAssembler.Assembled w) {
        weight = w;
    }

    public synchronized EditView editView() {
        return new EditView(dIn, dOut, weight, bases == null ? null : bases.g(), bases == null ? null : bases.a(),
                bases == null ? -1 : bases.version(), calibratedRho, manifest == null ? -1 : manifest.getVersion(),
                manifest != null && (inFlight || manifest.getVersion() > refreshedVersion));
    }

    /** Status and bases together, under one lock. */
    public synchronized View view() {
        return new View(status(), bases);
    }

    public synchronized LayerStatus status() {
        return new LayerStatus(runId, layer, dIn, dOut, hasBias, manifest == null ? -1 : manifest.getVersion(),
                manifest == null ? 0 : manifest.getTokenCount(), refreshedVersion, bases == null ? -1 : bases.step(), calibratedRho,
                calibratedVersion, keptPairs, status, lastFailure, lastRefreshMs, refreshes, failures, candidatesSent,
                calibrationTimeouts, weight == null ? -1 : weight.step(), calibrationValid, calibrationProblem, warning(),
                candidatesDeclined, pacer.backoff(), paced);
    }

}
