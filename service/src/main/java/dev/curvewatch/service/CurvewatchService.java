package dev.curvewatch.service;

import dev.curvewatch.curvature.EigenbasisRefresh;
import dev.curvewatch.curvature.SymmetricEigensolvers;
import dev.curvewatch.schemas.CurvewatchTopics;
import dev.curvewatch.service.internal.Access;
import dev.curvewatch.service.internal.AlertEvaluator;
import dev.curvewatch.service.internal.BearerTokens;
import dev.curvewatch.service.internal.CandidatePacer;
import dev.curvewatch.service.internal.DeadLetterFeed;
import dev.curvewatch.service.internal.EditRequests;
import dev.curvewatch.service.internal.GuardFeed;
import dev.curvewatch.service.internal.GuardWatch;
import dev.curvewatch.service.internal.HttpApi;
import dev.curvewatch.service.internal.Ingest;
import dev.curvewatch.service.internal.LayerState;
import dev.curvewatch.service.internal.Outputs;
import dev.curvewatch.service.internal.Registry;
import dev.curvewatch.service.internal.RunOwnership;
import dev.curvewatch.service.internal.ServiceMetrics;
import dev.curvewatch.service.internal.SignalHistory;
import dev.curvewatch.service.internal.SnapshotStore;
import io.vertx.core.Vertx;
import io.vertx.core.VertxOptions;
import io.vertx.core.http.HttpServer;
import io.vertx.core.http.HttpServerOptions;
import io.vertx.core.json.JsonObject;
import org.apache.kafka.clients.admin.Admin;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.nio.file.Files;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.List;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The Curvewatch service (DESIGN §1, §3, §4): follows the factors, weights and probe results of
 * every run on Kafka, refreshes eigenbases per layer, runs the exact calibration round trip with
 * the trainer, publishes signals, scores and raw alerts, answers edit requests with edited
 * safetensors snapshots, and serves the HTTP API, live events and the dashboard.
 *
 * <pre>{@code
 * try (CurvewatchService s = CurvewatchService.start(ServiceConfig.of(Map.of(
 *         "bootstrap", "127.0.0.1:9092", "http.port", "0", "auth.tokens", token)))) {
 *     System.out.println(s.url());
 *     s.awaitCaughtUp(Duration.ofMinutes(1));
 *     s.state().layers("run-1");    // what the service knows, without HTTP
 * }
 * }</pre>
 */
public final class CurvewatchService implements AutoCloseable {
    /** How often auth.tokens.file is checked for changes. */
    static final long TOKEN_FILE_CHECK_MS = 2000;
    private static final Logger LOG = LoggerFactory.getLogger(CurvewatchService.class);

    private final ServiceConfig config;
    private final Vertx vertx;
    private final Registry registry;
    private final ServiceMetrics metrics;
    private final AlertEvaluator alerts;
    private final Outputs outputs;
    private final SnapshotStore store;
    private final ExecutorService refreshPool;
    private final Ingest ingest;
    private final EditRequests edits;
    private final RunOwnership ownership;
    private final GuardWatch guard;
    private final GuardFeed guardFeed;
    private final Thread ingestThread;
    private final Thread editThread;
    private final DeadLetterFeed deadLetterFeed;
    private final Thread deadLetterThread;
    private final Thread guardThread;
    private HttpServer http;
    private HttpApi api;
    private volatile boolean closed;

