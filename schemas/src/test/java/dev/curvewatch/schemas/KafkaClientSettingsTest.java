package dev.curvewatch.schemas;

import org.junit.jupiter.api.Test;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.Properties;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class KafkaClientSettingsTest {
    @Test
    void environmentMapsToClientProperties() {
        Properties p = KafkaClientSettings.forBootstrap("127.0.0.1:9092", Map.of(
                "CURVEWATCH_KAFKA_SECURITY_PROTOCOL", "SASL_SSL",
                "CURVEWATCH_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512",
                "HOME", "/root"));
        assertEquals("SASL_SSL", p.getProperty("security.protocol"));
        assertEquals("SCRAM-SHA-512", p.getProperty("sasl.mechanism"));
        assertEquals("127.0.0.1:9092", p.getProperty("bootstrap.servers"));
        assertEquals(3, p.size());
    }

    @Test
    void fileIsReadAndEnvironmentWins(@org.junit.jupiter.api.io.TempDir Path dir) throws Exception {
        Path file = dir.resolve("client.properties");
        Files.writeString(file, "security.protocol=SSL\nssl.truststore.location=/etc/ts.jks\nbootstrap.servers=b:1\n");
        Properties p = KafkaClientSettings.forBootstrap(null, Map.of(
                "CURVEWATCH_KAFKA_CONFIG", file.toString(), "CURVEWATCH_KAFKA_SECURITY_PROTOCOL", "SASL_SSL"));
        assertEquals("SASL_SSL", p.getProperty("security.protocol"));
        assertEquals("/etc/ts.jks", p.getProperty("ssl.truststore.location"));
        assertEquals("b:1", p.getProperty("bootstrap.servers"));
    }

    @Test
    void missingBootstrapOrFileIsAClearError() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> KafkaClientSettings.forBootstrap(null, Map.of()));
        assertTrue(e.getMessage().contains("--bootstrap"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class,
                () -> KafkaClientSettings.forBootstrap("x:1", Map.of("CURVEWATCH_KAFKA_CONFIG", "/nonexistent/c.properties")));
        assertTrue(e.getMessage().contains("/nonexistent/c.properties"), e.getMessage());
    }
}
