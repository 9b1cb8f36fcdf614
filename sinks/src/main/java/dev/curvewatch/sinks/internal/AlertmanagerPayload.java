package dev.curvewatch.sinks.internal;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.curvewatch.avro.Alert;
import dev.curvewatch.avro.AlertStatus;
import dev.curvewatch.avro.ExampleScore;

import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.util.Collection;
import java.util.Locale;

/**
 * Alerts as Alertmanager API v2 {@code postableAlerts} (POST /api/v2/alerts): labels
 * {@code alertname} (curvewatch_ and the signal), {@code run_id}, {@code layer} (when the alert has
 * one), {@code severity} (lower case, as Prometheus rules write it), {@code rule}; annotations
 * {@code summary} and {@code description}; {@code startsAt} the first time it fired; {@code endsAt}
 * the resolution time, or for a firing alert a time {@code firingFor} ahead (as Prometheus does:
 * Alertmanager resolves it by itself if the sender stops re-sending); {@code generatorURL} the
 * dashboard's run page.
 */
public final class AlertmanagerPayload {
    private static final ObjectMapper JSON = new ObjectMapper();

    private AlertmanagerPayload() {
    }

    public static String body(Collection<Alert> alerts, String dashboardUrl, long nowMs, long firingForMs) {
        ArrayNode a = JSON.createArrayNode();
        for (Alert x : alerts) {
            a.add(alert(x, dashboardUrl, nowMs, firingForMs));
        }
        return a.toString();
    }

    static ObjectNode alert(Alert a, String dashboardUrl, long nowMs, long firingForMs) {
        ObjectNode o = JSON.createObjectNode();
        ObjectNode labels = o.putObject("labels");
        labels.put("alertname", "curvewatch_" + a.getSignal());
        labels.put("run_id", a.getRunId());
        if (a.getLayer() != null) {
            labels.put("layer", a.getLayer());
        }
        labels.put("severity", a.getSeverity().name().toLowerCase(Locale.ROOT));
        labels.put("rule", a.getRule());
        ObjectNode ann = o.putObject("annotations");
        ann.put("summary", a.getSummary());
        ann.put("description", description(a));
        o.put("startsAt", Instant.ofEpochMilli(a.getFirstSeenMs()).toString());
        long ends = a.getStatus() == AlertStatus.RESOLVED ? Math.max(a.getLastSeenMs(), a.getFirstSeenMs()) : nowMs + firingForMs;
        o.put("endsAt", Instant.ofEpochMilli(ends).toString());
        o.put("generatorURL", runPage(dashboardUrl, a.getRunId()));
        return o;
    }

    /** The dashboard's page of a run. */
    public static String runPage(String dashboardUrl, String runId) {
        return dashboardUrl + "/#/runs/" + URLEncoder.encode(runId, StandardCharsets.UTF_8);
    }

    static String description(Alert a) {
        String given = a.getDetails().get("description");
        StringBuilder b = new StringBuilder(given != null ? given : String.format(Locale.ROOT,
                "%s %s of run %s%s is %.4g against %.4g at step %d (rule %s).", a.getStatus() == AlertStatus.RESOLVED
                        ? "Resolved:" : "Firing:", a.getSignal(), a.getRunId(), a.getLayer() == null ? "" : ", layer " + a.getLayer(),
                a.getValue(), a.getThreshold(), a.getStep(), a.getRule()));
        if (!a.getTopExamples().isEmpty()) {
            b.append(" Top examples:");
            for (ExampleScore e : a.getTopExamples().subList(0, Math.min(5, a.getTopExamples().size()))) {
                b.append(' ').append(e.getSampleId());
            }
        }
        return b.toString();
    }
}
