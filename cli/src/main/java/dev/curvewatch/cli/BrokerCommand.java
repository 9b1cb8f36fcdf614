package dev.curvewatch.cli;

import dev.curvewatch.deploy.LocalKafka;
import dev.curvewatch.deploy.LocalKafkaCluster;
import dev.curvewatch.schemas.CurvewatchTopics;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;

/** {@code curvewatch broker}: a local KRaft Kafka (one node, or a cluster of 2-3) with the Curvewatch topics, until Ctrl-C. */
@Command(name = "broker", mixinStandardHelpOptions = true,
        description = "Start a KRaft Kafka 4.3.1 broker (or a cluster of --nodes) from the Maven artifacts and create the Curvewatch topics.")
final class BrokerCommand implements Callable<Integer> {
    @Option(names = "--port", defaultValue = "${env:CURVEWATCH_BROKER_PORT:-0}",
            description = "Client port (0 = a free one, remembered in the data dir; env CURVEWATCH_BROKER_PORT).")
    int port;

    @Option(names = "--controller-port", defaultValue = "${env:CURVEWATCH_BROKER_CONTROLLER_PORT:-0}",
            description = "KRaft controller port (0 = free).")
    int controllerPort;

    @Option(names = "--data-dir", defaultValue = "${env:CURVEWATCH_BROKER_DIR:-.curvewatch/broker}",
            description = "Broker data directory; reused if it exists (env CURVEWATCH_BROKER_DIR).")
    Path dataDir;

    @Option(names = "--partitions", defaultValue = "4", description = "Partitions of the per-layer topics.")
    int partitions;

    @Option(names = "--nodes", defaultValue = "1", description = "1, or 3 (2 also works) for a local KRaft cluster: every topic "
            + "replicated to all nodes with min.insync.replicas one less; nodes in <data-dir>/node-<i>, free ports remembered there "
            + "(--port and --controller-port apply to a single node only).")
    int nodes;

    @Override
    public Integer call() throws Exception {
        long start = System.nanoTime();
        if (nodes != 1) {
            return cluster(start);
        }
        System.out.println("curvewatch broker: starting Kafka in " + dataDir.toAbsolutePath() + " ...");
        LocalKafka kafka = LocalKafka.builder().dataDir(dataDir).port(port).controllerPort(controllerPort)
                .capturePartitions(partitions).start();
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            System.out.println("curvewatch broker: stopping ...");
            kafka.stop();
            stopped.countDown();
        }, "broker-stop"));
        System.out.printf("curvewatch broker: ready in %.1f s%n", (System.nanoTime() - start) / 1e9);
        System.out.println("bootstrap=" + kafka.bootstrapServers());
        System.out.println("topics: " + kafka.topics().prefix() + "* (log: " + kafka.logFile() + "); Ctrl-C to stop");
        System.out.flush();
        stopped.await();
        return 0;
    }

    private int cluster(long start) throws Exception {
        if (nodes < 2 || nodes > 3) {
            System.err.println("curvewatch broker: --nodes must be 1, 2 or 3, got " + nodes);
            return 2;
        }
        System.out.println("curvewatch broker: starting a " + nodes + "-node Kafka cluster in " + dataDir.toAbsolutePath() + " ...");
        LocalKafkaCluster cluster = LocalKafkaCluster.start(dataDir, nodes, partitions, CurvewatchTopics.withDefaultPrefix(),
                java.time.Duration.ofSeconds(180));
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            System.out.println("curvewatch broker: stopping the cluster ...");
            cluster.close();
            stopped.countDown();
        }, "broker-stop"));
        System.out.printf("curvewatch broker: %d nodes ready in %.1f s (replication factor %d, min.insync.replicas %d)%n", nodes,
                (System.nanoTime() - start) / 1e9, nodes, nodes - 1);
        System.out.println("bootstrap=" + cluster.bootstrapServers());
        System.out.println("topics: " + cluster.topics().prefix() + "* (logs: " + dataDir.resolve("node-<i>/broker.log") + "); Ctrl-C to stop");
        System.out.flush();
        stopped.await();
        return 0;
    }
}
