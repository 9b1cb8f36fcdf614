package dev.curvewatch.streams;

import dev.curvewatch.avro.Alert;
import dev.curvewatch.avro.AlertStatus;
import dev.curvewatch.avro.Severity;
import org.junit.jupiter.api.Test;

import java.io.StringReader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Properties;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class EditRulesTest {
    private static List<EditRule> parse(String text) throws Exception {
        Properties p = new Properties();
        p.load(new StringReader(text));
        return EditRules.parse(p);
    }

    private static Alert alert(Severity s, String signal, String layer) {
        return Alert.newBuilder().setId("1").setFingerprint("f").setRunId("prod-1").setStep(1).setLayer(layer).setRule("r")
                .setSignal(signal).setValue(1).setThreshold(0.5).setSeverity(s).setStatus(AlertStatus.FIRING)
                .setFirstSeenMs(1).setLastSeenMs(1).setSummary("s").build();
    }

    @Test
    void rulesParseWithDefaultsAndMatch() throws Exception {
        List<EditRule> rules = parse("""
                rule.a.signal=memorization_gap
                rule.a.min.severity=warning
                rule.a.runs=prod-.*
                rule.a.layers=fc1, fc2
                rule.a.rho=0.75
                rule.b.rho=-1
                """);
        assertEquals(2, rules.size());
        EditRule a = rules.get(0);
        assertEquals(Severity.WARNING, a.minSeverity());
        assertEquals(List.of("fc1", "fc2"), a.layers());
        assertEquals(0.75, a.rho());
        assertTrue(a.matches(alert(Severity.CRITICAL, "memorization_gap", null)));
        assertFalse(a.matches(alert(Severity.INFO, "memorization_gap", "fc1")));
        assertFalse(a.matches(alert(Severity.CRITICAL, "basis_drift", "fc1")));
        EditRule b = rules.get(1);
        assertEquals("*", b.signal());
        assertEquals(Severity.CRITICAL, b.minSeverity());
        assertTrue(b.matches(alert(Severity.CRITICAL, "anything", "fc3")));
        assertFalse(b.matches(alert(Severity.CRITICAL, "anything", null)), "no layer to edit: no match");
        assertFalse(b.matches(Alert.newBuilder(alert(Severity.CRITICAL, "x", "fc1")).setStatus(AlertStatus.RESOLVED).build()));
    }

    @Test
    void mistakesNameTheKey() {
        String[][] cases = {
                {"rule.a.severity=HIGH", "unknown rule key 'rule.a.severity'"},
                {"rule.a.min.severity=HIGH", "rule.a.min.severity must be one of"},
                {"rule.a.rho=1.5", "rule.a.rho must be in (0, 1]"},
                {"rule.a.rho=lots", "rule.a.rho is not a number"},
                {"rule.a.layers=fc1,../etc", "rule.a.layers"},
                {"rule.a.runs=prod-(", "rule.a.runs is not a regular expression"},
                {"rule.a/b.rho=0.5", "rule name"},
        };
        for (String[] c : cases) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> parse(c[0]), c[0]);
            assertTrue(e.getMessage().contains(c[1]), c[0] + " -> " + e.getMessage());
        }
    }

    @Test
    void configComesFromFileEnvAndOverridesInThatOrder(@org.junit.jupiter.api.io.TempDir Path dir) throws Exception {
        Path rules = dir.resolve("rules.properties");
        Files.writeString(rules, "rule.only.rho=0.5\n");
        Path file = dir.resolve("streams.properties");
        Files.writeString(file, "bootstrap=file:9092\napplication.id=from-file\nalerts.resolve.hold.ms=5\nkafka.num.stream.threads=2\n"
                + "rules.file=" + rules + "\n");
        StreamsAppConfig c = StreamsAppConfig.load(file, Map.of("CURVEWATCH_STREAMS_APPLICATION_ID", "from-env"),
                Map.of("bootstrap", "flag:9092"));
        assertEquals("from-env", c.applicationId());
        assertEquals("flag:9092", c.streams().getProperty("bootstrap.servers"));
        assertEquals("2", c.streams().getProperty("num.stream.threads"));
        assertEquals("exactly_once_v2", c.streams().getProperty("processing.guarantee"));
        assertEquals(5, c.resolveHoldMs());
        assertEquals(List.of("only"), c.rules().stream().map(EditRule::name).toList());
        StreamsAppConfig defaults = StreamsAppConfig.load(null, Map.of(), Map.of("bootstrap", "x:1"));
        assertEquals(List.of("gap-guard"), defaults.rules().stream().map(EditRule::name).toList());
        assertEquals("curvewatch-streams", defaults.applicationId());
        assertEquals(60_000, defaults.resolveHoldMs());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> StreamsAppConfig.load(null, Map.of(), Map.of("bootstrap", "x:1", "alerts.resolve.hold.ms", "soon")));
        assertTrue(e.getMessage().contains("alerts.resolve.hold.ms"), e.getMessage());
    }
}
