package dev.curvewatch.service.internal;

import dev.curvewatch.avro.Alert;
import dev.curvewatch.avro.ExampleScore;
import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.avro.LayerRho;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.avro.Signal;
import dev.curvewatch.avro.SnapshotEvent;
import dev.curvewatch.avro.SnapshotStatus;
import dev.curvewatch.curvature.SpectrumSummary;
import dev.curvewatch.service.DeadLetterSummary;
import dev.curvewatch.service.LayerStatus;
import dev.curvewatch.service.SignalPoint;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;

import java.util.List;
import java.util.Map;

/**
 * The JSON shapes of the HTTP API and live events (SERVICE-CONTRACT §5). Non-finite numbers
 * become null: JSON has no NaN.
 */
public final class Json {
    private Json() {
    }

    public static Object num(double v) {
        return Double.isFinite(v) ? v : null;
    }

    public static JsonObject error(String message) {
        return new JsonObject().put("error", message);
    }

    public static JsonObject attributes(Map<String, Double> attrs) {
        JsonObject o = new JsonObject();
        attrs.forEach((k, v) -> o.put(k, num(v)));
        return o;
    }

    public static JsonObject point(SignalPoint p) {
        return new JsonObject().put("step", p.step()).put("value", num(p.value())).put("factor_version", p.factorVersion())
                .put("timestamp_ms", p.timestampMs()).put("attributes", attributes(p.attributes()));
    }

    public static JsonObject signal(Signal s) {
        return new JsonObject().put("run_id", s.getRunId()).put("layer", s.getLayer()).put("name", s.getName()).put("step", s.getStep())
                .put("value", num(s.getValue())).put("factor_version", s.getFactorVersion()).put("timestamp_ms", s.getTimestampMs())
                .put("attributes", attributes(s.getAttributes()));
    }

    public static JsonArray examples(List<ExampleScore> scores) {
        JsonArray a = new JsonArray();
        for (ExampleScore e : scores) {
            a.add(new JsonObject().put("sample_id", e.getSampleId()).put("score", num(e.getScore())));
        }
        return a;
    }

    public static JsonObject alert(Alert a) {
        JsonObject details = new JsonObject();
        a.getDetails().forEach(details::put);
        return new JsonObject().put("id", a.getId()).put("fingerprint", a.getFingerprint()).put("run_id", a.getRunId())
                .put("step", a.getStep()).put("layer", a.getLayer()).put("rule", a.getRule()).put("signal", a.getSignal())
                .put("value", num(a.getValue())).put("threshold", num(a.getThreshold())).put("severity", a.getSeverity().name())
                .put("status", a.getStatus().name()).put("first_seen_ms", a.getFirstSeenMs()).put("last_seen_ms", a.getLastSeenMs())
                .put("summary", a.getSummary()).put("top_examples", examples(a.getTopExamples())).put("details", details);
    }

    public static JsonObject guardDecision(dev.curvewatch.avro.GuardDecision d) {
        JsonArray layers = new JsonArray();
        for (LayerRho l : d.getLayers()) {
            layers.add(new JsonObject().put("layer", l.getLayer()).put("rho", num(l.getRho())));
        }
        JsonObject details = new JsonObject();
        d.getDetails().forEach(details::put);
        return new JsonObject().put("id", d.getId()).put("run_id", d.getRunId()).put("layer", d.getLayer()).put("step", d.getStep())
                .put("action", d.getAction().name()).put("reason", d.getReason()).put("source", d.getSource()).put("rule", d.getRule())
                .put("alert_fingerprint", d.getAlertFingerprint()).put("idempotency_key", d.getIdempotencyKey())
                .put("snapshot_id", d.getSnapshotId()).put("layers", layers).put("details", details).put("created_ms", d.getCreatedMs());
    }

    public static JsonObject snapshot(SnapshotEvent e) {
        JsonArray layers = new JsonArray();
        for (LayerRho l : e.getLayers()) {
            layers.add(new JsonObject().put("layer", l.getLayer()).put("rho", num(l.getRho())));
        }
        JsonObject versions = new JsonObject();
        e.getFactorVersions().forEach(versions::put);
        return new JsonObject().put("snapshot_id", e.getSnapshotId()).put("run_id", e.getRunId()).put("step", e.getStep())
                .put("idempotency_key", e.getIdempotencyKey()).put("sha256", e.getSha256()).put("size_bytes", e.getSizeBytes())
                .put("layers", layers).put("factor_versions", versions).put("created_ms", e.getCreatedMs())
                .put("code_version", e.getCodeVersion()).put("uri", e.getUri())
                .put("status", e.getStatus().name()).put("reason", e.getReason()).put("kind", e.getKind().name())
                .put("restores", e.getRestores())
                .put("download", e.getStatus() == SnapshotStatus.WRITTEN ? "/api/snapshots/" + e.getSnapshotId() + "/file" : null);
    }

    /** The run as listed by GET /api/runs. */
    public static JsonObject run(Registry.Run r, int firingAlerts) {
        RunInfo info = r.info();
        JsonArray layers = new JsonArray();
        long lastStep = -1;
        for (LayerState l : r.layers().values()) {
            LayerStatus s = l.status();
            layers.add(new JsonObject().put("name", s.layer()).put("d_in", s.dIn()).put("d_out", s.dOut()));
            lastStep = Math.max(lastStep, Math.max(s.step(), s.weightStep()));
            if (l.manifest() != null) {
                lastStep = Math.max(lastStep, l.manifest().getStepLast());
            }
        }
        JsonObject o = new JsonObject().put("run_id", r.id());
        if (info != null) {
            o.put("model", info.getModel()).put("source", info.getSource()).put("status", info.getStatus().name())
                    .put("created_ms", info.getCreatedMs());
        } else {
            o.put("model", null).put("source", null).put("status", "UNREGISTERED").put("created_ms", null);
        }
        return o.put("last_step", lastStep).put("layers", layers).put("firing_alerts", firingAlerts);
    }

