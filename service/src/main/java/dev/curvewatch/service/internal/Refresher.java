package dev.curvewatch.service.internal;

import dev.curvewatch.avro.EditCandidate;
import dev.curvewatch.avro.FactorManifest;
import dev.curvewatch.contracts.CheckpointCorruptException;
import dev.curvewatch.contracts.FactorCheckpoint;
import dev.curvewatch.contracts.FactorCheckpointReader;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.List;
import java.util.Map;
import java.util.UUID;

/**
 * One refresh of one layer on a refresh thread, from the detached checkpoint parts to everything
 * it publishes: checkpoint assembly (sha256, decoding the d^2 values), the sides against the
 * registered layer, {@link LayerRefresh}, then signals, the candidate and the live layer event.
 * Every way it can fail (a corrupt checkpoint, sides that no longer fit, NaN/Inf, a failed
 * decomposition, any exception) is a failed refresh with its reason in the layer status, a
 * {@code refresh_failed} signal and a live layer event (unless the refresh is a silent recompute
 * after a restart); none ends the ingest loop or leaves the layer stuck in flight: the layer is
 * marked {@link LayerState#finished finished} last, after publishing.
 */
final class Refresher {
    private static final Logger LOG = LoggerFactory.getLogger(Refresher.class);

    private final LayerRefresh refresh;
    private final Outputs out;
    private final ServiceMetrics metrics;
    private final boolean compact;
    private volatile double lastLatency = Double.NaN;

    /** @param compact EditCandidate v4 bases ({@code candidate.compact}) */
    Refresher(LayerRefresh refresh, Outputs out, ServiceMetrics metrics, boolean compact) {
        this.compact = compact;
        this.refresh = refresh;
        this.out = out;
        this.metrics = metrics;
    }

    /** Factors manifest read -> signals sent, of the latest refresh (NaN before the first). */
    double lastLatencySeconds() {
        return lastLatency;
    }

    /**
     * @param l         the layer, already marked {@link LayerState#start started}
     * @param seenNanos when the refresh was asked for (manifest read, or POST refresh)
     * @param silent    recompute only (its signals were published before a restart)
     */
    void run(LayerState l, FactorCheckpointReader.Parts parts, long seenNanos, boolean silent) {
        FactorManifest m = parts.manifest();
        LayerRefresh.Input header = new LayerRefresh.Input(m.getRunId(), m.getLayer(), m.getVersion(), m.getStepLast(),
                m.getTokenCount(), m.getDIn(), m.getDOut(), null, null);
        try {
            String refused = refresh.refusal(m.getDIn(), m.getDOut());
            if (refused != null) { // before anything is assembled
                fail(l, header, refused, silent, null, refresh.refusalAttributes(m.getDIn(), m.getDOut()));
                return;
            }
            long t0 = System.nanoTime();
            FactorCheckpoint cp;
            try {
                cp = parts.assemble();
            } catch (CheckpointCorruptException e) {
                fail(l, header, "corrupt checkpoint: " + e.getMessage(), silent, null, Map.of());
                return;
            }
            String sides = l.sidesMismatch(m.getDIn(), m.getDOut());
            if (sides != null) {
                fail(l, header, sides, silent, null, Map.of());
                return;
            }
            LayerState.Bases prev = l.bases();
            LayerRefresh.Input in = new LayerRefresh.Input(m.getRunId(), m.getLayer(), m.getVersion(), m.getStepLast(),
                    m.getTokenCount(), m.getDIn(), m.getDOut(), cp.meanA(), cp.meanG());
            cp = null; // the sums are no longer needed: let the eigendecompositions have the memory
            double assembleSeconds = (System.nanoTime() - t0) / 1e9;
            LayerRefresh.Outcome o = refresh.refresh(in, prev == null ? null : prev.g(), prev == null ? null : prev.a());
            if (!o.ok()) {
                fail(l, header, o.failure(), silent, null, Map.of());
                return;
            }
            publish(l, o, m, assembleSeconds, seenNanos, silent);
        } catch (RuntimeException | OutOfMemoryError e) {
            fail(l, header, e.toString(), silent, e, Map.of());
        } finally {
            l.finished();
        }
    }

