package dev.curvewatch.schemas;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.Properties;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ConfigLayersTest {
    private static final ConfigLayers LAYERS = new ConfigLayers("CURVEWATCH_THING_");

    @Test
    void defaultsThenFileThenEnvironmentThenOverrides(@TempDir Path dir) throws Exception {
        Path file = dir.resolve("thing.properties");
        Files.writeString(file, "a=file\nb=file\nc=file\n d.e = spaced \n");
        Map<String, String> v = LAYERS.load(Map.of("a", "default", "b", "default", "c", "default", "z", "default"), file, "thing config",
                Map.of("CURVEWATCH_THING_B", "env", "CURVEWATCH_THING_C", "env", "CURVEWATCH_OTHER_C", "other", "CURVEWATCH_THING_", "empty"),
                Map.of("c", "flag"));
        assertEquals("file", v.get("a"));
        assertEquals("env", v.get("b"));
        assertEquals("flag", v.get("c"));
        assertEquals("default", v.get("z"));
        assertEquals("spaced", v.get("d.e"));
        assertFalse(v.containsKey(""), "a bare prefix names no key");
    }

    @Test
    void environmentNamesBecomeDottedLowerCaseKeys() {
        assertEquals(Map.of("refresh.interval.ms", "5"), LAYERS.fromEnvironment(Map.of("CURVEWATCH_THING_REFRESH_INTERVAL_MS", " 5 ")));
    }

    @Test
    void kafkaKeysPassThroughAndBootstrapWins() {
        Properties p = ConfigLayers.kafkaProperties(Map.of("bootstrap", "h:1", "kafka.security.protocol", "SSL", "kafka.linger.ms", "9",
                "other", "x"), "bootstrap", Map.of("linger.ms", "1", "acks", "all"));
        assertEquals("h:1", p.getProperty("bootstrap.servers"));
        assertEquals("SSL", p.getProperty("security.protocol"));
        assertEquals("9", p.getProperty("linger.ms"), "kafka.* overrides the component's client defaults");
        assertEquals("all", p.getProperty("acks"));
        assertFalse(p.containsKey("other"));
        Properties fallback = ConfigLayers.kafkaProperties(Map.of("kafka.bootstrap.servers", "k:2"), "bootstrap", Map.of());
        assertEquals("k:2", fallback.getProperty("bootstrap.servers"));
    }

    @Test
    void secretsAreMaskedAndBadValuesNameTheirKey(@TempDir Path dir) {
        Map<String, String> d = ConfigLayers.describe(Map.of("kafka.sasl.jaas.config", "x", "auth.tokens", "t", "ssl.key.password", "p", "port", "1"));
        assertEquals("***", d.get("kafka.sasl.jaas.config"));
        assertEquals("***", d.get("auth.tokens"));
        assertEquals("***", d.get("ssl.key.password"));
        assertEquals("1", d.get("port"));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> ConfigLayers.longValue(Map.of("n", "many"), "n"));
        assertTrue(e.getMessage().contains("n must be an integer"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> ConfigLayers.doubleValue(Map.of("x", "NaN"), "x"));
        assertEquals(0.25, ConfigLayers.doubleValue(Map.of("x", "0.25"), "x"));
        assertThrows(IllegalArgumentException.class, () -> ConfigLayers.booleanValue(Map.of("b", "yes"), "b"));
        assertTrue(ConfigLayers.booleanValue(Map.of("b", "TRUE"), "b"));
        IllegalArgumentException missing = assertThrows(IllegalArgumentException.class,
                () -> LAYERS.load(Map.of(), dir.resolve("absent.properties"), "thing config", Map.of(), Map.of()));
        assertTrue(missing.getMessage().startsWith("thing config "), missing.getMessage());
    }
}
