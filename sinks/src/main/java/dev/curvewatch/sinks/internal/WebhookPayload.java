package dev.curvewatch.sinks.internal;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.curvewatch.avro.Alert;
import dev.curvewatch.avro.ExampleScore;

import java.nio.charset.StandardCharsets;

/**
 * The webhook's JSON body: {@code {"version": 1, "type": "alert", "generator_url": ..., "alert": {...}}}
 * with the alert in the shape of the service's {@code /api/alerts} (SERVICE-CONTRACT §5).
 */
public final class WebhookPayload {
    private static final ObjectMapper JSON = new ObjectMapper();

    private WebhookPayload() {
    }

    public static byte[] body(Alert a, String dashboardUrl) {
        ObjectNode o = JSON.createObjectNode();
        o.put("version", 1);
        o.put("type", "alert");
        o.put("generator_url", AlertmanagerPayload.runPage(dashboardUrl, a.getRunId()));
        ObjectNode x = o.putObject("alert");
        x.put("id", a.getId());
        x.put("fingerprint", a.getFingerprint());
        x.put("run_id", a.getRunId());
        x.put("step", a.getStep());
        x.put("layer", a.getLayer());
        x.put("rule", a.getRule());
        x.put("signal", a.getSignal());
        x.put("value", a.getValue());
        x.put("threshold", a.getThreshold());
        x.put("severity", a.getSeverity().name());
        x.put("status", a.getStatus().name());
        x.put("first_seen_ms", a.getFirstSeenMs());
        x.put("last_seen_ms", a.getLastSeenMs());
        x.put("summary", a.getSummary());
        ArrayNode top = x.putArray("top_examples");
        for (ExampleScore e : a.getTopExamples()) {
            top.addObject().put("sample_id", e.getSampleId()).put("score", e.getScore());
        }
        ObjectNode details = x.putObject("details");
        a.getDetails().forEach(details::put);
        return o.toString().getBytes(StandardCharsets.UTF_8);
    }
}
