package dev.curvewatch.sinks.internal;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.curvewatch.avro.Alert;
import dev.curvewatch.avro.AlertStatus;
import dev.curvewatch.avro.ExampleScore;
import dev.curvewatch.avro.Severity;
import org.junit.jupiter.api.Test;

import java.time.Instant;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The body against the Alertmanager API v2 schema (postableAlerts): the fields, their types, the labels the issue names. */
class AlertmanagerPayloadTest {
    static Alert alert(AlertStatus status, String layer) {
        return Alert.newBuilder().setId("a1").setFingerprint("fp1").setRunId("run 1/x").setStep(380).setLayer(layer)
                .setRule("gap-jump").setSignal("memorization_gap").setValue(0.26).setThreshold(0.12).setSeverity(Severity.CRITICAL)
                .setStatus(status).setFirstSeenMs(1_700_000_000_000L).setLastSeenMs(1_700_000_060_000L)
                .setTopExamples(List.of(new ExampleScore("train-7", 2.5))).setSummary("fc1 memorization_gap 0.26 > 0.12").build();
    }

    /** What Alertmanager's OpenAPI (v2, postableAlert) requires and allows. */
    static void checkPostableAlert(JsonNode a) {
        Set<String> allowed = Set.of("labels", "annotations", "startsAt", "endsAt", "generatorURL");
        Set<String> names = new TreeSet<>();
        a.fieldNames().forEachRemaining(names::add);
        assertTrue(allowed.containsAll(names), a.toString());
        assertTrue(a.get("labels").isObject() && a.get("labels").size() > 0, "labels are required: " + a);
        a.get("labels").forEach(v -> assertTrue(v.isTextual() && !v.asText().isEmpty(), "label values are non-empty strings"));
        a.get("annotations").forEach(v -> assertTrue(v.isTextual()));
        Instant.parse(a.get("startsAt").asText());
        Instant.parse(a.get("endsAt").asText());
        assertTrue(a.get("generatorURL").asText().startsWith("http"), a.toString());
    }

    @Test
    void firingAlertsCarryTheLabelsAnnotationsAndALinkToTheRunPage() throws Exception {
        long now = 1_700_000_100_000L;
        JsonNode body = new ObjectMapper().readTree(AlertmanagerPayload.body(List.of(alert(AlertStatus.FIRING, "fc1")),
                "http://dash:8080", now, 240_000));
        assertEquals(1, body.size());
        JsonNode a = body.get(0);
        checkPostableAlert(a);
        assertEquals(Map.of("alertname", "curvewatch_memorization_gap", "run_id", "run 1/x", "layer", "fc1", "severity", "critical",
                "rule", "gap-jump"), new ObjectMapper().convertValue(a.get("labels"), Map.class));
        assertEquals("fc1 memorization_gap 0.26 > 0.12", a.at("/annotations/summary").asText());
        assertTrue(a.at("/annotations/description").asText().contains("train-7"), a.toString());
        assertEquals("2023-11-14T22:13:20Z", a.get("startsAt").asText());
        assertEquals(Instant.ofEpochMilli(now + 240_000).toString(), a.get("endsAt").asText(), "firing: four periods ahead");
        assertEquals("http://dash:8080/#/runs/run+1%2Fx", a.get("generatorURL").asText());
    }

    @Test
    void aResolvedAlertEndsWhenItResolvedAndARunLevelOneHasNoLayerLabel() throws Exception {
        JsonNode a = new ObjectMapper().readTree(AlertmanagerPayload.body(List.of(alert(AlertStatus.RESOLVED, null)),
                "http://dash:8080", 1_800_000_000_000L, 240_000)).get(0);
        checkPostableAlert(a);
        assertEquals(Instant.ofEpochMilli(1_700_000_060_000L).toString(), a.get("endsAt").asText());
        assertFalse(a.get("labels").has("layer"));
    }
}
