package dev.curvewatch.sinks.internal;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.sun.net.httpserver.HttpServer;
import dev.curvewatch.avro.AlertStatus;
import dev.curvewatch.testkit.Await;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.net.InetSocketAddress;
import java.net.URI;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * The Alertmanager sink against a local receiver (a JDK HTTP server): every post is a JSON array
 * of alerts; a 2xx answer counts each alert of it delivered, anything else failed. (Re-sends and
 * Alertmanager itself: {@code AlertSinksIT}.)
 */
class AlertmanagerSinkTest {
    private final HttpServer server;
    private final AtomicInteger answer = new AtomicInteger(200);
    private final List<String> contentTypes = new CopyOnWriteArrayList<>();
    private final List<byte[]> bodies = new CopyOnWriteArrayList<>();

    AlertmanagerSinkTest() throws Exception {
        server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
        server.createContext("/api/v2/alerts", ex -> {
            contentTypes.add(ex.getRequestHeaders().getFirst("Content-Type"));
            bodies.add(ex.getRequestBody().readAllBytes());
            ex.sendResponseHeaders(answer.get(), -1);
            ex.close();
        });
        server.start();
    }

    @AfterEach
    void stop() {
        server.stop(0);
    }

    @Test
    void aTakenPostCountsItsAlertsDeliveredARefusedOneFailed() throws Exception {
        URI url = URI.create("http://127.0.0.1:" + server.getAddress().getPort() + "/api/v2/alerts");
        // an hour between re-sends: every post here is one offer's
        try (AlertmanagerSink s = new AlertmanagerSink(url, "http://dash", 3_600_000, 2000)) {
            s.offer(new Delivery(AlertmanagerPayloadTest.alert(AlertStatus.FIRING, "fc1"), "curvewatch.alerts", 0, 1,
                    new byte[] {1}, new byte[] {2}), false);
            Await.until(() -> s.delivered() == 1, Duration.ofSeconds(20), "the firing alert taken", bodies::size);
            assertEquals("application/json", contentTypes.get(0));
            JsonNode posted = new ObjectMapper().readTree(bodies.get(0));
            assertEquals(1, posted.size(), "one alert in the post");
            assertEquals("curvewatch_memorization_gap", posted.get(0).at("/labels/alertname").asText());
            assertEquals(1, s.firingCount());

            answer.set(503);
            s.offer(new Delivery(AlertmanagerPayloadTest.alert(AlertStatus.RESOLVED, "fc1"), "curvewatch.alerts", 0, 2,
                    new byte[] {1}, new byte[] {3}), false);
            Await.until(() -> s.failed() == 1, Duration.ofSeconds(20), "the resolution refused", bodies::size);
            assertEquals(1, s.delivered());
            assertEquals(0, s.firingCount(), "a resolved alert leaves the firing set even when its post failed");
        }
    }
}
