package dev.curvewatch.cli;

import dev.curvewatch.service.CurvewatchService;
import dev.curvewatch.service.ServiceConfig;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;

/**
 * {@code curvewatch service}: the Vert.x service (module service, keys in service/README.md).
 * Flags override {@code CURVEWATCH_SERVICE_*} variables, which override the {@code --config} file;
 * Kafka TLS/SASL settings come from {@code CURVEWATCH_KAFKA_*} or {@code --set kafka.security.protocol=...}.
 */
@Command(name = "service", mixinStandardHelpOptions = true,
        description = "Run the service: eigenbases per refresh, calibration round trip with the trainer, memorization signals, "
                + "alerts, edited safetensors snapshots, REST + SSE/WebSocket API and dashboard. Ctrl-C stops it.")
public final class ServiceCommand implements Callable<Integer> {
    @Option(names = "--bootstrap", defaultValue = "${env:CURVEWATCH_BOOTSTRAP}",
            description = "Kafka bootstrap servers (env CURVEWATCH_BOOTSTRAP or CURVEWATCH_KAFKA_BOOTSTRAP_SERVERS).")
    String bootstrap;

    @Option(names = "--config", description = "Service properties file (keys in service/README.md).")
    Path config;

    @Option(names = "--http-port", description = "HTTP port (0 = any free port; default 8080).")
    Integer httpPort;

    @Option(names = "--http-host", description = "Address to listen on (default 127.0.0.1; 0.0.0.0 for every interface).")
    String httpHost;

    @Option(names = "--snapshot-dir", description = "Directory of edited snapshots (default .curvewatch/snapshots).")
    Path snapshotDir;

    @Option(names = "--auth-token-file", description = "File with the Bearer tokens of the edit/refresh/download endpoints, one per line "
            + "(or env CURVEWATCH_SERVICE_AUTH_TOKENS). Without a token those endpoints answer 403.")
    Path authTokenFile;

    @Option(names = "--set", description = "Any other service key as key=value (repeatable), e.g. --set refresh.interval.ms=2000.")
    Map<String, String> extra = new LinkedHashMap<>();

    @Override
    public Integer call() throws Exception {
        Map<String, String> o = new LinkedHashMap<>(extra);
        put(o, ServiceConfig.BOOTSTRAP, bootstrap);
        put(o, ServiceConfig.HTTP_PORT, httpPort);
        put(o, ServiceConfig.HTTP_HOST, httpHost);
        put(o, ServiceConfig.SNAPSHOT_DIR, snapshotDir);
        put(o, ServiceConfig.AUTH_TOKENS_FILE, authTokenFile);
        ServiceConfig c;
        try {
            c = ServiceConfig.load(config, System.getenv(), o);
            c.kafkaProperties(); // a missing bootstrap address is a usage error, not a start failure
        } catch (IllegalArgumentException bad) {
            System.err.println("curvewatch service: " + bad.getMessage());
            return 2;
        }
        try (CurvewatchService service = CurvewatchService.start(c)) {
            UntilStopped stop = UntilStopped.watch("service", service); // the hook closes (flushes) it before the JVM halts
            System.out.println("curvewatch service: " + service.url() + " (API under /api, dashboard at /); "
                    + (c.authTokens().isEmpty() ? "no auth token: edits are disabled (403); " : "")
                    + "Ctrl-C to stop");
            System.out.flush();
            stop.await();
        } catch (IllegalArgumentException | IllegalStateException e) {
            System.err.println("curvewatch service: " + e.getMessage());
            return 1;
        }
        return 0;
    }

    private static void put(Map<String, String> m, String key, Object value) {
        if (value != null && !value.toString().isBlank()) {
            m.put(key, value.toString());
        }
    }
}
