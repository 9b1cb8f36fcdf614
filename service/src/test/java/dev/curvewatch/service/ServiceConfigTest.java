package dev.curvewatch.service;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Properties;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ServiceConfigTest {
    @Test
    void defaultsFileEnvironmentOverrides(@TempDir Path dir) throws Exception {
        Path tokens = dir.resolve("tokens");
        Files.writeString(tokens, "# comment\nfrom-file\n\n  spaced  \n");
        Path file = dir.resolve("service.properties");
        Files.writeString(file, "http.port=9001\nrefresh.interval.ms=100\nkafka.security.protocol=SSL\nauth.tokens.file=" + tokens + "\n");
        ServiceConfig c = ServiceConfig.load(file, Map.of("CURVEWATCH_SERVICE_REFRESH_INTERVAL_MS", "200",
                "CURVEWATCH_SERVICE_AUTH_TOKENS", "a,b"), Map.of("bootstrap", "h:1", "http.port", "0"));
        assertEquals(0, c.httpPort());
        assertEquals(200, c.refreshIntervalMs());
        assertEquals(List.of("a", "b", "from-file", "spaced"), c.authTokens());
        Properties k = c.kafkaProperties();
        assertEquals("h:1", k.getProperty("bootstrap.servers"));
        assertEquals("SSL", k.getProperty("security.protocol"));
        assertEquals("***", c.describe().get("auth.tokens"));
        assertEquals(60_000, c.calibrationTimeoutMs());
        assertEquals(Math.log(1.05), c.calibrationLossTolerance(), 1e-15);
        assertEquals("curvewatch.", c.topics().prefix());
        assertNull(c.alertRulesFile());
        assertTrue(ServiceConfig.defaults().containsKey("signals.history.points"));
        assertEquals((16 << 20) - (64 << 10), c.candidatePartMaxBytes(), "a part fits the tensor topics' record limit");
        assertEquals(1L << 30, c.candidateMaxBytes());
        assertEquals(dev.curvewatch.avro.CalibrationSearch.BISECT, c.calibrationSearch());
        assertEquals(8, c.calibrationPeakTokens());
        assertEquals(List.of(), c.calibrationTrainCandidates());
        assertEquals(20, c.calibrationMinSteps());
        assertEquals(200, c.calibrationMaxSteps());
        assertEquals(0.01, c.calibrationMinDrift());
        assertEquals(1, c.refreshMinSteps());
        assertEquals(List.of(3, 9), ServiceConfig.of(Map.of("calibration.train.candidates", "9, 3,9")).calibrationTrainCandidates());
    }

    @Test
    void nonsenseIsRefused() {
        for (Map<String, String> bad : List.of(Map.of("http.port", "70000"), Map.of("refresh.threads", "0"),
                Map.of("eigh.precision", "FLOAT8"), Map.of("calibration.tolerance", "-1"), Map.of("refresh.interval.ms", "soon"),
                Map.of("auth.tokens.file", "/no/such/file"), Map.of("runs.max", "0"), Map.of("candidate.part.max.bytes", "4096"),
                Map.of("candidate.part.max.bytes", Integer.toString(16 << 20)), Map.of("candidate.max.bytes", "-1"),
                Map.of("calibration.search", "SOME"), Map.of("calibration.train.candidates", "19"),
                Map.of("calibration.train.candidates", "x"), Map.of("calibration.min.steps", "300"), Map.of("calibration.min.drift", "-1"),
                Map.of("calibration.peak.tokens", "-1"), Map.of("refresh.min.steps", "-1"))) {
            assertThrows(IllegalArgumentException.class, () -> ServiceConfig.of(bad), bad.toString());
        }
        assertEquals(List.of(), ServiceConfig.of(Map.of()).authTokens(), "no token unless configured");
    }

    /** Reads need a token on a shared host by default, not on 127.0.0.1; the guard's harm tolerance is checked. */
    @Test
    void readAccessFollowsTheListenAddressUnlessSet() {
        assertEquals(false, ServiceConfig.of(Map.of()).readRequired(), "127.0.0.1 by default: convenient");
        assertEquals(false, ServiceConfig.of(Map.of("http.host", "localhost")).readRequired());
        assertEquals(true, ServiceConfig.of(Map.of("http.host", "0.0.0.0")).readRequired(), "a shared host: not world-readable");
        assertEquals(true, ServiceConfig.of(Map.of("http.host", "10.1.2.3")).readRequired());
        assertEquals(true, ServiceConfig.of(Map.of("auth.read.required", "true")).readRequired());
        assertEquals(false, ServiceConfig.of(Map.of("http.host", "0.0.0.0", "auth.read.required", "false")).readRequired());
        IllegalArgumentException bad = assertThrows(IllegalArgumentException.class,
                () -> ServiceConfig.of(Map.of("auth.read.required", "sometimes")));
        assertTrue(bad.getMessage().contains("auth.read.required"), bad.getMessage());
        assertEquals(0.02, ServiceConfig.of(Map.of()).guardHarmTolerance());
        assertThrows(IllegalArgumentException.class, () -> ServiceConfig.of(Map.of("guard.harm.tolerance", "-1")));
    }
}
