package dev.curvewatch.cli;

import dev.curvewatch.workers.WorkerMain;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;

/**
 * {@code curvewatch worker}: a member of the captures consumer group that keeps exactly-once
 * running K-FAC factors (module workers, see workers/README.md for every key). Flags override
 * {@code CURVEWATCH_WORKER_*} variables, which override the {@code --config} file; Kafka TLS/SASL
 * settings come from {@code CURVEWATCH_KAFKA_*} or {@code --set kafka.security.protocol=...}.
 */
@Command(name = "worker", mixinStandardHelpOptions = true,
        description = "Consume captures, validate them (bad ones to dead letters with a reason), keep running A and G "
                + "factors per layer and checkpoint them exactly once to the factors topic. "
                + "SIGTERM/Ctrl-C: final checkpoint, then exit.")
public final class WorkerCommand implements Callable<Integer> {
    @Option(names = "--bootstrap", defaultValue = "${env:CURVEWATCH_BOOTSTRAP}",
            description = "Kafka bootstrap servers (env CURVEWATCH_BOOTSTRAP or CURVEWATCH_KAFKA_BOOTSTRAP_SERVERS).")
    String bootstrap;

    @Option(names = "--config", description = "Worker properties file (keys as in workers/README.md).")
    Path config;

    @Option(names = "--instance-id", description = "Stable, unique id of this worker (transactional id, static group member); default: host name.")
    String instanceId;

    @Option(names = "--group", description = "Consumer group id (default curvewatch-workers).")
    String group;

    @Option(names = "--topic-prefix", description = "Topic name prefix (default curvewatch.).")
    String topicPrefix;

    @Option(names = "--metrics-port", description = "Port of /metrics and /health (-1 off, 0 any free port; default -1).")
    Integer metricsPort;

    @Option(names = "--checkpoint-tokens", description = "Checkpoint after this many tokens (default 1000000).")
    Long checkpointTokens;

    @Option(names = "--checkpoint-interval-ms", description = "Checkpoint at least this often while anything changed (default 10000).")
    Long checkpointIntervalMs;

    @Option(names = "--precision", description = "Factor accumulation precision: FLOAT32 or FLOAT64 (default FLOAT64).")
    String precision;

    @Option(names = "--set", description = "Any other worker key as key=value (repeatable), e.g. --set kafka.security.protocol=SSL.")
    Map<String, String> extra = new LinkedHashMap<>();

    @Override
    public Integer call() throws Exception {
        Map<String, String> overrides = new LinkedHashMap<>(extra);
        put(overrides, "bootstrap", bootstrap);
        put(overrides, "instance.id", instanceId);
        put(overrides, "group.id", group);
        put(overrides, "topic.prefix", topicPrefix);
        put(overrides, "metrics.port", metricsPort);
        put(overrides, "checkpoint.tokens", checkpointTokens);
        put(overrides, "checkpoint.interval.ms", checkpointIntervalMs);
        put(overrides, "precision", precision);
        try {
            return WorkerMain.run(config, overrides);
        } catch (IllegalArgumentException bad) {
            System.err.println("curvewatch worker: " + bad.getMessage());
            return 2;
        }
    }

    private static void put(Map<String, String> m, String key, Object value) {
        if (value != null && !value.toString().isBlank()) {
            m.put(key, value.toString());
        }
    }
}
