package dev.curvewatch.deploy;

import dev.curvewatch.schemas.CurvewatchTopics;
import org.apache.kafka.common.Uuid;

import java.io.IOException;
import java.io.Reader;
import java.io.Writer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.stream.Collectors;

/**
 * A real multi-node KRaft cluster on this machine: {@code nodes} brokers, each in combined mode
 * (broker and controller; the controllers form the quorum) in a child JVM of its own, from the
 * Maven artifacts as {@link LocalKafka}. Every topic, the Curvewatch ones and Kafka's internal
 * offsets and transaction-state topics alike, has replication factor {@code nodes} (at most 3)
 * and {@code min.insync.replicas} one less (2 of 3), so with producers at {@code acks=all} (every
 * Curvewatch producer) an acknowledged record is on two brokers and one broker may die without
 * losing anything or stopping writes. Node i lives in {@code dataDir/node-i}; the cluster id and
 * ports are remembered there, so a cluster restarts on its data.
 */
public final class LocalKafkaCluster implements AutoCloseable {
    private static final String CLUSTER_FILE = "curvewatch-cluster.properties";

    private final List<LocalKafka> nodes;

    private LocalKafkaCluster(List<LocalKafka> nodes) {
        this.nodes = nodes;
    }

    /**
     * Formats what is new, starts every node, waits until each serves and creates the topics.
     *
     * @param nodes 2 or 3 (a quorum of 3 tolerates one lost node)
     */
    public static LocalKafkaCluster start(Path dataDir, int nodes, int capturePartitions, CurvewatchTopics topics,
                                          Duration startTimeout) throws IOException {
        if (nodes < 2 || nodes > 3) {
            throw new IllegalArgumentException("a local cluster has 2 or 3 nodes, got " + nodes);
        }
        Files.createDirectories(dataDir);
        int minInsync = nodes - 1;
        List<LocalKafka> list = new ArrayList<>();
        for (int id = 1; id <= nodes; id++) {
            list.add(LocalKafka.builder().dataDir(dataDir.resolve("node-" + id)).capturePartitions(capturePartitions)
                    .topics(topics).startTimeout(startTimeout).node(id, nodes, minInsync).prepare());
        }
        String voters = list.stream().map(k -> k.nodeId() + "@127.0.0.1:" + k.controllerPort()).collect(Collectors.joining(","));
        String clusterId = clusterId(dataDir);
        LocalKafkaCluster cluster = new LocalKafkaCluster(list);
        try {
            for (LocalKafka k : list) {
                k.joinCluster(voters, clusterId);
                k.writeServerProperties();
                k.formatIfNew();
            }
            for (LocalKafka k : list) {
                k.launch();
            }
            long deadline = System.nanoTime() + startTimeout.toNanos();
            for (LocalKafka k : list) {
                k.awaitReady(deadline);
            }
            list.get(0).createTopics();
        } catch (IOException | RuntimeException e) {
            cluster.close();
            throw e;
        }
        return cluster;
    }

    /** The cluster id of this data directory: made once, then read back. */
    private static String clusterId(Path dataDir) throws IOException {
        Path file = dataDir.resolve(CLUSTER_FILE);
        Properties p = new Properties();
        if (Files.exists(file)) {
            try (Reader in = Files.newBufferedReader(file)) {
                p.load(in);
            }
        }
        String id = p.getProperty("cluster.id");
        if (id == null) {
            id = Uuid.randomUuid().toString();
            p.setProperty("cluster.id", id);
            try (Writer out = Files.newBufferedWriter(file)) {
                p.store(out, "the KRaft cluster id of this Curvewatch cluster's nodes");
            }
        }
        return id;
    }

    /** Every node's address, comma-separated. */
    public String bootstrapServers() {
        return nodes.stream().map(LocalKafka::bootstrapServers).collect(Collectors.joining(","));
    }

    public int size() {
        return nodes.size();
    }

    /** Node {@code i} (0-based): {@link LocalKafka#kill()} it like a crash, {@link LocalKafka#restart()} it on its data. */
    public LocalKafka node(int i) {
        return nodes.get(i);
    }

    public CurvewatchTopics topics() {
        return nodes.get(0).topics();
    }

    /** Stops every node: SIGTERM to all at once (each shuts down while its quorum still exists), then waits for each. */
    @Override
    public void close() {
        nodes.forEach(LocalKafka::requestStop);
        nodes.forEach(LocalKafka::stop);
    }
}