    /**
     * Builds every part; when one throws (a bad {@code kafka.*} setting makes a client refuse to
     * start, say), everything built before it is closed again, so a failed start leaves no thread
     * or client behind.
     */
    private CurvewatchService(ServiceConfig config, List<AlertRule> rules, SnapshotStore store) {
        this.config = config;
        this.store = store;
        ArrayDeque<AutoCloseable> built = new ArrayDeque<>(); // closed last-built-first if a later step throws
        try {
            this.vertx = Vertx.vertx(new VertxOptions().setEventLoopPoolSize(2).setWorkerPoolSize(4));
            built.push(() -> vertx.close().toCompletionStage().toCompletableFuture().get(10, TimeUnit.SECONDS));
            this.metrics = new ServiceMetrics();
            this.registry = new Registry(new SignalHistory(config.signalHistoryPoints()), config.alertHistory(), config.snapshotHistory(),
                    config.maxRuns(), new LayerState.Pacing(new CandidatePacer.Settings(config.calibrationMinSteps(),
                            config.calibrationMaxSteps(), config.calibrationMinDrift()), config.refreshMinSteps()));
            this.alerts = new AlertEvaluator(rules);
            registry.onForget(alerts::forgetRun);
            this.outputs = new Outputs(config.kafkaProperties(), config.topics(), registry, alerts, metrics, vertx,
                    "service:" + config.instanceId(), config.deadLetterMaxValueBytes());
            built.push(outputs);
            this.refreshPool = Executors.newFixedThreadPool(config.refreshThreads(), daemon("curvewatch-service-refresh-"));
            built.push(refreshPool::shutdownNow);
            EigenbasisRefresh eigen = new EigenbasisRefresh(SymmetricEigensolvers.best(), config.eighDriftTolerance(),
                    config.eighWarmTolerance(), config.eighPrecision());
            this.ingest = new Ingest(config, registry, outputs, metrics, refreshPool, eigen, alerts);
            built.push(ingest::closeUnstarted);
            this.ownership = RunOwnership.byAssignment();
            registry.ownership(ownership);
            this.edits = new EditRequests(config, registry, outputs, metrics, store, ownership, ingest::snapshotsReadUpTo);
            built.push(edits::closeUnstarted);
            this.guard = new GuardWatch(registry, alerts, outputs, store, config.codeVersion(), config.guardHarmTolerance());
            outputs.onSignal(guard::onSignal);
            this.guardFeed = new GuardFeed(config, guard, outputs.component());
            built.push(guardFeed::closeUnstarted);
            this.deadLetterFeed = new DeadLetterFeed(config, registry, metrics, outputs.component());
            built.push(deadLetterFeed::closeUnstarted);
        } catch (RuntimeException | Error e) {
            while (!built.isEmpty()) {
                try {
                    built.pop().close();
                } catch (Exception suppressed) {
                    e.addSuppressed(suppressed);
                }
            }
            throw e;
        }
        this.ingestThread = daemon("curvewatch-service-ingest").newThread(ingest);
        this.editThread = daemon("curvewatch-service-edits").newThread(edits);
        this.guardThread = daemon("curvewatch-service-guard").newThread(guardFeed);
        this.deadLetterThread = daemon("curvewatch-service-dead-letters").newThread(deadLetterFeed);
        metrics.gauge("curvewatch_service_up", () -> ingestThread.isAlive() && ingest.failure() == null ? 1 : 0);
        metrics.gauge("curvewatch_service_caught_up", () -> registry.isCaughtUp() ? 1 : 0);
        metrics.gauge("curvewatch_service_runs", () -> registry.runIds().size());
        metrics.gauge("curvewatch_service_owned_runs", () -> registry.runIds().stream().filter(registry::owns).count());
        metrics.gauge("curvewatch_service_layers", () -> registry.allRuns().stream().mapToInt(r -> r.layers().size()).sum());
        metrics.gauge("curvewatch_service_factor_bytes", ingest::factorBytes);
        metrics.gauge("curvewatch_service_parked_weight_bytes", ingest::parkedBytes);
        metrics.gauge("curvewatch_service_firing_rules", alerts::firingCount);
        metrics.gauge("curvewatch_service_refresh_latency_last_seconds", ingest::lastLatencySeconds);
    }

