package dev.curvewatch.deploy;

import dev.curvewatch.deploy.internal.BrokerMain;
import dev.curvewatch.deploy.internal.FreePorts;
import dev.curvewatch.schemas.CurvewatchTopics;
import dev.curvewatch.schemas.TopicSpec;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.common.Uuid;
import org.apache.kafka.common.errors.TopicExistsException;

import java.io.IOException;
import java.io.Reader;
import java.io.Writer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * A real single-node Kafka broker (KRaft combined mode, Kafka 4.3.1 from the Maven artifacts) in a
 * child JVM, with the Curvewatch topics created. Used by {@code ./curvewatch broker}, the demo and
 * the integration tests. A child process rather than an in-process broker so that tests can kill
 * -9 it, restart it on the same data, and so its memory and threads stay out of the caller's.
 *
 * <p>A data directory formatted once is reused on the next start, with the same ports. One node
 * of a {@link LocalKafkaCluster} is a LocalKafka too, configured by the cluster (node id, the
 * controller quorum, replication).
 */
public final class LocalKafka implements AutoCloseable {
    private static final String STATE_FILE = "curvewatch-broker.properties";

    private final Builder config;
    private final Path dataDir;
    private final int port;
    private final int controllerPort;
    private String quorumVoters;
    private String clusterId;
    private Process process;

    private LocalKafka(Builder config, Path dataDir, int port, int controllerPort) {
        this.config = config;
        this.dataDir = dataDir;
        this.port = port;
        this.controllerPort = controllerPort;
        this.quorumVoters = config.nodeId + "@127.0.0.1:" + controllerPort;
    }

    public static Builder builder() {
        return new Builder();
    }

    public String bootstrapServers() {
        return "127.0.0.1:" + port;
    }

    public int port() {
        return port;
    }

    int controllerPort() {
        return controllerPort;
    }

    int nodeId() {
        return config.nodeId;
    }

    public Path dataDir() {
        return dataDir;
    }

    public Path logFile() {
        return dataDir.resolve("broker.log");
    }

    public CurvewatchTopics topics() {
        return config.topics;
    }

    public boolean isRunning() {
        return process != null && process.isAlive();
    }

    /** Graceful stop (SIGTERM, controlled shutdown); waits up to 60 s, then kills. */
    public void stop() {
        if (process == null) {
            return;
        }
        process.destroy();
        try {
            if (!process.waitFor(60, TimeUnit.SECONDS)) {
                process.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
            }
        } catch (InterruptedException e) {
            process.destroyForcibly();
            Thread.currentThread().interrupt();
        }
        process = null;
    }

    /** SIGTERM without waiting: a cluster stops its nodes together, since a lone node's controlled shutdown waits for its quorum. */
    void requestStop() {
        if (process != null) {
            process.destroy();
        }
    }

