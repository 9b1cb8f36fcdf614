package dev.curvewatch.schemas;

import java.io.IOException;
import java.io.Reader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;

/**
 * Client properties shared by every Curvewatch part: the bootstrap address plus security and
 * tuning settings from a properties file and from the environment, so TLS/SASL work without code
 * changes. Precedence, lowest first: file named by {@code CURVEWATCH_KAFKA_CONFIG}, environment
 * variables {@code CURVEWATCH_KAFKA_<NAME>} (NAME upper-case with '_' for '.', e.g.
 * {@code CURVEWATCH_KAFKA_SECURITY_PROTOCOL=SASL_SSL}, {@code CURVEWATCH_KAFKA_SASL_JAAS_CONFIG=...}),
 * then the explicit bootstrap address.
 */
public final class KafkaClientSettings {
    static final String ENV_PREFIX = "CURVEWATCH_KAFKA_";
    static final String CONFIG_FILE_ENV = "CURVEWATCH_KAFKA_CONFIG";

    private KafkaClientSettings() {
    }

    public static Properties forBootstrap(String bootstrapServers) {
        return forBootstrap(bootstrapServers, System.getenv());
    }

    static Properties forBootstrap(String bootstrapServers, Map<String, String> env) {
        Properties props = new Properties();
        String file = env.get(CONFIG_FILE_ENV);
        if (file != null && !file.isBlank()) {
            try (Reader in = Files.newBufferedReader(Path.of(file))) {
                props.load(in);
            } catch (IOException e) {
                throw new IllegalArgumentException(CONFIG_FILE_ENV + " names " + file + ", which cannot be read: " + e.getMessage(), e);
            }
        }
        env.forEach((name, value) -> {
            if (name.startsWith(ENV_PREFIX) && !name.equals(CONFIG_FILE_ENV)) {
                props.setProperty(name.substring(ENV_PREFIX.length()).toLowerCase(Locale.ROOT).replace('_', '.'), value);
            }
        });
        if (bootstrapServers != null && !bootstrapServers.isBlank()) {
            props.setProperty("bootstrap.servers", bootstrapServers);
        }
        if (!props.containsKey("bootstrap.servers")) {
            throw new IllegalArgumentException("no Kafka bootstrap address: pass --bootstrap or set CURVEWATCH_KAFKA_BOOTSTRAP_SERVERS");
        }
        return props;
    }
}
