package dev.curvewatch.service.internal;

import dev.curvewatch.avro.ProbeResult;
import dev.curvewatch.schemas.AvroDeserializer;
import dev.curvewatch.schemas.ContractChecks;
import dev.curvewatch.schemas.InvalidRecordException;
import dev.curvewatch.schemas.RejectReason;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;

/**
 * The trainer's answers to EditCandidates, on the ingest thread: finds the candidate a
 * ProbeResult answers, ends a declined one at once, calibrates ({@link Calibration}) and
 * publishes scores, signals and the layer event; and ends candidates left unanswered past
 * {@code calibration.timeout.ms}. A malformed answer throws {@link InvalidRecordException} (a
 * dead letter, by the caller) and ends its candidate too: no other answer will come.
 */
final class ProbeResults {
    private static final Logger LOG = LoggerFactory.getLogger(ProbeResults.class);

    private final Registry registry;
    private final Outputs out;
    private final ServiceMetrics metrics;
    private final CalibrationTerms terms;
    private final long timeoutMs;
    private final AvroDeserializer<ProbeResult> decoder = new AvroDeserializer<>(ProbeResult.class);

    ProbeResults(Registry registry, Outputs out, ServiceMetrics metrics, CalibrationTerms terms, long timeoutMs) {
        this.registry = registry;
        this.out = out;
        this.metrics = metrics;
        this.terms = terms;
        this.timeoutMs = timeoutMs;
    }

    /** One record of topic probe-results (key = run id). */
    void accept(ConsumerRecord<byte[], byte[]> r) {
        if (r.value() == null) {
            return;
        }
        ProbeResult pr = decoder.decode(r.value());
        ContractChecks.requireId(pr.getRunId(), "run_id");
        ContractChecks.requireId(pr.getLayer(), "layer");
        String key = r.key() == null ? null : new String(r.key(), StandardCharsets.UTF_8);
        if (!pr.getRunId().equals(key)) {
            throw new InvalidRecordException(RejectReason.KEY_MISMATCH, "probe result key '" + key + "' is not its run id '" + pr.getRunId() + "'");
        }
        PendingCandidate c = findCandidate(pr.getCandidateId());
        if (c == null) {
            throw new InvalidRecordException(RejectReason.INVALID_FIELD, "candidate_id '" + pr.getCandidateId()
                    + "' was not sent by this service, or was already answered or superseded, or timed out longer ago than its "
                    + LayerState.MAX_OUTSTANDING + " successors");
        }
        LayerState layer = registry.existing(c.runId(), c.layer()).orElseThrow();
        if (!pr.getDeclined().isEmpty()) {
            declined(pr, c, layer);
            return;
        }
        Calibration.Outcome o;
        try {
            o = Calibration.calibrate(pr, c, terms);
        } catch (InvalidRecordException e) {
            // the trainer answered this candidate: no other answer will come, so it is no longer out
            layer.answerRejected(c, e.getMessage());
            out.live("layer", c.runId(), Json.layer(layer));
            throw e;
        }
        if (!layer.answered(c)) {
            throw new InvalidRecordException(RejectReason.INVALID_FIELD, "candidate " + c.id() + " (factor version "
                    + c.factorVersion() + ") is older than the calibration already applied (version " + layer.calibratedVersion() + ")");
        }
        layer.calibrated(c, o, pr.getStep());
        long now = System.currentTimeMillis();
        out.scores(Calibration.scores(o, c, pr.getStep(), now));
        out.signals(Calibration.signals(o, c, pr.getStep(), now), new AlertEvaluator.Context(layer.topForAlerts(), layer.calibratedRho()));
        out.live("layer", c.runId(), Json.layer(layer));
        metrics.inc("curvewatch_service_probe_results_total", o.valid() ? "calibrated" : "invalid");
        if (o.valid()) {
            LOG.info("calibrated {}/{} v{}: rho {} ({} mode, {} {} evaluations{}), gap {}", c.runId(), c.layer(), c.factorVersion(), o.rho(),
                    o.mode(), o.trace().size(), o.search(), o.flags().isEmpty() ? "" : ", " + o.flags(), o.gap());
        } else {
            LOG.warn("calibration of {}/{} v{} invalid: {}", c.runId(), c.layer(), c.factorVersion(), o.invalidReason());
        }
    }

    /** The trainer declined the candidate: the calibration ends now (no timeout to wait for) and the layer backs off. */
    private void declined(ProbeResult pr, PendingCandidate c, LayerState layer) {
        String why = pr.getDeclined().length() > 256 ? pr.getDeclined().substring(0, 256) + "..." : pr.getDeclined();
        if (!layer.declined(c, why)) {
            return;
        }
        metrics.inc("curvewatch_service_candidates_declined_total");
        LOG.info("candidate {} of {}/{} declined by the trainer: {}", c.id(), c.runId(), c.layer(), why);
        out.signals(List.of(Calibration.signal(c, "candidates_declined", layer.status().candidatesDeclined(), Map.of(),
                System.currentTimeMillis())), new AlertEvaluator.Context(layer.topForAlerts(), layer.calibratedRho()));
        out.live("layer", c.runId(), Json.layer(layer));
    }

    /** Ends the layer's candidates unanswered for longer than {@code calibration.timeout.ms}; publishes the count. */
    void expire(LayerState l, long nowMs) {
        for (PendingCandidate c : l.expire(nowMs, timeoutMs)) {
            metrics.inc("curvewatch_service_calibration_timeouts_total");
            LOG.warn("candidate {} of {} not answered within {} ms", c.id(), l.key(), timeoutMs);
            out.signals(List.of(Calibration.signal(c, "calibration_timeouts", l.calibrationTimeouts(), Map.of(), nowMs)),
                    new AlertEvaluator.Context(l.topForAlerts(), l.calibratedRho()));
            out.live("layer", l.runId(), Json.layer(l));
        }
    }

    private PendingCandidate findCandidate(String id) {
        for (Registry.Run run : registry.allRuns()) {
            for (LayerState l : run.layers().values()) {
                PendingCandidate c = l.answerable(id);
                if (c != null) {
                    return c;
                }
            }
        }
        return null;
    }
}
