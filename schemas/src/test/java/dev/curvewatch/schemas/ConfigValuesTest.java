package dev.curvewatch.schemas;

import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ConfigValuesTest {
    private static String refusal(ConfigValues v, java.util.function.Consumer<ConfigValues> read) {
        return assertThrows(IllegalArgumentException.class, () -> read.accept(v)).getMessage();
    }

    @Test
    void kafkaKeysPassThroughAndBootstrapWins() {
        Properties p = ConfigValues.of(Map.of("bootstrap", "h:1", "kafka.security.protocol", "SSL", "kafka.linger.ms", "9",
                "other", "x")).kafkaProperties("bootstrap", Map.of("linger.ms", "1", "acks", "all"));
        assertEquals("h:1", p.getProperty("bootstrap.servers"));
        assertEquals("SSL", p.getProperty("security.protocol"));
        assertEquals("9", p.getProperty("linger.ms"), "kafka.* overrides the component's client defaults");
        assertEquals("all", p.getProperty("acks"));
        assertFalse(p.containsKey("other"));
        Properties fallback = ConfigValues.of(Map.of("kafka.bootstrap.servers", "k:2")).kafkaProperties("bootstrap", Map.of());
        assertEquals("k:2", fallback.getProperty("bootstrap.servers"));
    }

    @Test
    void secretsAreMasked() {
        ConfigValues v = ConfigValues.of(Map.of("kafka.sasl.jaas.config", "x", "auth.tokens", "t", "ssl.key.password", "p", "port", "1"));
        Map<String, String> d = v.describe();
        assertEquals("***", d.get("kafka.sasl.jaas.config"));
        assertEquals("***", d.get("auth.tokens"));
        assertEquals("***", d.get("ssl.key.password"));
        assertEquals("1", d.get("port"));
        assertFalse(v.toString().contains("=t"), v.toString());
        String e = refusal(v, c -> c.longValue("auth.tokens"));
        assertFalse(e.contains("'t'"), "a secret is not repeated in an error: " + e);
    }

    @Test
    void typedValues() {
        ConfigValues v = ConfigValues.of(Map.of("n", " 12 ", "x", "0.25", "b", "TRUE", "p", " a/b ", "blank", " ",
                "unit", "seconds", "big", "3000000000"));
        assertEquals(12L, v.longValue("n"));
        assertEquals(12, v.intValue("n"));
        assertEquals(3_000_000_000L, v.longValue("big"));
        assertEquals(0.25, v.doubleValue("x"));
        assertTrue(v.booleanValue("b"));
        assertEquals(Path.of("a/b"), v.path("p"));
        assertEquals(Optional.empty(), v.optionalPath("blank"));
        assertEquals(Optional.empty(), v.optionalPath("absent"));
        assertEquals(TimeUnit.SECONDS, v.enumValue("unit", TimeUnit.class));
        assertEquals(" ", v.string("blank"));
        assertEquals("fallback", v.string("blank", "fallback"));
        assertEquals("fallback", v.string("absent", "fallback"));
        assertEquals("12", v.stringOrHostName("n", "x").trim());
        assertFalse(v.stringOrHostName("absent", "x").isBlank());
        assertThrows(UnsupportedOperationException.class, () -> v.asMap().put("n", "13"));
    }

    @Test
    void theValuesAreACopy() {
        Map<String, String> m = new HashMap<>(Map.of("n", "1"));
        ConfigValues v = ConfigValues.of(m);
        m.put("n", "2");
        assertEquals(1, v.longValue("n"));
    }

    @Test
    void badValuesNameTheirKeyAndTheValue() {
        ConfigValues v = ConfigValues.of(Map.of("n", "many", "x", "NaN", "b", "yes", "big", "3000000000", "unit", "fortnights"));
        assertEquals("n must be an integer, got 'many'", refusal(v, c -> c.longValue("n")));
        assertEquals("x must be a number, got 'NaN'", refusal(v, c -> c.doubleValue("x")));
        assertEquals("b must be true or false, got 'yes'", refusal(v, c -> c.booleanValue("b")));
        assertEquals("big must be an integer in [-2147483648, 2147483647], got '3000000000'", refusal(v, c -> c.intValue("big")));
        assertEquals("unit must be NANOSECONDS, MICROSECONDS, MILLISECONDS, SECONDS, MINUTES, HOURS or DAYS, got 'fortnights'",
                refusal(v, c -> c.enumValue("unit", TimeUnit.class)));
        assertEquals("absent must be an integer, and is not set", refusal(v, c -> c.longValue("absent")));
        assertEquals("absent must be a path, and is not set", refusal(v, c -> c.path("absent")));
        assertEquals("blank must be a path, got ' '", refusal(ConfigValues.of(Map.of("blank", " ")), c -> c.path("blank")));
        assertTrue(refusal(ConfigValues.of(Map.of("p", "a\0b")), c -> c.path("p")).startsWith("p must be a path, got 'a"));
    }
}
