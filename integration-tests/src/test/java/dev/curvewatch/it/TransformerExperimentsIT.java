package dev.curvewatch.it;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.curvewatch.deploy.LocalKafka;
import dev.curvewatch.service.AlertRule;
import dev.curvewatch.service.AlertRules;
import dev.curvewatch.service.CurvewatchService;
import dev.curvewatch.service.ServiceConfig;
import dev.curvewatch.streams.CurvewatchStreams;
import dev.curvewatch.streams.StreamsAppConfig;
import dev.curvewatch.workers.Worker;
import dev.curvewatch.workers.WorkerConfig;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Issue 12 end to end: the canaries experiment ({@code clients/python/examples/transformer_experiments.py
 * canaries --live}) at a reduced size through a real broker, worker, streams app and service, an
 * injected run and its clean control of the same length. The service runs the shipped defaults plus
 * {@code memorization/pipeline/service.properties} (one calibration every 40 trainer steps, every
 * candidate measured: what the experiments define as a refresh; the file says why) and the rules of
 * {@code memorization/pipeline/alert-rules.properties}: the shipped rules plus
 * {@code memorization-outliers}, which is not a shipped default yet (the file says why). Asserts the
 * issue's alarm targets: that alert fires within 3 refreshes of the injection and never before it,
 * and no alert of any rule in the control.
 *
 * <p>Size, against the CI preset (whose full figures are in the example's README): 240 steps, not
 * 320 (canaries from step 120; the alert came at the first refresh after it in the measured runs),
 * 12 canaries, not 8 (the alarm's count of training examples above every probe saturates at the
 * number of distinct canaries in the recent window: with 8 of 64 against 96 probes the alarm reads
 * at most 3.3 against its threshold of 3; with 12, up to 5.1, while the clean runs counted at most 5
 * above every probe, 2.0), and the alarm layers (block 1's MLP matrices) edited at the end, not all
 * four, to halve the answer time.
 */
@Tag("long") // in the long-its profile: a run takes 1.5-12 min here and its clean control false-alarms about 1 run in 10 (memorization README)
class TransformerExperimentsIT {
    static final Path REPO = Path.of(System.getProperty("user.dir")).getParent();
    static final Path EXAMPLES = REPO.resolve("clients/python/examples");
    static final String TOKEN = "experiments-it-token";

    @Test
    void canaryAlarmFiresWithinThreeRefreshesAndNeverInTheControl(@TempDir Path dir) throws Exception {
        Path rules = EXAMPLES.resolve("memorization/pipeline/alert-rules.properties");
        List<AlertRule> experimentRules = AlertRules.load(rules);
        assertEquals(AlertRules.defaults(), experimentRules.subList(0, experimentRules.size() - 1), "the shipped rules, as they are");
        assertEquals("memorization_outliers", experimentRules.get(experimentRules.size() - 1).signal());
        try (LocalKafka kafka = LocalKafka.builder().dataDir(dir.resolve("kafka")).start();
             Worker worker = Worker.start(WorkerConfig.of(Map.of(WorkerConfig.BOOTSTRAP, kafka.bootstrapServers(),
                     WorkerConfig.INSTANCE_ID, "experiments-it-worker")));
             CurvewatchStreams streams = CurvewatchStreams.start(StreamsAppConfig.of(Map.of(
                     StreamsAppConfig.BOOTSTRAP, kafka.bootstrapServers(),
                     StreamsAppConfig.STATE_DIR, dir.resolve("streams").toString())), Duration.ofSeconds(120));
             CurvewatchService service = CurvewatchService.start(ServiceConfig.load(
                     EXAMPLES.resolve("memorization/pipeline/service.properties"), Map.of(),
                     Map.of(ServiceConfig.BOOTSTRAP, kafka.bootstrapServers(), ServiceConfig.HTTP_PORT, "0",
                             ServiceConfig.AUTH_TOKENS, TOKEN, ServiceConfig.SNAPSHOT_DIR, dir.resolve("snapshots").toString(),
                             ServiceConfig.ALERT_RULES_FILE, rules.toString())))) {
            assertEquals(4, PythonClientIT.partitions(kafka, kafka.topics().captures()), "the shipped default");
            assertTrue(service.awaitCaughtUp(Duration.ofSeconds(60)));

            Path out = dir.resolve("results");
            Process py = new ProcessBuilder("/usr/bin/python3", EXAMPLES.resolve("transformer_experiments.py").toString(),
                    "canaries", "--size", "ci", "--live", "--bootstrap", kafka.bootstrapServers(), "--service", service.url(),
                    "--token", TOKEN, "--run-prefix", "it", "--out", out.toString(),
                    "--set", "steps=240", "canaries=12", "edit_layers=[\"blocks.1.mlp.fc\",\"blocks.1.mlp.proj\"]")
                    .redirectErrorStream(true).start();
            String log;
            try {
                PythonClientIT.ProcessLines lines = new PythonClientIT.ProcessLines(py);
                assertTrue(py.waitFor(900, TimeUnit.SECONDS), "the experiment did not finish:\n" + lines.log());
                log = lines.awaitEnd(Duration.ofSeconds(10));
            } finally {
                py.destroyForcibly();
            }
            System.out.println(log);
            // 1: a target missed (the CI size does not reach the recitation and perplexity targets); anything else is a failure
            assertTrue(py.exitValue() == 0 || py.exitValue() == 1, "the experiment failed:\n" + log);

            JsonNode result = new ObjectMapper().readTree(out.resolve("transformer-canaries-ci-live-seed1.json").toFile());
            JsonNode targets = result.get("targets");
            JsonNode within = targets.get("alert_within_3_refreshes");
            assertTrue(within.get("pass").asBoolean(), "the alarm within 3 refreshes of the injection: " + within
                    + "\nalerts: " + result.at("/injected/alerts") + "\nalarm: " + result.at("/injected/refreshes"));
            assertEquals(120, within.get("injection_step").asLong());
            assertTrue(targets.at("/no_alert_before_injection/pass").asBoolean(), targets.get("no_alert_before_injection").toString());
            assertTrue(targets.at("/no_alert_in_clean_control/pass").asBoolean(), "alerts in the clean control: "
                    + result.at("/clean/alerts") + "\nalarm: " + result.at("/clean/refreshes"));
            assertEquals(List.of(), alertsOf(result.at("/clean/alerts")), "no alert of any rule in the control");
            // the control ran as long and was calibrated as often: an absent alert is not an absent alarm
            assertEquals(240, result.at("/clean/config/steps").asInt());
            assertTrue(result.at("/clean/refreshes").size() >= 3, "calibrations of the control: " + result.at("/clean/refreshes"));

            // the alert is the alarm's: the canaries are the training examples above every probe
            JsonNode first = alarmAt(result.at("/injected/refreshes"), within.get("value").asLong(), within.get("layer").asText());
            assertTrue(first.get("count").asInt() >= 8 && first.get("surprise").asDouble() > 3, "the alarm at the alert: " + first);
            // the edit of the calibrated layers came back as a snapshot whose sha256 the client checked
            JsonNode edit = result.at("/injected/final");
            assertFalse(edit.has("error"), edit.toString());
            assertEquals(2, edit.at("/snapshot/layers").size(), edit.toString());
            assertTrue(Files.size(out.resolve("transformer-canaries-ci-live-seed1-signal.png")) > 0);
        }
    }

    static List<String> alertsOf(JsonNode alerts) {
        List<String> out = new ArrayList<>();
        alerts.forEach(a -> out.add(a.toString()));
        return out;
    }

    /** The alarm entry of {@code layer} at {@code step} in the result's refreshes. */
    static JsonNode alarmAt(JsonNode refreshes, long step, String layer) {
        for (JsonNode r : refreshes) {
            if (r.get("step").asLong() == step && r.at("/layers/" + layer).isObject()) {
                return r.at("/layers/" + layer);
            }
        }
        throw new AssertionError("no alarm of " + layer + " at step " + step + " in " + refreshes);
    }
}
