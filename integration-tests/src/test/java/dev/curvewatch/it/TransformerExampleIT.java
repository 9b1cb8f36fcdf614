package dev.curvewatch.it;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.curvewatch.deploy.LocalKafka;
import dev.curvewatch.service.CurvewatchService;
import dev.curvewatch.service.ServiceConfig;
import dev.curvewatch.streams.CurvewatchStreams;
import dev.curvewatch.streams.StreamsAppConfig;
import dev.curvewatch.workers.Worker;
import dev.curvewatch.workers.WorkerConfig;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * Issue 11 end to end: {@code clients/python/examples/transformer_canaries.py} (a Hugging Face-style
 * causal LM on fortunes text, canaries mid-run, the client's defaults) at CI size against the real
 * pipeline with the SHIPPED DEFAULTS: a broker with 4 capture partitions, a worker, the streams app
 * and the service, each with its default settings (only ports, directories and the token set).
 * Every watched layer (an MLP layer and MultiheadAttention's out_proj) gets factors, with no dead
 * letter anywhere; every calibration of every layer is valid (not degenerate); the client's answers
 * stay within its answer-time budget. The package installs offline into a throwaway venv, and its
 * command line reads the run's status and alerts and downloads an edited snapshot from the service.
 */
@Tag("integration")
class TransformerExampleIT {
    static final String RUN = "textlm-it";
    static final List<String> LAYERS = List.of("blocks.1.mlp.fc", "blocks.1.attn.out_proj");
    static final String TOKEN = "it-token";
    static final Path REPO = Path.of(System.getProperty("user.dir")).getParent();
    static final HttpClient HTTP = HttpClient.newHttpClient();

    @Test
    void transformerExampleGetsFactorsAndValidCalibrationsWithinBudget(@TempDir Path dir) throws Exception {
        try (LocalKafka kafka = LocalKafka.builder().dataDir(dir.resolve("kafka")).start();
             Worker worker = Worker.start(WorkerConfig.of(Map.of(WorkerConfig.BOOTSTRAP, kafka.bootstrapServers(),
                     WorkerConfig.INSTANCE_ID, "textlm-it-worker")));
             CurvewatchStreams streams = CurvewatchStreams.start(StreamsAppConfig.of(Map.of(
                     StreamsAppConfig.BOOTSTRAP, kafka.bootstrapServers(),
                     StreamsAppConfig.STATE_DIR, dir.resolve("streams").toString())), Duration.ofSeconds(120));
             CurvewatchService service = CurvewatchService.start(ServiceConfig.of(Map.of(
                     ServiceConfig.BOOTSTRAP, kafka.bootstrapServers(), ServiceConfig.HTTP_PORT, "0",
                     ServiceConfig.AUTH_TOKENS, TOKEN, ServiceConfig.SNAPSHOT_DIR, dir.resolve("snapshots").toString())))) {
            assertEquals(4, PythonClientIT.partitions(kafka, kafka.topics().captures()), "the shipped default");
            assertTrue(service.awaitCaughtUp(Duration.ofSeconds(60)));
            Path venv = installPackage(dir);

            Path summaryFile = dir.resolve("summary.json");
            Process py = new ProcessBuilder("/usr/bin/python3", REPO.resolve("clients/python/examples/transformer_canaries.py").toString(),
                    "--bootstrap", kafka.bootstrapServers(), "--run-id", RUN, "--steps", "300", "--batch-size", "16",
                    "--d-model", "64", "--d-mlp", "256", "--windows", "3000", "--probes", "16", "--recent-examples", "64",
                    "--canaries", "8",
                    "--log-every", "60", "--probe-every", "60", "--layers", String.join(",", LAYERS), "--linger", "45",
                    "--summary", summaryFile.toString()).redirectErrorStream(true).start();
            try {
                PythonClientIT.ProcessLines lines = new PythonClientIT.ProcessLines(py);
                assertTrue(py.waitFor(240, TimeUnit.SECONDS), "the example did not finish:\n" + lines.log());
                String log = lines.awaitEnd(Duration.ofSeconds(10));
                System.out.println(log);
                assertEquals(0, py.exitValue(), "the example failed:\n" + log);
            } finally {
                py.destroyForcibly();
            }
            JsonNode summary = new ObjectMapper().readTree(summaryFile.toFile());
            System.out.println(summary.toPrettyString());

            // nothing dead-lettered: not the run's records (the client followed them), not anything on the topic
            assertEquals(0, summary.get("dead_letters").size(), "dead letters seen by the client: " + summary.get("dead_letters"));
            assertEquals(List.of(), PythonClientIT.deadLetters(kafka), "dead letters on the topic");
            assertEquals(0, summary.get("candidates").get("refused").asInt() + summary.get("candidates").get("failed").asInt(),
                    summary.get("candidates").toString());

            // every watched layer has factors and at least one calibration, and every calibration is valid
            JsonNode run = get(service.url() + "/api/runs/" + RUN);
            assertEquals(0, run.at("/dead_letters/total").asLong(), "the service's run-level dead letters: " + run);
            for (String layer : LAYERS) {
                JsonNode l = layerOf(run, layer);
                assertTrue(l.get("factor_version").asLong() >= 1 && l.get("factor_tokens").asLong() > 0, "factors of " + l);
                assertEquals(0, l.at("/dead_letters/total").asLong(), "the service's dead letters of " + l);
                List<JsonNode> validity = awaitPoints(service, layer, "calibration_valid");
                for (JsonNode p : validity) {
                    assertEquals(1.0, p.get("value").asDouble(), layer + ": a degenerate calibration " + p);
                }
                assertTrue(points(service, layer, "calibrated_rho").size() >= 1, layer + ": no calibrated rho");
            }

            // the answers stayed within the client's budget (measured by the client at the end of training);
            // the budget is checked before each answer, so it can be passed by at most one answer's misestimate
            JsonNode o = summary.get("overhead");
            double allowed = o.get("answer_budget").asDouble() * o.get("training_seconds").asDouble()
                    + summary.get("longest_answer_seconds").asDouble();
            assertTrue(o.get("answer_seconds").asDouble() <= allowed, "answers " + o + " beyond the budget: " + allowed + " s");

            checkCommandLine(venv, service, dir);
        }
    }

    /** pip install ./clients/python into a fresh venv that sees Debian's torch, confluent-kafka and avro: offline. */
    static Path installPackage(Path dir) throws Exception {
        Path venv = dir.resolve("venv");
        run(dir, 120, "/usr/bin/python3", "-m", "venv", "--system-site-packages", venv.toString());
        run(dir, 180, venv.resolve("bin/python").toString(), "-m", "pip", "install", "--no-input",
                REPO.resolve("clients/python").toString());
        // away from the repository: the installed package with its bundled schemas
        String where = run(dir, 60, venv.resolve("bin/python").toString(), "-c",
                "import curvewatch, curvewatch._avro as a; print(curvewatch.__version__, a.schema_dir(), a.codec('Capture').fingerprint)");
        assertTrue(where.contains(venv.toString()), "the schemas come from the installed package: " + where);
        return venv;
    }

    static void checkCommandLine(Path venv, CurvewatchService service, Path dir) throws Exception {
        String python = venv.resolve("bin/python").toString();
        assertTrue(run(dir, 60, python, "-m", "curvewatch", "--help").contains("download"));
        String status = run(dir, 60, python, "-m", "curvewatch", "--service", service.url(), "status", RUN);
        for (String layer : LAYERS) {
            assertTrue(status.contains(layer), status);
        }
        assertTrue(status.contains("dead letters: none"), status);
        run(dir, 60, python, "-m", "curvewatch", "--service", service.url(), "alerts", "--run", RUN);
        // an edit of a calibrated layer through the REST API, then its snapshot downloaded by the command line
        HttpResponse<String> edit = HTTP.send(HttpRequest.newBuilder(URI.create(service.url() + "/api/runs/" + RUN + "/edits"))
                .header("Authorization", "Bearer " + TOKEN).header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString("{\"layers\":[{\"layer\":\"" + LAYERS.get(0) + "\"}],"
                        + "\"idempotency_key\":\"textlm-it-edit\"}")).build(), HttpResponse.BodyHandlers.ofString());
        assertEquals(202, edit.statusCode(), edit.body());
        String snapshot = awaitSnapshot(service);
        Path file = dir.resolve("edited.safetensors");
        String out = run(dir, 60, python, "-m", "curvewatch", "--service", service.url(), "download", snapshot, "--run", RUN,
                "--token", TOKEN, "-o", file.toString());
        assertTrue(out.contains("as listed"), out);
        String tensors = run(dir, 60, python, "-c", "import curvewatch; print(sorted(curvewatch.load_file('" + file + "')))");
        assertTrue(tensors.contains(LAYERS.get(0) + ".weight"), tensors);
    }

    static String awaitSnapshot(CurvewatchService service) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (System.nanoTime() < deadline) {
            JsonNode snaps = get(service.url() + "/api/runs/" + RUN + "/snapshots");
            for (JsonNode s : snaps) {
                if (s.get("idempotency_key").asText().equals("textlm-it-edit")) {
                    return s.get("snapshot_id").asText();
                }
            }
            TimeUnit.MILLISECONDS.sleep(250);
        }
        return fail("no snapshot for the edit within 60 s");
    }

    static JsonNode layerOf(JsonNode run, String layer) {
        for (JsonNode l : run.get("layers")) {
            if (l.get("name").asText().equals(layer)) {
                return l;
            }
        }
        return fail("layer " + layer + " not in " + run);
    }

    /** The signal's points once there is at least one (the service publishes them as answers arrive; 30 s at most). */
    static List<JsonNode> awaitPoints(CurvewatchService service, String layer, String name) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        List<JsonNode> found = points(service, layer, name);
        while (found.isEmpty() && System.nanoTime() < deadline) {
            TimeUnit.MILLISECONDS.sleep(250);
            found = points(service, layer, name);
        }
        assertTrue(!found.isEmpty(), layer + ": no " + name + " point");
        return found;
    }

    static List<JsonNode> points(CurvewatchService service, String layer, String name) throws Exception {
        JsonNode r = get(service.url() + "/api/runs/" + RUN + "/signals?layer=" + layer + "&name=" + name);
        List<JsonNode> out = new ArrayList<>();
        for (JsonNode series : r.get("series")) {
            series.get("points").forEach(out::add);
        }
        return out;
    }

    static JsonNode get(String url) throws IOException, InterruptedException {
        HttpResponse<String> r = HTTP.send(HttpRequest.newBuilder(URI.create(url)).build(), HttpResponse.BodyHandlers.ofString());
        assertEquals(200, r.statusCode(), url + ": " + r.body());
        return new ObjectMapper().readTree(r.body());
    }

    /** Runs a command in dir; fails with its output unless it exits 0 within the time; returns the output. */
    static String run(Path dir, int seconds, String... command) throws Exception {
        Process p = new ProcessBuilder(command).directory(dir.toFile()).redirectErrorStream(true).start();
        PythonClientIT.ProcessLines lines = new PythonClientIT.ProcessLines(p);
        try {
            assertTrue(p.waitFor(seconds, TimeUnit.SECONDS), String.join(" ", command) + " did not finish:\n" + lines.log());
        } finally {
            p.destroyForcibly();
        }
        String log = lines.awaitEnd(Duration.ofSeconds(10));
        assertEquals(0, p.exitValue(), String.join(" ", command) + " failed:\n" + log);
        return log;
    }
}
