package dev.curvewatch.sinks;

import dev.curvewatch.schemas.ConfigLayers;
import dev.curvewatch.schemas.ConfigValues;
import dev.curvewatch.schemas.CurvewatchTopics;

import java.io.IOException;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;

/**
 * Configuration of the alert sinks, layered by {@link ConfigLayers}: defaults, file,
 * {@code CURVEWATCH_SINKS_<KEY>} environment variables, explicit overrides (flags). Keys:
 * <pre>
 * bootstrap, topic.prefix (curvewatch.), instance.id (host name)
 * dashboard.url              http://127.0.0.1:8080: generatorURL = dashboard.url/#/runs/run
 * alertmanager.url           e.g. http://127.0.0.1:9093 (empty: no Alertmanager sink)
 * alertmanager.resend.ms     60000: firing alerts are re-sent this often; endsAt = now + 4 x this
 * webhook.url                empty: no webhook sink
 * webhook.secret / webhook.secret.file   HMAC-SHA256 key of the signature header (required with a url)
 * webhook.attempts           5: tries per alert before its dead letter
 * webhook.backoff.ms         500: wait before the 2nd try, doubled each time, at most 30 s
 * http.timeout.ms            5000: per request, both sinks
 * queue.max                  1000: alerts waiting per sink; beyond it the oldest is a dead letter
 * kafka.*                    passed to the Kafka clients
 * </pre>
 */
public final class SinksConfig {
    public static final String BOOTSTRAP = "bootstrap";
    public static final String TOPIC_PREFIX = "topic.prefix";
    public static final String INSTANCE_ID = "instance.id";
    public static final String DASHBOARD_URL = "dashboard.url";
    public static final String ALERTMANAGER_URL = "alertmanager.url";
    public static final String ALERTMANAGER_RESEND_MS = "alertmanager.resend.ms";
    public static final String WEBHOOK_URL = "webhook.url";
    public static final String WEBHOOK_SECRET = "webhook.secret";
    public static final String WEBHOOK_SECRET_FILE = "webhook.secret.file";
    public static final String WEBHOOK_ATTEMPTS = "webhook.attempts";
    public static final String WEBHOOK_BACKOFF_MS = "webhook.backoff.ms";
    public static final String HTTP_TIMEOUT_MS = "http.timeout.ms";
    public static final String QUEUE_MAX = "queue.max";
    private static final ConfigLayers LAYERS = new ConfigLayers("CURVEWATCH_SINKS_");
    private static final Map<String, String> DEFAULTS = Map.ofEntries(Map.entry(TOPIC_PREFIX, CurvewatchTopics.DEFAULT_PREFIX),
            Map.entry(DASHBOARD_URL, "http://127.0.0.1:8080"), Map.entry(ALERTMANAGER_URL, ""),
            Map.entry(ALERTMANAGER_RESEND_MS, "60000"), Map.entry(WEBHOOK_URL, ""), Map.entry(WEBHOOK_SECRET, ""),
            Map.entry(WEBHOOK_SECRET_FILE, ""), Map.entry(WEBHOOK_ATTEMPTS, "5"), Map.entry(WEBHOOK_BACKOFF_MS, "500"),
            Map.entry(HTTP_TIMEOUT_MS, "5000"), Map.entry(QUEUE_MAX, "1000"));

    private final ConfigValues values;

    private SinksConfig(Map<String, String> v) {
        this.values = ConfigValues.of(v);
        if (alertmanagerUrl().isEmpty() && webhookUrl().isEmpty()) {
            throw new IllegalArgumentException("no sink configured: set " + ALERTMANAGER_URL + " and/or " + WEBHOOK_URL);
        }
        if (webhookUrl().isPresent() && webhookSecret().isEmpty()) {
            throw new IllegalArgumentException(WEBHOOK_URL + " needs " + WEBHOOK_SECRET + " or " + WEBHOOK_SECRET_FILE
                    + ": receivers verify the signature with it");
        }
        if (resendMs() < 1000 || webhookAttempts() < 1 || backoffMs() < 0 || httpTimeoutMs() < 1 || queueMax() < 1) {
            throw new IllegalArgumentException(ALERTMANAGER_RESEND_MS + " >= 1000, " + WEBHOOK_ATTEMPTS + ", " + HTTP_TIMEOUT_MS
                    + ", " + QUEUE_MAX + " >= 1 and " + WEBHOOK_BACKOFF_MS + " >= 0 are required");
        }
        dashboardUrl();
    }

    public static SinksConfig of(Map<String, String> overrides) {
        return load(null, System.getenv(), overrides);
    }

    public static SinksConfig load(Path file, Map<String, String> env, Map<String, String> overrides) {
        return new SinksConfig(LAYERS.load(DEFAULTS, file, "sinks config", env, overrides));
    }

    public CurvewatchTopics topics() {
        return new CurvewatchTopics(values.string(TOPIC_PREFIX));
    }

    public String component() {
        return "sinks:" + values.stringOrHostName(INSTANCE_ID, "sinks");
    }

    public String dashboardUrl() {
        String u = values.string(DASHBOARD_URL).replaceAll("/+$", "");
        url(u, DASHBOARD_URL);
        return u;
    }

    public Optional<URI> alertmanagerUrl() {
        String u = values.string(ALERTMANAGER_URL).trim().replaceAll("/+$", "");
        return u.isEmpty() ? Optional.empty() : Optional.of(url(u + "/api/v2/alerts", ALERTMANAGER_URL));
    }

    public long resendMs() {
        return values.longValue(ALERTMANAGER_RESEND_MS);
    }

    public Optional<URI> webhookUrl() {
        String u = values.string(WEBHOOK_URL).trim();
        return u.isEmpty() ? Optional.empty() : Optional.of(url(u, WEBHOOK_URL));
    }

    /** The webhook's HMAC key: webhook.secret, or the first line of webhook.secret.file. */
    public Optional<byte[]> webhookSecret() {
        String inline = values.string(WEBHOOK_SECRET);
        if (!inline.isBlank()) {
            return Optional.of(inline.trim().getBytes(StandardCharsets.UTF_8));
        }
        return values.optionalPath(WEBHOOK_SECRET_FILE).map(f -> {
            try {
                String s = Files.readString(f, StandardCharsets.UTF_8).lines().findFirst().orElse("").trim();
                if (s.isEmpty()) {
                    throw new IllegalArgumentException(WEBHOOK_SECRET_FILE + " " + f + " is empty");
                }
                return s.getBytes(StandardCharsets.UTF_8);
            } catch (IOException e) {
                throw new IllegalArgumentException(WEBHOOK_SECRET_FILE + " " + f + " cannot be read: " + e.getMessage(), e);
            }
        });
    }

    public int webhookAttempts() {
        return values.intValue(WEBHOOK_ATTEMPTS);
    }

    public long backoffMs() {
        return values.longValue(WEBHOOK_BACKOFF_MS);
    }

    public long httpTimeoutMs() {
        return values.longValue(HTTP_TIMEOUT_MS);
    }

    public int queueMax() {
        return values.intValue(QUEUE_MAX);
    }

    public Properties kafkaProperties() {
        return values.kafkaProperties(BOOTSTRAP, Map.of());
    }

    private static URI url(String u, String key) {
        try {
            URI uri = URI.create(u);
            if (!"http".equals(uri.getScheme()) && !"https".equals(uri.getScheme()) || uri.getHost() == null) {
                throw new IllegalArgumentException("not an http(s) URL");
            }
            return uri;
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(key + " must be an http(s) URL, got '" + u + "'", e);
        }
    }
}
