package dev.curvewatch.workers.internal;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

class MetricsServerTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    @Test
    void healthIsValidJsonWhateverTheErrorSays() throws Exception {
        // the hand-written body broke on this: a raw newline inside a JSON string
        Throwable failure = new IllegalStateException("restore of run-a/fc1 failed:\n\tchunk 3 \"missing\" at C:\\tmp\u0001");
        AtomicReference<MetricsServer.Health> health = new AtomicReference<>(
                new MetricsServer.Health(true, "running", "w\"0", 4, 7, 41.6, 12, null));
        try (MetricsServer server = new MetricsServer("127.0.0.1", 0, () -> "curvewatch_worker_up 1.0\n", health::get)) {
            HttpClient http = HttpClient.newHttpClient();
            URI uri = URI.create("http://127.0.0.1:" + server.port() + "/health");

            HttpResponse<String> up = http.send(HttpRequest.newBuilder(uri).build(), HttpResponse.BodyHandlers.ofString());
            assertEquals(200, up.statusCode(), up.body());
            assertEquals("application/json", up.headers().firstValue("Content-Type").orElse(""));
            JsonNode u = JSON.readTree(up.body());
            assertEquals("UP", u.get("status").asText());
            assertEquals("running", u.get("phase").asText());
            assertEquals("w\"0", u.get("instance").asText());
            assertEquals(4, u.get("partitions").asInt());
            assertEquals(7, u.get("layers").asInt());
            assertEquals(42, u.get("lag_records").asLong(), "lag in whole records, as before");
            assertEquals(12, u.get("last_poll_age_ms").asLong());
            assertFalse(u.has("error"));

            health.set(new MetricsServer.Health(false, "stopped", "w0", 0, 0, 0, -1, failure));
            HttpResponse<String> down = http.send(HttpRequest.newBuilder(uri).build(), HttpResponse.BodyHandlers.ofString());
            assertEquals(503, down.statusCode(), down.body());
            JsonNode d = JSON.readTree(down.body());
            assertEquals("DOWN", d.get("status").asText());
            assertEquals("stopped", d.get("phase").asText());
            assertEquals(-1, d.get("last_poll_age_ms").asLong());
            assertEquals(failure.toString(), d.get("error").asText(), "the error text arrives whole, newlines and quotes included");
            assertFalse(down.body().contains("\n"), "one line: " + down.body());

            HttpResponse<String> metrics = http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + server.port() + "/metrics")).build(),
                    HttpResponse.BodyHandlers.ofString());
            assertEquals(200, metrics.statusCode());
            assertTrue(metrics.body().contains("curvewatch_worker_up 1.0"), metrics.body());
        }
    }
}
