package dev.curvewatch.service;

import dev.curvewatch.avro.GuardAction;
import dev.curvewatch.avro.GuardDecision;
import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.avro.LayerRho;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.deploy.LocalKafka;
import dev.curvewatch.schemas.AvroSerializer;
import dev.curvewatch.schemas.CurvewatchTopics;
import io.vertx.core.json.JsonArray;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.WebSocket;
import java.net.http.WebSocketHandshakeException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Scoped tokens on every path of a service that requires the read scope (a shared host), SSE and
 * WebSocket included; the security headers on API and dashboard answers; the guard's endpoints
 * and live events; and the default on 127.0.0.1 (reads open). Real KRaft broker, shipped defaults.
 */
@Tag("integration")
class ServiceAuthIT {
    private static final String RUN = "auth-run";
    private static final String READER = "reader-token";
    private static final String EDITOR = "editor-token";
    private static final String ADMIN = "admin-token";
    private static final Duration WAIT = Duration.ofSeconds(60);

    private static KafkaProducer<String, byte[]> producer(LocalKafka kafka) {
        Properties p = new Properties();
        p.setProperty(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, kafka.bootstrapServers());
        p.setProperty(ProducerConfig.ACKS_CONFIG, "all");
        return new KafkaProducer<>(p, new StringSerializer(), new ByteArraySerializer());
    }

    private static Map<String, String> config(LocalKafka kafka, Path dir, String readRequired) {
        Map<String, String> c = new LinkedHashMap<>();
        c.put("bootstrap", kafka.bootstrapServers());
        c.put("http.port", "0");
        c.put("instance.id", "auth-it");
        c.put("snapshot.dir", dir.resolve("snapshots").toString());
        c.put("auth.tokens", READER + " read," + EDITOR + " edit," + ADMIN);
        c.put("auth.read.required", readRequired);
        return c;
    }

