package dev.curvewatch.it;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.curvewatch.avro.GuardAction;
import dev.curvewatch.avro.GuardDecision;
import dev.curvewatch.deploy.LocalKafka;
import dev.curvewatch.service.CurvewatchService;
import dev.curvewatch.service.ServiceConfig;
import dev.curvewatch.testkit.Await;
import dev.curvewatch.workers.Worker;
import dev.curvewatch.workers.WorkerConfig;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Issue 13's live guard with a PyTorch trainer: a REST edit of a Python run becomes the service's
 * snapshot, the Python client ({@code watch(..., snapshot_dir=..., apply_snapshots=True)}, fixture
 * {@code clients/python/tests/guard_fixture.py}) loads it between steps, and reports APPLIED on
 * guard-decisions, which the service answers with REARMED. The shipped defaults (a broker with 4
 * capture partitions, a worker and the service with their default settings; only ports, directories
 * and the token are set).
 */
@Tag("integration")
class PythonGuardIT {
    static final String RUN = "py-guard";
    static final String TOKEN = "it-token";
    static final String EDIT_KEY = "py-guard-edit";
    static final Path REPO = Path.of(System.getProperty("user.dir")).getParent();
    static final HttpClient HTTP = HttpClient.newHttpClient();

    @Test
    void aPythonTrainerAppliesTheEditedSnapshotAndTheServiceRearms(@TempDir Path dir) throws Exception {
        Path snapshots = dir.resolve("snapshots");
        try (LocalKafka kafka = LocalKafka.builder().dataDir(dir.resolve("kafka")).start();
             Worker worker = Worker.start(WorkerConfig.of(Map.of(WorkerConfig.BOOTSTRAP, kafka.bootstrapServers(),
                     WorkerConfig.INSTANCE_ID, "py-guard-worker")));
             CurvewatchService service = CurvewatchService.start(ServiceConfig.of(Map.of(
                     ServiceConfig.BOOTSTRAP, kafka.bootstrapServers(), ServiceConfig.HTTP_PORT, "0",
                     ServiceConfig.AUTH_TOKENS, TOKEN, ServiceConfig.SNAPSHOT_DIR, snapshots.toString())))) {
            assertEquals(4, PythonClientIT.partitions(kafka, kafka.topics().captures()), "the shipped default");
            assertTrue(service.awaitCaughtUp(Duration.ofSeconds(60)));
            Path out = dir.resolve("applied.json");
            Process py = new ProcessBuilder("/usr/bin/python3", REPO.resolve("clients/python/tests/guard_fixture.py").toString(),
                    kafka.bootstrapServers(), snapshots.toString(), RUN, out.toString()).redirectErrorStream(true).start();
            try {
                PythonClientIT.ProcessLines lines = new PythonClientIT.ProcessLines(py);
                lines.await("trained"::equals, Duration.ofSeconds(120));

                // the edit is accepted once the service has fc1's factors, eigenbasis and weight (409 until then)
                String accepted = Await.until(() -> postEdit(service.url()), r -> r.startsWith("202 "),
                        Duration.ofSeconds(180), "the service accepts an edit of fc1");
                assertTrue(accepted.contains(EDIT_KEY), accepted);
                JsonNode snapshot = Await.until(() -> snapshotOf(service), Optional::isPresent, Duration.ofSeconds(60),
                        "the edit's snapshot").orElseThrow();
                assertEquals("WRITTEN", snapshot.get("status").asText(), snapshot.toString());
                String id = snapshot.get("snapshot_id").asText();

                String[] applied = lines.await(l -> l.startsWith("applied "), Duration.ofSeconds(120)).split(" ");
                assertEquals(id, applied[1], "the Python trainer applied the service's snapshot");
                long step = Long.parseLong(applied[2]);
                assertTrue(py.waitFor(60, TimeUnit.SECONDS), "the fixture did not finish:\n" + lines.log());
                assertEquals(0, py.exitValue(), "the fixture failed:\n" + lines.log());
                JsonNode result = new ObjectMapper().readTree(out.toFile());
                assertEquals(0.0, result.get("max_abs_diff").asDouble(), "the model holds the snapshot's tensors: " + result);
                assertTrue(result.get("tensors").toString().contains("fc1.weight"), result.toString());
                assertEquals(1, result.at("/summary/counts/applied").asInt(), result.toString());

                // the service hears APPLIED (after which step) and re-arms on it
                List<GuardDecision> decisions = Await.until(() -> service.guardDecisions(RUN),
                        ds -> ds.stream().anyMatch(d -> d.getAction() == GuardAction.REARMED), Duration.ofSeconds(60),
                        "REARMED after the Python trainer's APPLIED");
                GuardDecision app = only(decisions, GuardAction.APPLIED);
                assertEquals(id, app.getSnapshotId());
                assertEquals(step, app.getStep(), "APPLIED says after which step the weights were loaded");
                assertEquals("trainer:" + RUN, app.getSource());
                assertEquals(EDIT_KEY, app.getIdempotencyKey());
                assertEquals("fc1", app.getLayer());
                GuardDecision rearmed = only(decisions, GuardAction.REARMED);
                assertEquals(id, rearmed.getSnapshotId());
                assertTrue(decisions.indexOf(rearmed) > decisions.indexOf(app), "REARMED answers the APPLIED: " + decisions);
                assertTrue(decisions.stream().noneMatch(d -> d.getAction() == GuardAction.REFUSED), decisions.toString());
            } finally {
                py.destroyForcibly();
            }
        }
    }

    static GuardDecision only(List<GuardDecision> decisions, GuardAction action) {
        List<GuardDecision> found = decisions.stream().filter(d -> d.getAction() == action).toList();
        assertEquals(1, found.size(), action + " decisions in " + decisions);
        return found.get(0);
    }

    /** POSTs the edit; its status and body (409 with the reason while fc1 cannot be edited yet). */
    static String postEdit(String serviceUrl) throws Exception {
        HttpResponse<String> r = HTTP.send(HttpRequest.newBuilder(URI.create(serviceUrl + "/api/runs/" + RUN + "/edits"))
                .header("Authorization", "Bearer " + TOKEN).header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString("{\"layers\":[{\"layer\":\"fc1\",\"rho\":0.9}],"
                        + "\"reason\":\"PythonGuardIT\",\"idempotency_key\":\"" + EDIT_KEY + "\"}")).build(),
                HttpResponse.BodyHandlers.ofString());
        return r.statusCode() + " " + r.body();
    }

    static Optional<JsonNode> snapshotOf(CurvewatchService service) throws Exception {
        for (JsonNode s : TransformerExampleIT.get(service.url() + "/api/runs/" + RUN + "/snapshots")) {
            if (s.get("idempotency_key").asText().equals(EDIT_KEY)) {
                return Optional.of(s);
            }
        }
        return Optional.empty();
    }
}
