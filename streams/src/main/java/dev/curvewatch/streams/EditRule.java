package dev.curvewatch.streams;

import dev.curvewatch.avro.Alert;
import dev.curvewatch.avro.AlertStatus;
import dev.curvewatch.avro.EditRequest;
import dev.curvewatch.avro.LayerRho;
import dev.curvewatch.avro.Severity;

import java.util.ArrayList;
import java.util.List;
import java.util.regex.Pattern;

/**
 * A user rule that turns a firing alert into an edit request (DESIGN §4).
 *
 * @param name        rule name; the request's requester is {@code rule:<name>}
 * @param signal      signal the alert must be about ({@code *} for any)
 * @param minSeverity lowest severity that triggers
 * @param runs        run ids the rule applies to (full match)
 * @param layers      layers to edit; empty means the alert's own layer
 * @param rho         ρ for every layer; ≤ 0 asks the service for its calibrated ρ
 */
public record EditRule(String name, String signal, Severity minSeverity, Pattern runs, List<String> layers, double rho) {

    public EditRule {
        layers = List.copyOf(layers);
    }

    /** Whether this firing alert triggers the rule. */
    public boolean matches(Alert a) {
        return a.getStatus() == AlertStatus.FIRING
                && a.getSeverity().ordinal() >= minSeverity.ordinal()
                && ("*".equals(signal) || signal.equals(a.getSignal()))
                && runs.matcher(a.getRunId()).matches()
                && (!layers.isEmpty() || a.getLayer() != null);
    }

    /**
     * The edit request for a matching alert. The idempotency key names the rule and the firing
     * episode (fingerprint and first-seen time), so a re-delivered or repeated alert of the same
     * episode can never produce a second snapshot.
     */
    public EditRequest request(Alert a, long nowMs) {
        List<LayerRho> edits = new ArrayList<>();
        for (String layer : layers.isEmpty() ? List.of(a.getLayer()) : layers) {
            edits.add(new LayerRho(layer, rho));
        }
        return EditRequest.newBuilder()
                .setIdempotencyKey("rule:" + name + ":" + a.getFingerprint() + ":" + a.getFirstSeenMs())
                .setRunId(a.getRunId())
                .setLayers(edits)
                .setRequester("rule:" + name)
                .setReason(a.getSeverity() + " " + a.getSignal() + " " + a.getValue() + " > " + a.getThreshold()
                        + " at step " + a.getStep() + ": " + a.getSummary())
                .setAlertFingerprint(a.getFingerprint())
                .setCreatedMs(nowMs)
                .build();
    }
}