    private void publish(LayerState l, LayerRefresh.Outcome o, FactorManifest m, double assembleSeconds, long seenNanos, boolean silent) {
        long now = System.currentTimeMillis();
        l.refreshed(o, now);
        metrics.inc("curvewatch_service_refresh_seconds_total", o.eighSeconds());
        if (silent) {
            metrics.inc("curvewatch_service_refreshes_total", "silent");
            LOG.info("refresh of {} v{} recomputed after restart (signals already published)", l.key(), m.getVersion());
            return;
        }
        double latency = (System.nanoTime() - seenNanos) / 1e9;
        out.signals(LayerRefresh.signals(o, assembleSeconds, latency, now), new AlertEvaluator.Context(l.topForAlerts(), l.calibratedRho()));
        metrics.inc("curvewatch_service_refreshes_total", "ok");
        metrics.inc("curvewatch_service_refresh_latency_seconds_total", latency);
        lastLatency = latency;
        if (o.plan().isPresent()) {
            boolean out = l.awaitingAnswer();
            // paced in trainer steps and drift (CandidatePacer), one out at a time: a later refresh sends the newest bases
            if (l.candidateDecision(m.getStepLast(), drift(o)).send()) {
                sendCandidate(l, o, now);
            } else {
                metrics.inc("curvewatch_service_candidates_deferred_total", out ? "outstanding" : "paced");
            }
        }
        out.live("layer", l.runId(), Json.layer(l));
        LOG.info("refreshed {} v{} ({} x {}): bases {} s (G {}, A {}), factors ready -> signals {} s", l.key(), m.getVersion(),
                m.getDOut(), m.getDIn(), String.format("%.3f", o.eighSeconds()), o.modeG(), o.modeA(), String.format("%.3f", latency));
    }

    /** The larger basis drift of the two factors; NaN on a first refresh. */
    static double drift(LayerRefresh.Outcome o) {
        if (Double.isNaN(o.driftG())) {
            return o.driftA();
        }
        return Double.isNaN(o.driftA()) ? o.driftG() : Math.max(o.driftG(), o.driftA());
    }

    /**
     * The candidate a refresh could not send while the layer's previous one was out, now that it is
     * answered (or declined, or timed out): the newest bases, without a new refresh, so a layer whose
     * trainer has stopped or paused still gets its latest bases calibrated. On a refresh thread; the
     * layer was marked in flight by {@link LayerState#startOwedCandidate} and is freed last.
     */
    void sendOwed(LayerState l, LayerState.Bases b) {
        try {
            LayerRefresh.Outcome o = refresh.ofBases(l.runId(), l.layer(), b.version(), b.step(), b.g(), b.a(), b.spectrumG(), b.spectrumA());
            if (o.plan().isPresent()) {
                sendCandidate(l, o, System.currentTimeMillis());
                out.live("layer", l.runId(), Json.layer(l));
            }
        } catch (RuntimeException | OutOfMemoryError e) {
            LOG.error("could not send the owed candidate of {} v{}", l.key(), b.version(), e);
        } finally {
            l.finished();
        }
    }

    private void sendCandidate(LayerState l, LayerRefresh.Outcome o, long now) {
        LayerRefresh.Input in = o.input();
        String id = in.layer() + "-v" + in.factorVersion() + "-" + UUID.randomUUID().toString().substring(0, 8);
        LayerRefresh.CandidatePlan p = o.plan().get();
        // outstanding before it is sent: an answer can only come after the send, never before this
        BasisReferences.Shipment ship = l.sent(new PendingCandidate(id, in.runId(), in.layer(), in.step(), in.factorVersion(),
                p.rhos(), p.thresholds(), p.keptPairs(), (long) in.dIn() * in.dOut(), now), LayerRefresh.neededColumns(o), compact);
        List<EditCandidate> parts;
        try {
            parts = refresh.candidateParts(o, id, now, ship);
        } catch (RuntimeException e) {
            candidateNotSent(l, id, e);
            return;
        }
        out.candidate(parts).whenComplete((md, err) -> {
            if (err != null) {
                candidateNotSent(l, id, err);
            }
        });
    }

    /** Kafka refused the candidate: it will never be answered, so it is not outstanding. */
    private void candidateNotSent(LayerState l, String id, Throwable err) {
        Throwable cause = err instanceof java.util.concurrent.CompletionException && err.getCause() != null ? err.getCause() : err;
        l.candidateNotSent(id, cause.toString());
        metrics.inc("curvewatch_service_candidates_failed_total");
        LOG.warn("candidate {} of {} not sent: {}", id, l.key(), cause.toString());
        out.live("layer", l.runId(), Json.layer(l));
    }

    private void fail(LayerState l, LayerRefresh.Input in, String reason, boolean silent, Throwable error, Map<String, Double> attributes) {
        long now = System.currentTimeMillis();
        l.failed(in, reason, now);
        metrics.inc("curvewatch_service_refreshes_total", "failed");
        if (error != null) {
            LOG.error("refresh of {} v{} failed", l.key(), in.factorVersion(), error);
        } else {
            LOG.warn("refresh of {} v{} failed: {}", l.key(), in.factorVersion(), reason);
        }
        if (!silent) {
            try {
                out.signals(List.of(LayerRefresh.failureSignal(in, attributes, now)), new AlertEvaluator.Context(l.topForAlerts(), l.calibratedRho()));
                out.live("layer", l.runId(), Json.layer(l));
            } catch (RuntimeException e) {
                LOG.error("could not publish the failed refresh of {} v{}", l.key(), in.factorVersion(), e);
            }
        }
    }
}