    /** SIGKILL, as a crash would. */
    public void kill() {
        if (process == null) {
            return;
        }
        process.destroyForcibly();
        try {
            process.waitFor(30, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        process = null;
    }

    /** Starts again on the same data directory and ports (after {@link #stop} or {@link #kill}). */
    public LocalKafka restart() throws IOException {
        if (isRunning()) {
            stop();
        }
        launch();
        awaitReady(System.nanoTime() + config.startTimeout.toNanos());
        return this;
    }

    @Override
    public void close() {
        stop();
    }

    /** Starts the broker process (a cluster's nodes all start before any can answer: they need their quorum). */
    void launch() throws IOException {
        Path props = dataDir.resolve("server.properties");
        process = ownSession(javaProcess(BrokerMain.class.getName(), props.toString()))
                .redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.appendTo(logFile().toFile()))
                .start();
    }

    /** Waits until this node answers a describeCluster, or the deadline (System.nanoTime) passes. */
    void awaitReady(long deadline) throws IOException {
        try (Admin admin = Admin.create(adminProps())) {
            while (true) {
                if (!process.isAlive()) {
                    throw new IOException("Kafka broker exited with code " + process.exitValue() + " during start; see " + logFile());
                }
                try {
                    admin.describeCluster().nodes().get(2, TimeUnit.SECONDS);
                    break;
                } catch (ExecutionException | TimeoutException e) {
                    if (System.nanoTime() > deadline) {
                        kill();
                        throw new IOException("Kafka broker not ready after " + config.startTimeout.toSeconds() + " s; see " + logFile());
                    }
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new IOException("interrupted while waiting for the broker", e);
                }
            }
        }
    }

    /** Creates the Curvewatch topics (existing ones are left as they are), replicated as this node's cluster is. */
    void createTopics() throws IOException {
        try (Admin admin = Admin.create(adminProps())) {
            createTopics(admin);
        }
    }

    private void createTopics(Admin admin) throws IOException {
        List<NewTopic> topics = new ArrayList<>();
        for (TopicSpec spec : config.topics.specs(config.capturePartitions)) {
            java.util.Map<String, String> configs = new java.util.HashMap<>(spec.configs());
            configs.put("min.insync.replicas", Integer.toString(config.minInsyncReplicas));
            topics.add(new NewTopic(spec.name(), spec.partitions(), (short) config.replicationFactor).configs(configs));
        }
        var results = admin.createTopics(topics).values();
        for (var entry : results.entrySet()) {
            try {
                entry.getValue().get(60, TimeUnit.SECONDS);
            } catch (ExecutionException e) {
                if (!(e.getCause() instanceof TopicExistsException)) {
                    throw new IOException("cannot create topic " + entry.getKey() + ": " + e.getCause().getMessage(), e);
                }
            } catch (TimeoutException | InterruptedException e) {
                throw new IOException("timed out creating topic " + entry.getKey(), e);
            }
        }
    }

    private Properties adminProps() {
        Properties p = new Properties();
        p.setProperty(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrapServers());
        p.setProperty(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "5000");
        p.setProperty(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "10000");
        p.setProperty(AdminClientConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "200");
        return p;
    }

    /**
     * Runs the broker in a session of its own (setsid, where the machine has it): a terminal's
     * Ctrl-C reaches the whole foreground process group, and a broker that stopped at the same
     * moment as its parent would leave the parent's clients (a streams app committing, a worker
     * checkpointing) hanging in their close. The parent stops it last; if the parent dies, the
     * broker sees its stdin close and stops ({@link BrokerMain}).
     */
    private static ProcessBuilder ownSession(ProcessBuilder pb) {
        Path setsid = Path.of("/usr/bin/setsid");
        if (Files.isExecutable(setsid)) {
            pb.command().add(0, setsid.toString());
        }
        return pb;
    }

    static ProcessBuilder javaProcess(String mainClass, String... args) {
        List<String> command = new ArrayList<>();
        command.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        command.add("-Xms256m");
        command.add("-Xmx1g");
        command.add("-XX:+UseG1GC");
        command.add("-Djava.awt.headless=true");
        command.add("-cp");
        command.add(System.getProperty("java.class.path"));
        command.add(mainClass);
        command.addAll(List.of(args));
        return new ProcessBuilder(command);
    }

    /** Settings of a local broker. Ports 0 mean: pick free ones (and remember them in the data dir). */
    public static final class Builder {
        private Path dataDir;
        private int port;
        private int controllerPort;
        private int capturePartitions = 4;
        private boolean createTopics = true;
        private CurvewatchTopics topics = CurvewatchTopics.withDefaultPrefix();
        private Duration startTimeout = Duration.ofSeconds(90);
        private int nodeId = 1;
        private int replicationFactor = 1;
        private int minInsyncReplicas = 1;

        public Builder dataDir(Path dataDir) { this.dataDir = dataDir; return this; }
        public Builder port(int port) { this.port = port; return this; }
        public Builder controllerPort(int controllerPort) { this.controllerPort = controllerPort; return this; }
        public Builder capturePartitions(int partitions) { this.capturePartitions = partitions; return this; }
        public Builder createTopics(boolean create) { this.createTopics = create; return this; }
        public Builder topics(CurvewatchTopics topics) { this.topics = topics; return this; }
        public Builder startTimeout(Duration timeout) { this.startTimeout = timeout; return this; }

        /** Node of a cluster: its id and the replication of the cluster's topics (internal ones included). */
        Builder node(int id, int replication, int minInsync) {
            this.nodeId = id;
            this.replicationFactor = replication;
            this.minInsyncReplicas = minInsync;
            return this;
        }

        /** Formats the data directory if new, starts the broker, waits until it serves, creates topics. */
        public LocalKafka start() throws IOException {
            LocalKafka kafka = prepare();
            kafka.writeServerProperties();
            kafka.formatIfNew();
            kafka.launch();
            kafka.awaitReady(System.nanoTime() + startTimeout.toNanos());
            if (createTopics) {
                kafka.createTopics();
            }
            return kafka;
        }

        /** The node with its ports chosen (and remembered in its data directory), nothing written or started yet. */
        LocalKafka prepare() throws IOException {
            if (dataDir == null) {
                dataDir = Files.createTempDirectory("curvewatch-kafka-");
            }
            if (capturePartitions < 1) {
                throw new IllegalArgumentException("capture partitions must be >= 1, got " + capturePartitions);
            }
            Files.createDirectories(dataDir);
            Path state = dataDir.resolve(STATE_FILE);
            Properties remembered = new Properties();
            if (Files.exists(state)) {
                try (Reader in = Files.newBufferedReader(state)) {
                    remembered.load(in);
                }
            }
            int brokerPort = chosen(port, remembered, "port");
            int ctrlPort = chosen(controllerPort, remembered, "controller.port");
            remembered.setProperty("port", Integer.toString(brokerPort));
            remembered.setProperty("controller.port", Integer.toString(ctrlPort));
            try (Writer out = Files.newBufferedWriter(state)) {
                remembered.store(out, "ports of this Curvewatch broker data directory");
            }
            return new LocalKafka(this, dataDir, brokerPort, ctrlPort);
        }

        private static int chosen(int requested, Properties remembered, String key) {
            if (requested > 0) {
                return requested;
            }
            String old = remembered.getProperty(key);
            return old != null ? Integer.parseInt(old) : FreePorts.pick();
        }
    }

    /** A cluster's controller quorum ({@code id@host:port,...}) and id, before the node is written and formatted. */
    void joinCluster(String voters, String id) {
        this.quorumVoters = voters;
        this.clusterId = id;
    }

    void writeServerProperties() throws IOException {
        Properties p = new Properties();
        String rf = Integer.toString(config.replicationFactor);
        String isr = Integer.toString(config.minInsyncReplicas);
        p.setProperty("process.roles", "broker,controller");
        p.setProperty("node.id", Integer.toString(config.nodeId));
        p.setProperty("controller.quorum.voters", quorumVoters);
        p.setProperty("listeners", "PLAINTEXT://127.0.0.1:" + port + ",CONTROLLER://127.0.0.1:" + controllerPort);
        p.setProperty("advertised.listeners", "PLAINTEXT://127.0.0.1:" + port);
        p.setProperty("controller.listener.names", "CONTROLLER");
        p.setProperty("inter.broker.listener.name", "PLAINTEXT");
        p.setProperty("listener.security.protocol.map", "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT");
        p.setProperty("log.dirs", dataDir.resolve("logs").toString());
        p.setProperty("num.partitions", "1");
        p.setProperty("offsets.topic.replication.factor", rf);
        p.setProperty("offsets.topic.num.partitions", "4");
        p.setProperty("transaction.state.log.replication.factor", rf);
        p.setProperty("transaction.state.log.min.isr", isr);
        p.setProperty("transaction.state.log.num.partitions", "4");
        p.setProperty("share.coordinator.state.topic.replication.factor", rf);
        p.setProperty("share.coordinator.state.topic.min.isr", isr);
        p.setProperty("default.replication.factor", rf);
        p.setProperty("min.insync.replicas", isr);
        p.setProperty("group.initial.rebalance.delay.ms", "0");
        p.setProperty("auto.create.topics.enable", "false");
        // tensor topics raise their own limit to 16 MB; the broker-wide limit must allow it
        p.setProperty("message.max.bytes", Integer.toString(CurvewatchTopics.TENSOR_MAX_MESSAGE_BYTES));
        p.setProperty("replica.fetch.max.bytes", Integer.toString(CurvewatchTopics.TENSOR_MAX_MESSAGE_BYTES));
        p.setProperty("socket.request.max.bytes", Integer.toString(4 * CurvewatchTopics.TENSOR_MAX_MESSAGE_BYTES));
        p.setProperty("log.cleaner.dedupe.buffer.size", Integer.toString(16 * 1024 * 1024));
        p.setProperty("log.cleaner.io.buffer.size", Integer.toString(2 * CurvewatchTopics.TENSOR_MAX_MESSAGE_BYTES));
        try (Writer out = Files.newBufferedWriter(dataDir.resolve("server.properties"))) {
            p.store(out, "written by curvewatch LocalKafka");
        }
    }

    void formatIfNew() throws IOException {
        if (Files.exists(dataDir.resolve("logs").resolve("meta.properties"))) {
            return;
        }
        Process format = javaProcess("kafka.tools.StorageTool", "format", "-t", clusterId != null ? clusterId : Uuid.randomUuid().toString(),
                "-c", dataDir.resolve("server.properties").toString())
                .redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.appendTo(logFile().toFile()))
                .start();
        try {
            if (!format.waitFor(120, TimeUnit.SECONDS) || format.exitValue() != 0) {
                format.destroyForcibly();
                throw new IOException("formatting Kafka storage in " + dataDir + " failed; see " + logFile());
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted while formatting Kafka storage", e);
        }
    }
}
