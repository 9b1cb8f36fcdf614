package dev.curvewatch.it;

import dev.curvewatch.deploy.LocalKafka;
import dev.curvewatch.deploy.LocalKafkaCluster;
import dev.curvewatch.schemas.CurvewatchTopics;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.time.Duration;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;

/**
 * Issue 14 item 4, the whole pipeline: a real 3-node KRaft cluster ({@link LocalKafkaCluster}: every
 * topic replicated three times, min.insync.replicas 2, producers at acks=all), a worker and the
 * service (JVMs of their own, shipped service defaults) under the serialized {@link PipelineFeed}. One
 * broker is SIGKILLed right after the captures of version 4 are sent (the worker checkpoints, the
 * service refreshes, sends a candidate and calibrates with it down), and restarted on its data after
 * those of version 6. Compared with the same feed on one broker: the last factor checkpoint of every
 * run (version, tokens, sha256 of the chunk bytes: nothing lost, bit-identical), the signals (each
 * published once), alerts and snapshots equal; the pipeline goes on after the restart (versions 6-7).
 * The default CI run has {@code WorkerClusterIT} (workers: a broker killed under the worker alone).
 */
@Tag("long") // 6 min at load average 35-40 here: in the long-its profile (mvn -pl integration-tests verify -Plong-its)
class PipelineClusterIT {
    @Test
    void aBrokerKilledMidRunLosesNothingAndThePipelineGoesOn() throws Exception {
        Path dir = Path.of("target", "pipeline-cluster-it").toAbsolutePath(); // kept after a failure: the child JVMs' logs
        PipelineFeed.deleteTree(dir);
        List<String> runs = PipelineFeed.runsOnDistinctPartitions(2, 4);
        PipelineFeed.Outcome cluster;
        try (LocalKafkaCluster c = LocalKafkaCluster.start(dir.resolve("cluster"), 3, 4, CurvewatchTopics.withDefaultPrefix(),
                Duration.ofSeconds(180))) {
            cluster = PipelineFeed.run(c.bootstrapServers(), c.topics(), dir.resolve("with-kill"), runs, 1, -1, (v, step, w, s, r) -> {
                if (v == PipelineFeed.KILL_AT) {
                    c.node(1).kill();
                    System.out.printf("broker 2 of 3 SIGKILLed after the captures of version %d%n", v);
                } else if (v == PipelineFeed.KILL_AT + 2) {
                    c.node(1).restart();
                    System.out.printf("broker 2 of 3 restarted after the captures of version %d%n", v);
                }
                return 0;
            });
        }
        PipelineFeed.Outcome single;
        try (LocalKafka kafka = LocalKafka.builder().dataDir(dir.resolve("kafka-single")).capturePartitions(4).start()) {
            single = PipelineFeed.run(kafka.bootstrapServers(), kafka.topics(), dir.resolve("uninterrupted"), runs, 1, -1,
                    (v, s, w, sv, r) -> 0);
        }
        assertEquals(single.factors(), cluster.factors(), "the last factor checkpoints: version, tokens, sha256");
        assertEquals(single.signals().keySet(), cluster.signals().keySet(), "the same signals (run, name, factor version)");
        single.signals().forEach((k, v) -> assertEquals(v, cluster.signals().get(k), 1e-9 * Math.max(1, Math.abs(v)), k));
        cluster.signalCounts().forEach((k, n) -> assertEquals(1, n, "published once: " + k));
        assertFalse(single.alerts().isEmpty(), "the feed makes the gap rules fire");
        assertEquals(single.alerts(), cluster.alerts(), "the same alerts (run, rule, status, step)");
        assertEquals(single.snapshots(), cluster.snapshots(), "the same snapshots, each answered once");
        System.out.println("3-node cluster, one broker SIGKILLed mid-run and restarted: factors " + cluster.factors()
                + " equal to an uninterrupted run; signals, alerts and snapshots too");
    }
}