    /** The run with per-layer detail, GET /api/runs/{run}. */
    public static JsonObject runDetail(Registry.Run r, int firingAlerts) {
        JsonObject o = run(r, firingAlerts);
        JsonArray layers = new JsonArray();
        for (LayerState l : r.layers().values()) {
            layers.add(layer(l));
        }
        o.put("layers", layers);
        o.put("dead_letters", deadLetters(r.deadLetters()));
        RunInfo info = r.info();
        if (info != null) {
            JsonObject config = new JsonObject();
            info.getConfig().forEach(config::put);
            o.put("fisher", info.getFisher().name()).put("factor_mode", info.getFactorMode().name()).put("config", config);
        }
        return o;
    }

    /** A layer's detail, from one consistent {@link LayerState#view() view} (status and spectra of the same moment). */
    public static JsonObject layer(LayerState l) {
        LayerState.View v = l.view();
        LayerStatus s = v.status();
        LayerState.Bases b = v.bases();
        return new JsonObject().put("run_id", s.runId()).put("name", s.layer()).put("d_in", s.dIn()).put("d_out", s.dOut())
                .put("has_bias", s.hasBias()).put("factor_version", s.factorVersion()).put("factor_tokens", s.factorTokens())
                .put("refreshed_version", s.refreshedVersion()).put("step", s.step()).put("calibrated_rho", num(s.calibratedRho()))
                .put("calibrated_version", s.calibratedVersion()).put("kept_pairs", s.keptPairs())
                .put("status", s.status()).put("last_failure", s.lastFailure()).put("last_refresh_ms", s.lastRefreshMs())
                .put("refreshes", s.refreshes()).put("failed_refreshes", s.failedRefreshes())
                .put("calibration_timeouts", s.calibrationTimeouts()).put("weight_step", s.weightStep())
                .put("calibration_valid", s.calibrationValid() < 0 ? null : s.calibrationValid() == 1)
                .put("calibration_problem", s.calibrationProblem()).put("warning", s.warning())
                .put("candidates_sent", s.candidatesSent()).put("candidates_declined", s.candidatesDeclined())
                .put("candidate_backoff", s.candidateBackoff()).put("candidate_paced", s.candidatePaced())
                .put("dead_letters", deadLetters(s.deadLetters()))
                .put("spectrum_g", b == null ? null : spectrum(b.spectrumG())).put("spectrum_a", b == null ? null : spectrum(b.spectrumA()));
    }

    /** {total, by_reason, by_topic, last_reason_code, last_reason, last_topic, last_component, last_ms}. */
    static JsonObject deadLetters(DeadLetterSummary d) {
        JsonObject byReason = new JsonObject();
        new java.util.TreeMap<>(d.byReason()).forEach(byReason::put);
        JsonObject byTopic = new JsonObject();
        new java.util.TreeMap<>(d.byTopic()).forEach(byTopic::put);
        return new JsonObject().put("total", d.total()).put("by_reason", byReason).put("by_topic", byTopic)
                .put("last_reason_code", d.lastReasonCode()).put("last_reason", d.lastReason()).put("last_topic", d.lastTopic())
                .put("last_component", d.lastComponent()).put("last_ms", d.lastMs() < 0 ? null : d.lastMs());
    }

    static JsonObject spectrum(SpectrumSummary s) {
        return new JsonObject().put("count50", s.count50()).put("count90", s.count90()).put("count99", s.count99())
                .put("effective_rank", num(s.effectiveRank())).put("total", num(s.total())).put("decay_slope", num(s.decaySlope()));
    }

    public static JsonObject runInfo(RunInfo info) {
        JsonArray layers = new JsonArray();
        for (LayerInfo l : info.getLayers()) {
            layers.add(new JsonObject().put("name", l.getName()).put("d_in", l.getDIn()).put("d_out", l.getDOut()));
        }
        return new JsonObject().put("run_id", info.getRunId()).put("model", info.getModel()).put("source", info.getSource())
                .put("status", info.getStatus().name()).put("created_ms", info.getCreatedMs()).put("layers", layers);
    }

    /**
     * Indices of at most {@code max} eigenvalues of a spectrum of {@code n}: all of them when there
     * are few, else log-spaced (first and last included), so the decay stays visible.
     */
    public static int[] spectrumIndices(int n, int max) {
        if (n <= max) {
            int[] all = new int[n];
            for (int i = 0; i < n; i++) {
                all[i] = i;
            }
            return all;
        }
        // every index below h, then max - h geometric ones from h to n - 1; the smallest h whose
        // geometric steps are at least one index apart
        int h = 1;
        double ratio = 0;
        for (; h < max - 1; h++) {
            ratio = Math.pow((n - 1.0) / h, 1.0 / (max - h - 1));
            if (h * (ratio - 1) >= 1) {
                break;
            }
        }
        java.util.TreeSet<Integer> set = new java.util.TreeSet<>();
        for (int i = 0; i < h; i++) {
            set.add(i);
        }
        for (int j = 0; j < max - h; j++) {
            set.add((int) Math.min(n - 1, Math.round(h * Math.pow(ratio, j))));
        }
        set.add(n - 1);
        while (set.size() > max) { // rounding can add one: drop a tail point next to another
            set.remove(set.lower(n - 1));
        }
        return set.stream().mapToInt(Integer::intValue).toArray();
    }
}
