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
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Retries with backoff until the receiver takes it, the signature checked by the receiver, a dead letter after the last try. */
class WebhookSinkTest {
    private static final byte[] SECRET = "hook-secret".getBytes(StandardCharsets.UTF_8);
    private HttpServer server;
    private final List<String> verified = new CopyOnWriteArrayList<>();
    private final List<String> attempts = new CopyOnWriteArrayList<>();
    private final AtomicInteger failFirst = new AtomicInteger();
    private final List<String> dead = new CopyOnWriteArrayList<>();

    private URI receiver() throws Exception {
        server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
        server.createContext("/hook", ex -> {
            byte[] body = ex.getRequestBody().readAllBytes();
            attempts.add(ex.getRequestHeaders().getFirst("X-Curvewatch-Attempt"));
            boolean ok = Signature.verify(SECRET, ex.getRequestHeaders().getFirst(Signature.TIMESTAMP_HEADER), body,
                    ex.getRequestHeaders().getFirst(Signature.HEADER));
            int code = !ok ? 401 : failFirst.getAndDecrement() > 0 ? 503 : 204;
            if (code == 204) {
                verified.add(new String(body, StandardCharsets.UTF_8));
            }
            ex.sendResponseHeaders(code, -1);
            ex.close();
        });
        server.start();
        return URI.create("http://127.0.0.1:" + server.getAddress().getPort() + "/hook");
    }

    @AfterEach
    void stop() {
        if (server != null) {
            server.stop(0);
        }
    }

    private static void await(Await.Condition c, String what) {
        Await.until(c, Duration.ofSeconds(20), what);
    }

    private static Delivery delivery() {
        return new Delivery(AlertmanagerPayloadTest.alert(AlertStatus.FIRING, "fc1"), "curvewatch.alerts", 0, 7, new byte[] {1}, new byte[] {2});
    }

    @Test
    void retriesUntilTakenAndTheReceiverVerifiesTheSignature() throws Exception {
        failFirst.set(2);
        try (WebhookSink s = new WebhookSink(receiver(), SECRET, "http://dash", 4, 10, 2000, 10, (d, why) -> dead.add(why))) {
            s.offer(delivery(), false);
            s.offer(delivery(), true);
            await(() -> s.delivered() == 1, "delivery");
            assertEquals(List.of("1", "2", "3"), attempts, "two 503s, then taken; the history record was not sent");
            JsonNode body = new ObjectMapper().readTree(verified.get(0));
            assertEquals("alert", body.get("type").asText());
            assertEquals("fp1", body.at("/alert/fingerprint").asText());
            assertEquals("http://dash/#/runs/run+1%2Fx", body.get("generator_url").asText());
            assertEquals(List.of(), dead);
        }
    }

    @Test
    void afterTheLastAttemptTheAlertIsADeadLetter() throws Exception {
        failFirst.set(100);
        try (WebhookSink s = new WebhookSink(receiver(), SECRET, "http://dash", 3, 5, 2000, 10, (d, why) -> dead.add(why))) {
            s.offer(delivery(), true);
            await(() -> dead.size() == 1, "the dead letter");
            assertEquals(3, attempts.size());
            assertTrue(dead.get(0).contains("after 3 attempts: HTTP 503"), dead.get(0));
            assertEquals(1, s.failed());
        }
    }

    @Test
    void aWrongSecretIsRefusedByTheReceiver() throws Exception {
        try (WebhookSink s = new WebhookSink(receiver(), "not-it".getBytes(StandardCharsets.UTF_8), "http://dash", 1, 0, 2000, 10,
                (d, why) -> dead.add(why))) {
            s.offer(delivery(), true);
            await(() -> dead.size() == 1, "the dead letter");
            assertTrue(dead.get(0).contains("HTTP 401"), dead.get(0));
            assertEquals(List.of(), verified);
        }
    }
}
