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
        if (nodes < 1 || nodes > 3) {
            System.err.println("curvewatch broker: --nodes must be 1, 2 or 3, got " + nodes);
            return 2;
        }
        if (nodes == 1) {
            System.out.println("curvewatch broker: starting Kafka in " + dataDir.toAbsolutePath() + " ...");
            LocalKafka kafka = LocalKafka.builder().dataDir(dataDir).port(port).controllerPort(controllerPort)
                    .capturePartitions(partitions).start();
            return untilStopped(kafka::stop, String.format("ready in %.1f s", (System.nanoTime() - start) / 1e9),
                    kafka.bootstrapServers(), kafka.topics().prefix(), kafka.logFile().toString());
        }
        System.out.println("curvewatch broker: starting a " + nodes + "-node Kafka cluster in " + dataDir.toAbsolutePath() + " ...");
        LocalKafkaCluster cluster = LocalKafkaCluster.start(dataDir, nodes, partitions, CurvewatchTopics.withDefaultPrefix(),
                java.time.Duration.ofSeconds(180));
        return untilStopped(cluster::close, String.format("%d nodes ready in %.1f s (replication factor %d, min.insync.replicas %d)",
                nodes, (System.nanoTime() - start) / 1e9, nodes, nodes - 1), cluster.bootstrapServers(), cluster.topics().prefix(),
                dataDir.resolve("node-<i>/broker.log").toString());
    }

    /** Prints where the broker is and waits until the JVM stops (SIGTERM, Ctrl-C), stopping it then. */
    private static int untilStopped(Runnable stop, String ready, String bootstrap, String prefix, String log) throws InterruptedException {
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            System.out.println("curvewatch broker: stopping ...");
            stop.run();
            stopped.countDown();
        }, "broker-stop"));
        System.out.println("curvewatch broker: " + ready);
        System.out.println("bootstrap=" + bootstrap);
        System.out.println("topics: " + prefix + "* (log: " + log + "); Ctrl-C or SIGTERM to stop");
        System.out.flush();
        stopped.await();
        return 0;
    }
}
