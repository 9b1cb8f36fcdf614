package dev.curvewatch.cli;

import dev.curvewatch.deploy.LocalKafka;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;

/** {@code curvewatch broker}: a local KRaft Kafka with the Curvewatch topics, until Ctrl-C. */
@Command(name = "broker", mixinStandardHelpOptions = true,
        description = "Start a single-node KRaft Kafka 4.3.1 broker from the Maven artifacts and create the Curvewatch topics.")
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

    @Override
    public Integer call() throws Exception {
        long start = System.nanoTime();
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
}