    /**
     * Starts the feeds, the edit-request consumer and the HTTP server; returns once the server
     * listens (the start-up catch-up goes on in the background: {@link #awaitCaughtUp}).
     *
     * @throws IllegalArgumentException for a bad alert rules file or snapshot directory
     */
    public static CurvewatchService start(ServiceConfig config) throws Exception {
        checkTopics(config);
        List<AlertRule> rules = config.alertRulesFile() == null ? AlertRules.defaults() : AlertRules.load(config.alertRulesFile());
        SnapshotStore store = new SnapshotStore(config.snapshotDir());
        BearerTokens tokens = BearerTokens.of(config);
        CurvewatchService s = new CurvewatchService(config, rules, store);
        try {
            s.ingestThread.start();
            s.editThread.start();
            s.guardThread.start();
            s.deadLetterThread.start();
            s.api = new HttpApi(s.vertx, s.registry, s.outputs, s.metrics, store, new Access(tokens, config.readRequired()), s.guard,
                    s::health, config.ssePingMs(), config.liveClientsMax());
            // a token added to or revoked from auth.tokens.file takes effect within this period, no restart
            s.vertx.setPeriodic(TOKEN_FILE_CHECK_MS, id -> s.vertx.executeBlocking(tokens::reload, false));
            s.http = s.vertx.createHttpServer(new HttpServerOptions().setHost(config.httpHost()).setPort(config.httpPort())
                            .setMaxWebSocketFrameSize(64 * 1024).setCompressionSupported(true))
                    .requestHandler(s.api.router())
                    .listen().toCompletionStage().toCompletableFuture().get(30, TimeUnit.SECONDS);
        } catch (Exception e) {
            s.close();
            throw e;
        }
        if (tokens.isEmpty()) {
            LOG.warn("no auth token configured: edit, refresh and download endpoints answer 403"
                    + (config.readRequired() ? ", and so does every read under /api (auth.read.required)" : ""));
        }
        LOG.info("curvewatch service on {} ({} alert rule(s), snapshots in {})", s.url(), rules.size(), store.root());
        return s;
    }

