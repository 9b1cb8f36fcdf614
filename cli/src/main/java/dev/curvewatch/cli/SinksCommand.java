package dev.curvewatch.cli;

import dev.curvewatch.sinks.AlertSinks;
import dev.curvewatch.sinks.SinksConfig;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;

/**
 * {@code curvewatch sinks}: alerts to Prometheus Alertmanager and/or a signed webhook (module
 * sinks). Flags override {@code CURVEWATCH_SINKS_*} variables, which override the {@code --config} file.
 */
@Command(name = "sinks", mixinStandardHelpOptions = true,
        description = "Forward the de-duplicated alerts to Prometheus Alertmanager (API v2) and/or a webhook signed with "
                + "HMAC-SHA256, with retries and dead letters. Ctrl-C stops it.")
public final class SinksCommand implements Callable<Integer> {
    @Option(names = "--bootstrap", defaultValue = "${env:CURVEWATCH_BOOTSTRAP}",
            description = "Kafka bootstrap servers (env CURVEWATCH_BOOTSTRAP or CURVEWATCH_KAFKA_BOOTSTRAP_SERVERS).")
    String bootstrap;

    @Option(names = "--config", description = "Properties file (keys in sinks/README.md).")
    Path config;

    @Option(names = "--alertmanager-url", description = "Alertmanager base URL, e.g. http://127.0.0.1:9093.")
    String alertmanagerUrl;

    @Option(names = "--webhook-url", description = "Webhook URL (POST, JSON).")
    String webhookUrl;

    @Option(names = "--webhook-secret-file", description = "File whose first line is the webhook's HMAC-SHA256 key "
            + "(or env CURVEWATCH_SINKS_WEBHOOK_SECRET).")
    Path webhookSecretFile;

    @Option(names = "--dashboard-url", description = "The service's dashboard, for each alert's link to its run page "
            + "(default http://127.0.0.1:8080).")
    String dashboardUrl;

    @Option(names = "--set", description = "Any other key as key=value (repeatable), e.g. --set webhook.attempts=8.")
    Map<String, String> extra = new LinkedHashMap<>();

    @Override
    public Integer call() throws Exception {
        Map<String, String> o = new LinkedHashMap<>(extra);
        put(o, SinksConfig.BOOTSTRAP, bootstrap);
        put(o, SinksConfig.ALERTMANAGER_URL, alertmanagerUrl);
        put(o, SinksConfig.WEBHOOK_URL, webhookUrl);
        put(o, SinksConfig.WEBHOOK_SECRET_FILE, webhookSecretFile);
        put(o, SinksConfig.DASHBOARD_URL, dashboardUrl);
        SinksConfig c;
        try {
            c = SinksConfig.load(config, System.getenv(), o);
        } catch (IllegalArgumentException bad) {
            System.err.println("curvewatch sinks: " + bad.getMessage());
            return 2;
        }
        try (AlertSinks sinks = AlertSinks.start(c)) {
            UntilStopped stop = UntilStopped.watch("sinks", sinks);
            System.out.println("curvewatch sinks: forwarding " + c.topics().alerts() + " to "
                    + c.alertmanagerUrl().map(u -> "Alertmanager " + u).orElse("")
                    + (c.alertmanagerUrl().isPresent() && c.webhookUrl().isPresent() ? " and " : "")
                    + c.webhookUrl().map(u -> "webhook " + u).orElse("") + "; Ctrl-C to stop");
            System.out.flush();
            stop.await();
        }
        return 0;
    }

    private static void put(Map<String, String> m, String key, Object value) {
        if (value != null && !value.toString().isBlank()) {
            m.put(key, value.toString());
        }
    }
}