    private static HttpResponse<String> call(HttpClient http, String method, String url, String token) throws Exception {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(30));
        if (token != null) {
            b.header("Authorization", "Bearer " + token);
        }
        if (method.equals("POST")) {
            b.header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString("{}"));
        }
        return http.send(b.build(), HttpResponse.BodyHandlers.ofString());
    }

    private static void await(java.util.function.BooleanSupplier c, String what) throws InterruptedException {
        long deadline = System.nanoTime() + WAIT.toNanos();
        while (!c.getAsBoolean()) {
            assertTrue(System.nanoTime() < deadline, "timed out waiting for " + what);
            Thread.sleep(50);
        }
    }

    private static void assertSecurityHeaders(HttpResponse<?> r, String what) {
        assertTrue(r.headers().firstValue("content-security-policy").orElse("").contains("frame-ancestors 'none'"), what);
        assertEquals("nosniff", r.headers().firstValue("x-content-type-options").orElse(""), what);
        assertEquals("DENY", r.headers().firstValue("x-frame-options").orElse(""), what);
    }

    @Test
    void everyPathNeedsItsScopeWhenReadsAreProtected(@TempDir Path dir) throws Exception {
        CurvewatchTopics topics = CurvewatchTopics.withDefaultPrefix();
        HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
        try (LocalKafka kafka = LocalKafka.builder().dataDir(dir.resolve("kafka")).start();
             KafkaProducer<String, byte[]> producer = producer(kafka)) {
            RunInfo run = RunInfo.newBuilder().setRunId(RUN).setModel("m").setSource("auth-it").setCreatedMs(1)
                    .setLayers(List.of(LayerInfo.newBuilder().setName("fc1").setDIn(3).setDOut(2).build())).build();
            producer.send(new ProducerRecord<>(topics.runs(), RUN, new AvroSerializer<>(RunInfo.class).serialize(null, run))).get();
            try (CurvewatchService service = CurvewatchService.start(ServiceConfig.of(config(kafka, dir, "true")))) {
                String base = service.url();
                assertTrue(service.awaitCaughtUp(Duration.ofMinutes(2)), "caught up"); // /health is 503 until then
                await(() -> service.state().runIds().contains(RUN), "the run registered");
                List<String> reads = List.of("/api/runs", "/api/runs/" + RUN, "/api/runs/" + RUN + "/signals",
                        "/api/runs/" + RUN + "/scores?layer=fc1", "/api/runs/" + RUN + "/spectra?layer=fc1",
                        "/api/runs/" + RUN + "/snapshots", "/api/runs/" + RUN + "/guard", "/api/alerts",
                        "/api/snapshots/snap-none/file");
                for (String path : reads) {
                    HttpResponse<String> none = call(http, "GET", base + path, null);
                    assertEquals(401, none.statusCode(), path + ": " + none.body());
                    assertTrue(none.headers().firstValue("www-authenticate").orElse("").contains("read"), path);
                    assertSecurityHeaders(none, path);
                    assertEquals(401, call(http, "GET", base + path, "not-a-token").statusCode(), path);
                    for (String token : List.of(READER, EDITOR, ADMIN)) {
                        int code = call(http, "GET", base + path, token).statusCode();
                        assertTrue(code == 200 || code == 404, path + " with " + token + ": " + code); // 404: no spectra/snapshot yet
                    }
                }
                // writes: edit scope for edits and rollbacks, admin for a refresh
                String edits = base + "/api/runs/" + RUN + "/edits";
                assertEquals(401, call(http, "POST", edits, null).statusCode());
                HttpResponse<String> readerEdit = call(http, "POST", edits, READER);
                assertEquals(403, readerEdit.statusCode(), readerEdit.body());
                assertTrue(readerEdit.body().contains("has scope read; this needs edit"), readerEdit.body());
                // past the scope check the edit route's own checks answer: no calibrated rho yet is a 409 with the reason
                HttpResponse<String> editorEdit = call(http, "POST", edits, EDITOR);
                assertEquals(409, editorEdit.statusCode(), editorEdit.body());
                String refresh = base + "/api/runs/" + RUN + "/refresh";
                assertEquals(403, call(http, "POST", refresh, EDITOR).statusCode());
                assertEquals(202, call(http, "POST", refresh, ADMIN).statusCode());
                String rollback = base + "/api/runs/" + RUN + "/rollbacks/snap-none";
                assertEquals(403, call(http, "POST", rollback, READER).statusCode());
                assertEquals(404, call(http, "POST", rollback, EDITOR).statusCode(), "no rollback was offered");
                // health, metrics and the dashboard stay open (probes, scrapers, a page that asks for the token)
                assertEquals(200, call(http, "GET", base + "/health", null).statusCode());
                assertEquals(200, call(http, "GET", base + "/metrics", null).statusCode());
                HttpResponse<String> page = call(http, "GET", base + "/", null);
                assertEquals(200, page.statusCode());
                assertSecurityHeaders(page, "dashboard");

                // SSE: 401 without a token, a header or ?access_token= (what EventSource can send) with the read scope
                assertEquals(401, call(http, "GET", base + "/api/events", null).statusCode());
                assertEquals(401, call(http, "GET", base + "/api/events?access_token=wrong", null).statusCode());
                BlockingQueue<String> lines = new LinkedBlockingQueue<>();
                HttpResponse<java.util.stream.Stream<String>> sse = http.send(HttpRequest.newBuilder(
                        URI.create(base + "/api/events?run=" + RUN + "&access_token=" + READER)).GET().build(),
                        HttpResponse.BodyHandlers.ofLines());
                assertEquals(200, sse.statusCode());
                Thread reader = new Thread(() -> {
                    try {
                        sse.body().forEach(lines::add);
                    } catch (RuntimeException closed) {
                        // the end of the test
                    }
                }, "auth-it-sse");
                reader.setDaemon(true);
                reader.start();
                // WebSocket: refused without a token, upgraded with one
                CompletionException refused = org.junit.jupiter.api.Assertions.assertThrows(CompletionException.class,
                        () -> http.newWebSocketBuilder().buildAsync(URI.create(base.replace("http:", "ws:") + "/api/ws"),
                                new WebSocket.Listener() { }).join());
                assertInstanceOf(WebSocketHandshakeException.class, refused.getCause());
                assertEquals(401, ((WebSocketHandshakeException) refused.getCause()).getResponse().statusCode());
                BlockingQueue<String> frames = new LinkedBlockingQueue<>();
                WebSocket ws = http.newWebSocketBuilder().header("Authorization", "Bearer " + READER)
                        .buildAsync(URI.create(base.replace("http:", "ws:") + "/api/ws?run=" + RUN), new WebSocket.Listener() {
                            @Override
                            public CompletionStage<?> onText(WebSocket socket, CharSequence data, boolean last) {
                                frames.add(data.toString());
                                socket.request(1);
                                return null;
                            }
                        }).join();

                // the guard: a trainer's APPLIED re-arms the run; both decisions reach the API and both live streams
                GuardDecision applied = GuardDecision.newBuilder().setId("t-1").setRunId(RUN).setStep(40)
                        .setAction(GuardAction.APPLIED).setReason("loaded after step 40").setSource("trainer:" + RUN)
                        .setSnapshotId("snap-x").setIdempotencyKey("rule:gap-guard:x:1").setLayers(List.of(new LayerRho("fc1", 0.6)))
                        .setCreatedMs(1).build();
                producer.send(new ProducerRecord<>(topics.guardDecisions(), RUN,
                        new AvroSerializer<>(GuardDecision.class).serialize(null, applied))).get();
                await(() -> service.guardDecisions(RUN).stream().anyMatch(d -> d.getAction() == GuardAction.REARMED), "REARMED");
                JsonArray guard = new JsonArray(call(http, "GET", base + "/api/runs/" + RUN + "/guard", READER).body());
                assertEquals("REARMED", guard.getJsonObject(0).getString("action"), "newest first");
                assertEquals("APPLIED", guard.getJsonObject(1).getString("action"));
                assertTrue(guard.getJsonObject(0).getString("source").startsWith("service:"), guard.encode());
                String event = null;
                long deadline = System.nanoTime() + WAIT.toNanos();
                while (event == null && System.nanoTime() < deadline) {
                    String line = lines.poll(1, TimeUnit.SECONDS);
                    if (line != null && line.equals("event: guard")) {
                        event = line;
                    }
                }
                assertNotNull(event, "a live guard event over SSE");
                String frame = null;
                while (frame == null && System.nanoTime() < deadline) {
                    String f = frames.poll(1, TimeUnit.SECONDS);
                    if (f != null && f.contains("\"type\":\"guard\"")) {
                        frame = f;
                    }
                }
                assertNotNull(frame, "a live guard event over the WebSocket");
                ws.abort();
            }
            // the default, auto, on 127.0.0.1: reads open, writes still need their scope
            try (CurvewatchService local = CurvewatchService.start(ServiceConfig.of(config(kafka, dir, "auto")))) {
                await(() -> local.state().runIds().contains(RUN), "the run registered");
                assertEquals(200, call(http, "GET", local.url() + "/api/runs/" + RUN, null).statusCode());
                assertEquals(200, call(http, "GET", local.url() + "/api/runs/" + RUN + "/guard", null).statusCode());
                assertEquals(401, call(http, "POST", local.url() + "/api/runs/" + RUN + "/edits", null).statusCode());
            }
        }
    }
}
