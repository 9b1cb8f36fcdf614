package dev.curvewatch.cli;

import dev.curvewatch.streams.CurvewatchStreams;
import dev.curvewatch.streams.StreamsAppConfig;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;

/**
 * {@code curvewatch streams}: the Kafka Streams app (module streams). Flags override
 * {@code CURVEWATCH_STREAMS_*} variables, which override the {@code --config} file.
 */
@Command(name = "streams", mixinStandardHelpOptions = true,
        description = "Run the Kafka Streams app: run registry, alert de-duplication and anti-flapping, the live guard "
                + "(alerts -> edit requests within its limits, every decision on guard-decisions), dead-letter statistics. Ctrl-C stops it.")
public final class StreamsCommand implements Callable<Integer> {
    @Option(names = "--bootstrap", defaultValue = "${env:CURVEWATCH_BOOTSTRAP}",
            description = "Kafka bootstrap servers (env CURVEWATCH_BOOTSTRAP or CURVEWATCH_KAFKA_BOOTSTRAP_SERVERS).")
    String bootstrap;

    @Option(names = "--config", description = "Properties file (keys in streams/README.md).")
    Path config;

    @Option(names = "--rules", description = "Guard rules file (rule.<name>.signal/min.severity/runs/layers/rho/cooldown.steps/"
            + "max.edits/escalate/escalate.within.steps/apply.timeout.steps); default: one rule, gap-guard: a WARNING or CRITICAL "
            + "memorization_gap alert -> calibrated edit of the alert's layer, within the guard's limits (streams/README.md).")
    Path rules;

    @Option(names = "--application-id", description = "Kafka Streams application id (default curvewatch-streams).")
    String applicationId;

    @Option(names = "--resolve-hold-ms", description = "Publish a RESOLVED only after the condition stayed resolved this long (default 60000).")
    Long resolveHoldMs;

    @Option(names = "--set", description = "Any other key as key=value (repeatable), e.g. --set kafka.security.protocol=SSL.")
    Map<String, String> extra = new LinkedHashMap<>();

    @Override
    public Integer call() throws Exception {
        Map<String, String> o = new LinkedHashMap<>(extra);
        put(o, StreamsAppConfig.BOOTSTRAP, bootstrap);
        put(o, StreamsAppConfig.RULES_FILE, rules);
        put(o, StreamsAppConfig.APPLICATION_ID, applicationId);
        put(o, StreamsAppConfig.RESOLVE_HOLD_MS, resolveHoldMs);
        StreamsAppConfig c;
        try {
            c = StreamsAppConfig.load(config, System.getenv(), o);
        } catch (IllegalArgumentException bad) {
            System.err.println("curvewatch streams: " + bad.getMessage());
            return 2;
        }
        try (CurvewatchStreams app = CurvewatchStreams.start(c, Duration.ofSeconds(120))) {
            UntilStopped stop = UntilStopped.watch("streams", app); // the hook closes it (state flushed, offsets committed)
            System.out.println("curvewatch streams: running as " + c.applicationId() + " with " + c.rules().size()
                    + " edit rule(s); Ctrl-C to stop");
            System.out.flush();
            stop.await();
        } catch (IllegalStateException e) {
            System.err.println("curvewatch streams: " + e.getMessage());
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