    /** Fails fast, with the names, when the broker cannot be reached or a topic the service reads or writes is missing. */
    private static void checkTopics(ServiceConfig config) {
        CurvewatchTopics t = config.topics();
        List<String> names = List.of(t.runs(), t.factors(), t.weights(), t.editCandidates(), t.probeResults(), t.signals(), t.scores(),
                t.alertsRaw(), t.alerts(), t.editRequests(), t.snapshots(), t.deadLetters(), t.guardDecisions(), t.serviceState());
        Properties p = config.kafkaProperties();
        p.putIfAbsent("default.api.timeout.ms", "30000");
        p.putIfAbsent("request.timeout.ms", "15000");
        try (Admin admin = Admin.create(p)) {
            Set<String> existing = admin.listTopics().names().get(30, TimeUnit.SECONDS);
            List<String> missing = names.stream().filter(n -> !existing.contains(n)).toList();
            if (!missing.isEmpty()) {
                throw new IllegalStateException("topics " + missing + " do not exist (create them with `curvewatch broker` or LocalKafka)");
            }
        } catch (ExecutionException | TimeoutException e) {
            throw new IllegalStateException("cannot list the topics at " + p.getProperty("bootstrap.servers") + ": " + e, e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while checking the topics", e);
        }
    }

    public ServiceConfig config() {
        return config;
    }

    /** The bound HTTP port (useful with {@code http.port=0}). */
    public int httpPort() {
        return http.actualPort();
    }

    /** http://host:port of the API and dashboard. */
    public String url() {
        String host = config.httpHost();
        if (host.equals("0.0.0.0") || host.equals("::")) {
            host = "127.0.0.1";
        }
        return "http://" + (host.contains(":") ? "[" + host + "]" : host) + ":" + httpPort();
    }

    /** What the service knows now (runs, layers, signals, scores, snapshots, alerts). */
    public ServiceState state() {
        return registry;
    }

    public List<AlertRule> alertRules() {
        return alerts.rules();
    }

    /** The live guard's decisions of a run (streams app, trainer, this service), oldest first, at most the last 500. */
    public List<dev.curvewatch.avro.GuardDecision> guardDecisions(String runId) {
        return guard.decisions(runId);
    }

    /**
     * What POST /api/runs/{run}/refresh does: every layer of the run refreshed at its next chance and
     * that refresh's candidate sent whatever the pacing says. Returns the layers, empty for an unknown run.
     */
    public List<String> refreshNow(String runId) {
        return registry.run(runId).map(Registry.Run::forceRefresh).orElse(List.of());
    }

    /** Waits for the start-up catch-up (registry, factors, weights, snapshots, signal history). */
    public boolean awaitCaughtUp(Duration timeout) throws InterruptedException {
        return registry.awaitCaughtUp(timeout);
    }

    /** The Prometheus text exposition of /metrics. */
    public String metrics() {
        return metrics.scrape();
    }

    private HttpApi.Health health() {
        JsonObject checks = new JsonObject();
        boolean ingestUp = ingest.isUp(ingestThread);
        checks.put("kafka_feeds", check(ingestUp, ingest.detail()));
        checks.put("catch_up", check(registry.isCaughtUp(), registry.isCaughtUp() ? "done" : "reading the topics from the start"));
        boolean editsUp = edits.isUp(editThread);
        checks.put("edit_requests", check(editsUp, edits.detail()));
        boolean guardUp = guardFeed.isUp(guardThread);
        checks.put("guard_decisions", check(guardUp, guardFeed.detail()));
        boolean deadLettersUp = deadLetterFeed.isUp(deadLetterThread);
        checks.put("dead_letters", check(deadLettersUp, deadLetterFeed.detail()));
        boolean storeUp = Files.isDirectory(store.root()) && Files.isWritable(store.root());
        checks.put("snapshot_store", check(storeUp, store.root().toString()));
        checks.put("live_clients", api == null ? 0 : api.liveClients());
        // several instances: the edit-requests partitions (the runs) this one owns now
        checks.put("owned_partitions", new io.vertx.core.json.JsonArray(new java.util.ArrayList<>(new java.util.TreeSet<>(ownership.owned()))));
        return new HttpApi.Health(ingestUp && registry.isCaughtUp() && editsUp && guardUp && deadLettersUp && storeUp, checks);
    }

    private static JsonObject check(boolean up, String detail) {
        return new JsonObject().put("status", up ? "UP" : "DOWN").put("detail", detail);
    }

    /** Graceful stop: HTTP, feeds, edit consumer, refreshes in flight (up to 30 s), producer, Vert.x. */
    @Override
    public synchronized void close() {
        if (closed) {
            return;
        }
        closed = true;
        try {
            if (http != null) {
                http.close().toCompletionStage().toCompletableFuture().get(10, TimeUnit.SECONDS);
            }
        } catch (Exception e) {
            LOG.warn("HTTP server did not close cleanly: {}", e.toString());
        }
        ingest.requestStop();
        edits.requestStop();
        guardFeed.requestStop();
        deadLetterFeed.requestStop();
        join(ingestThread);
        join(editThread);
        join(guardThread);
        join(deadLetterThread);
        refreshPool.shutdown();
        try {
            if (!refreshPool.awaitTermination(30, TimeUnit.SECONDS)) {
                LOG.warn("refreshes still running after 30 s; stopping anyway");
                refreshPool.shutdownNow();
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        outputs.flush();
        outputs.close();
        try {
            vertx.close().toCompletionStage().toCompletableFuture().get(10, TimeUnit.SECONDS);
        } catch (Exception e) {
            LOG.warn("Vert.x did not close cleanly: {}", e.toString());
        }
    }

    private static void join(Thread t) {
        if (t.getState() == Thread.State.NEW) {
            return;
        }
        try {
            t.join(30_000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static ThreadFactory daemon(String prefix) {
        AtomicInteger n = new AtomicInteger();
        return r -> {
            Thread t = new Thread(r, prefix.endsWith("-") ? prefix + n.getAndIncrement() : prefix);
            t.setDaemon(true);
            return t;
        };
    }
}
