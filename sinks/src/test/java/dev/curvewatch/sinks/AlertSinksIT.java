package dev.curvewatch.sinks;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.sun.net.httpserver.HttpServer;
import dev.curvewatch.avro.Alert;
import dev.curvewatch.avro.AlertStatus;
import dev.curvewatch.avro.DeadLetter;
import dev.curvewatch.avro.ExampleScore;
import dev.curvewatch.avro.Severity;
import dev.curvewatch.deploy.LocalKafka;
import dev.curvewatch.schemas.AvroDeserializer;
import dev.curvewatch.schemas.AvroSerializer;
import dev.curvewatch.schemas.CurvewatchTopics;
import dev.curvewatch.sinks.internal.Signature;
import dev.curvewatch.testkit.Await;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CopyOnWriteArrayList;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * The sinks end to end: alerts on a real KRaft broker's alerts topic reach a real Prometheus
 * Alertmanager (Debian's prometheus-alertmanager, started here on free ports) with the labels,
 * annotations and link the issue names, are re-sent while firing and end when resolved; a signed
 * webhook receiver verifies every delivery's signature; a webhook that is down ends in a dead letter
 * on Kafka while Alertmanager still gets every alert.
 */
@Tag("integration")
class AlertSinksIT {
    private static final Path ALERTMANAGER = Path.of(System.getenv().getOrDefault("CURVEWATCH_ALERTMANAGER",
            "/usr/bin/prometheus-alertmanager"));
    private static final byte[] SECRET = "it-hook-secret".getBytes(StandardCharsets.UTF_8);
    private static final Duration WAIT = Duration.ofSeconds(60);
    private static final ObjectMapper JSON = new ObjectMapper();
    private final HttpClient http = HttpClient.newHttpClient();

    private static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0)) {
            return s.getLocalPort();
        }
    }

    private static void await(Await.Condition c, String what) {
        Await.until(c, WAIT, what);
    }

    private static Alert alert(String fp, String layer, AlertStatus status, long firstMs, long lastMs) {
        return Alert.newBuilder().setId(fp + "-" + status + "-" + lastMs).setFingerprint(fp).setRunId("it-run").setStep(380).setLayer(layer)
                .setRule("gap-jump").setSignal("memorization_gap").setValue(0.26).setThreshold(0.12).setSeverity(Severity.CRITICAL)
                .setStatus(status).setFirstSeenMs(firstMs).setLastSeenMs(lastMs).setTopExamples(List.of(new ExampleScore("train-3", 1.5)))
                .setSummary(layer + " memorization_gap 0.26 > 0.12").build();
    }

    private static void publish(KafkaProducer<String, byte[]> p, String topic, Alert a) throws Exception {
        p.send(new ProducerRecord<>(topic, a.getFingerprint(), new AvroSerializer<>(Alert.class).serialize(null, a))).get();
    }

    /** Alertmanager's view: GET /api/v2/alerts (active, silenced and inhibited alerts; resolved ones are gone). */
    private JsonNode alertmanagerAlerts(String base) {
        try {
            HttpResponse<String> r = http.send(HttpRequest.newBuilder(URI.create(base + "/api/v2/alerts")).GET().build(),
                    HttpResponse.BodyHandlers.ofString());
            return r.statusCode() == 200 ? JSON.readTree(r.body()) : JSON.createArrayNode();
        } catch (IOException e) {
            return JSON.createArrayNode();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return JSON.createArrayNode();
        }
    }

    private static JsonNode byLayer(JsonNode alerts, String layer) {
        for (JsonNode a : alerts) {
            if (layer.equals(a.at("/labels/layer").asText())) {
                return a;
            }
        }
        return null;
    }

    @Test
    void alertsReachAlertmanagerAndASignedWebhookAndAFailedDeliveryIsADeadLetter(@TempDir Path dir) throws Exception {
        assumeTrue(Files.isExecutable(ALERTMANAGER), ALERTMANAGER + " is missing: deploy/scripts/install-prereqs.sh installs "
                + "Debian's prometheus-alertmanager");
        int amPort = freePort();
        Path amConfig = dir.resolve("alertmanager.yml");
        Files.writeString(amConfig, "route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n");
        Process am = new ProcessBuilder(ALERTMANAGER.toString(), "--config.file=" + amConfig, "--storage.path=" + dir.resolve("am-data"),
                "--web.listen-address=127.0.0.1:" + amPort, "--cluster.listen-address=", "--log.level=warn")
                .redirectErrorStream(true).redirectOutput(dir.resolve("alertmanager.log").toFile()).start();
        HttpServer hook = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
        List<JsonNode> verified = new CopyOnWriteArrayList<>();
        List<String> unverified = new CopyOnWriteArrayList<>();
        hook.createContext("/hook", ex -> {
            byte[] body = ex.getRequestBody().readAllBytes();
            if (Signature.verify(SECRET, ex.getRequestHeaders().getFirst(Signature.TIMESTAMP_HEADER), body,
                    ex.getRequestHeaders().getFirst(Signature.HEADER))) {
                verified.add(JSON.readTree(body));
                ex.sendResponseHeaders(200, -1);
            } else {
                unverified.add(new String(body, StandardCharsets.UTF_8));
                ex.sendResponseHeaders(401, -1);
            }
            ex.close();
        });
        hook.start();
        String amBase = "http://127.0.0.1:" + amPort;
        CurvewatchTopics topics = CurvewatchTopics.withDefaultPrefix();
        try (LocalKafka kafka = LocalKafka.builder().dataDir(dir.resolve("kafka")).start();
             KafkaProducer<String, byte[]> producer = producer(kafka.bootstrapServers())) {
            await(() -> {
                try {
                    return http.send(HttpRequest.newBuilder(URI.create(amBase + "/-/ready")).GET().build(),
                            HttpResponse.BodyHandlers.discarding()).statusCode() == 200;
                } catch (IOException | InterruptedException e) {
                    return false;
                }
            }, "Alertmanager ready");
            long t0 = System.currentTimeMillis() - 5_000;
            publish(producer, topics.alerts(), alert("fp-old", "fc0", AlertStatus.FIRING, t0, t0)); // before the sinks start
            Map<String, String> c = new LinkedHashMap<>();
            c.put("bootstrap", kafka.bootstrapServers());
            c.put("alertmanager.url", amBase);
            c.put("alertmanager.resend.ms", "1000");
            c.put("webhook.url", "http://127.0.0.1:" + hook.getAddress().getPort() + "/hook");
            c.put("webhook.secret", new String(SECRET, StandardCharsets.UTF_8));
            c.put("webhook.backoff.ms", "20");
            c.put("dashboard.url", "http://dash.example:8080");
            c.put("instance.id", "it");
            try (AlertSinks sinks = AlertSinks.start(SinksConfig.load(null, Map.of(), c))) {
                // history rebuilds Alertmanager's state; the webhook gets only what arrives from now on
                await(() -> byLayer(alertmanagerAlerts(amBase), "fc0") != null, "the older firing alert in Alertmanager");
                publish(producer, topics.alerts(), alert("fp-1", "fc1", AlertStatus.FIRING, t0, t0 + 1000));
                await(() -> byLayer(alertmanagerAlerts(amBase), "fc1") != null, "the firing alert in Alertmanager");
                JsonNode a = byLayer(alertmanagerAlerts(amBase), "fc1");
                assertEquals("curvewatch_memorization_gap", a.at("/labels/alertname").asText());
                assertEquals("it-run", a.at("/labels/run_id").asText());
                assertEquals("critical", a.at("/labels/severity").asText());
                assertEquals("gap-jump", a.at("/labels/rule").asText());
                assertEquals("fc1 memorization_gap 0.26 > 0.12", a.at("/annotations/summary").asText());
                assertTrue(a.at("/annotations/description").asText().contains("train-3"), a.toString());
                assertEquals("http://dash.example:8080/#/runs/it-run", a.get("generatorURL").asText());
                assertEquals("active", a.at("/status/state").asText());
                Instant ends = Instant.parse(a.get("endsAt").asText());
                // re-sent while firing: endsAt moves forward with every re-send
                await(() -> {
                    JsonNode x = byLayer(alertmanagerAlerts(amBase), "fc1");
                    return x != null && Instant.parse(x.get("endsAt").asText()).isAfter(ends);
                }, "a re-send moving endsAt forward");
                await(() -> verified.size() == 1, "the webhook delivery");
                assertEquals("fp-1", verified.get(0).at("/alert/fingerprint").asText());
                assertEquals("FIRING", verified.get(0).at("/alert/status").asText());
                assertEquals(List.of(), unverified);

                // resolved: endsAt = the resolution, Alertmanager no longer lists it as active
                publish(producer, topics.alerts(), alert("fp-1", "fc1", AlertStatus.RESOLVED, t0, t0 + 2000));
                await(() -> byLayer(alertmanagerAlerts(amBase), "fc1") == null, "the resolved alert gone from the active ones");
                await(() -> verified.size() == 2, "the resolution through the webhook");
                assertEquals("RESOLVED", verified.get(1).at("/alert/status").asText());
                assertTrue(sinks.isUp());
            }
            // a webhook that is down: retried, then a dead letter; Alertmanager still gets the alert
            hook.stop(0);
            c.put("webhook.attempts", "3");
            try (AlertSinks sinks = AlertSinks.start(SinksConfig.load(null, Map.of(), c))) {
                // Alertmanager still holds fc0 from the first instance: wait until THIS instance has read the 3 older
                // alerts, so that fp-2 comes after the offsets it took as history (else it is history, never sent live)
                await(() -> sinks.stats().get("read") >= 3, "the older alerts read as history by the new instance");
                publish(producer, topics.alerts(), alert("fp-2", "fc2", AlertStatus.FIRING, t0, t0 + 3000));
                await(() -> byLayer(alertmanagerAlerts(amBase), "fc2") != null, "Alertmanager unaffected by the dead webhook");
                List<DeadLetter> dead = deadLetters(kafka.bootstrapServers(), topics);
                assertEquals(1, dead.size(), dead.toString());
                assertEquals("DELIVERY_FAILED", dead.get(0).getReasonCode());
                assertEquals(topics.alerts(), dead.get(0).getTopic());
                assertTrue(dead.get(0).getReason().contains("after 3 attempts"), dead.get(0).getReason());
                assertEquals("sinks:it", dead.get(0).getComponent());
                Alert original = new AvroDeserializer<>(Alert.class).decode(dead.get(0).getOriginalValue().array());
                assertEquals("fp-2", original.getFingerprint(), "the dead letter holds the alert itself");
            }
        } finally {
            hook.stop(0);
            am.destroy();
            if (!am.waitFor(10, java.util.concurrent.TimeUnit.SECONDS)) {
                am.destroyForcibly();
            }
        }
    }

    private static KafkaProducer<String, byte[]> producer(String bootstrap) {
        Properties p = new Properties();
        p.setProperty(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.setProperty(ProducerConfig.ACKS_CONFIG, "all");
        return new KafkaProducer<>(p, new StringSerializer(), new ByteArraySerializer());
    }

    /** Every dead letter on the topic, polled until one arrives (fails if none does within the wait). */
    private static List<DeadLetter> deadLetters(String bootstrap, CurvewatchTopics topics) {
        Properties p = new Properties();
        p.setProperty(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.setProperty(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.setProperty(ConsumerConfig.GROUP_ID_CONFIG, "it-dead-" + System.nanoTime());
        List<DeadLetter> out = new ArrayList<>();
        AvroDeserializer<DeadLetter> d = new AvroDeserializer<>(DeadLetter.class);
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
            c.subscribe(List.of(topics.deadLetters()));
            Await.until(() -> {
                for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(500))) {
                    out.add(d.decode(r.value()));
                }
                return out.size();
            }, n -> n > 0, WAIT, "a dead letter on " + topics.deadLetters());
            // anything else that arrived with it
            for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(1000))) {
                out.add(d.decode(r.value()));
            }
        }
        return out;
    }
}
