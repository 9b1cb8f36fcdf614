package dev.curvewatch.service;

import dev.curvewatch.avro.CalibrationSearch;
import dev.curvewatch.curvature.Precision;
import dev.curvewatch.curvature.RhoCalibrator;
import dev.curvewatch.schemas.ConfigLayers;
import dev.curvewatch.schemas.ConfigValues;
import dev.curvewatch.schemas.CurvewatchTopics;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;

/**
 * Settings of the service, layered by {@link ConfigLayers}: {@link #defaults()}, a properties
 * file, {@code CURVEWATCH_SERVICE_<KEY>} environment variables ('_' for '.', e.g.
 * {@code CURVEWATCH_SERVICE_AUTH_TOKENS}), explicit overrides; read through {@link ConfigValues},
 * so a bad value is refused at load time naming its key. Keys starting with {@code kafka.}
 * go to the Kafka clients unchanged (minus the prefix), on top of {@code CURVEWATCH_KAFKA_*}.
 * Every key is listed with its meaning in service/README.md.
 *
 * <p>Over 400 lines with its comments (about 360 of code): it is the one catalogue of the service's
 * keys, each with its default, check and typed getter, in the order of the README's table; split,
 * a key's default and its reader would live apart.
 */
public final class ServiceConfig {
    public static final String BOOTSTRAP = "bootstrap";
    public static final String TOPIC_PREFIX = "topic.prefix";
    public static final String INSTANCE_ID = "instance.id";
    public static final String HTTP_HOST = "http.host";
    public static final String HTTP_PORT = "http.port";
    public static final String AUTH_TOKENS = "auth.tokens";
    public static final String AUTH_TOKENS_FILE = "auth.tokens.file";
    public static final String SNAPSHOT_DIR = "snapshot.dir";
    public static final String REFRESH_INTERVAL_MS = "refresh.interval.ms";
    public static final String REFRESH_THREADS = "refresh.threads";
    public static final String EIGH_DRIFT_TOLERANCE = "eigh.drift.tolerance";
    public static final String EIGH_PRECISION = "eigh.precision";
    public static final String EIGH_WARM_TOLERANCE = "eigh.warm.tolerance";
    public static final String CALIBRATION_TIMEOUT_MS = "calibration.timeout.ms";
    public static final String CALIBRATION_TOLERANCE = "calibration.tolerance";
    public static final String CALIBRATION_LOSS_TOLERANCE = "calibration.loss.tolerance";
    public static final String CALIBRATION_SEARCH = "calibration.search";
    public static final String CALIBRATION_PEAK_TOKENS = "calibration.peak.tokens";
    public static final String CALIBRATION_TRAIN_CANDIDATES = "calibration.train.candidates";
    public static final String CALIBRATION_MIN_STEPS = "calibration.min.steps";
    public static final String CALIBRATION_MAX_STEPS = "calibration.max.steps";
    public static final String CALIBRATION_MIN_DRIFT = "calibration.min.drift";
    public static final String REFRESH_MIN_STEPS = "refresh.min.steps";
    public static final String ALERT_RULES_FILE = "alerts.rules.file";
    public static final String SIGNAL_HISTORY_POINTS = "signals.history.points";
    public static final String ALERT_HISTORY = "alerts.history";
    public static final String SNAPSHOT_HISTORY = "snapshots.history";
    public static final String UNKNOWN_RUN_GRACE_MS = "unknown.run.grace.ms";
    public static final String RUNS_MAX = "runs.max";
    public static final String FACTORS_MAX_DIM = "factors.max.dim";
    public static final String REFRESH_MEMORY_BUDGET_BYTES = "refresh.memory.budget.bytes";
    public static final String CANDIDATE_MAX_BYTES = "candidate.max.bytes";
    public static final String CANDIDATE_PART_MAX_BYTES = "candidate.part.max.bytes";
    /** EditCandidate v4: only the basis columns the masks use, and bases the trainer holds named instead of sent. */
    public static final String CANDIDATE_COMPACT = "candidate.compact";
    /** The edit-candidates topic's record limit less 64 KiB for Kafka's batch framing. */
    private static final int MAX_CANDIDATE_PART_BYTES = CurvewatchTopics.TENSOR_MAX_MESSAGE_BYTES - 64 * 1024;
    public static final String WEIGHTS_PARKED_MAX_BYTES = "weights.parked.max.bytes";
    public static final String LIVE_CLIENTS_MAX = "live.clients.max";
    public static final String EDIT_GROUP_ID = "edit.group.id";
    public static final String EDIT_WAIT_MS = "edit.wait.ms";
    public static final String DEAD_LETTER_MAX_VALUE_BYTES = "dead.letter.max.value.bytes";
    public static final String POLL_TIMEOUT_MS = "poll.timeout.ms";
    public static final String SSE_PING_MS = "sse.ping.ms";
    public static final String CODE_VERSION = "code.version";
    /** auto (default): GET /api/* needs a read token unless http.host is a loopback address; true; false. */
    public static final String AUTH_READ_REQUIRED = "auth.read.required";
    /** Largest drop of probe accuracy an applied guard edit may cause before it is HARMFUL. */
    public static final String GUARD_HARM_TOLERANCE = "guard.harm.tolerance";
    public static final String KAFKA_PREFIX = ConfigLayers.KAFKA_PREFIX;
    static final String ENV_PREFIX = "CURVEWATCH_SERVICE_";
    private static final ConfigLayers LAYERS = new ConfigLayers(ENV_PREFIX);

    private static final Map<String, String> DEFAULTS;

    static {
        Map<String, String> d = new LinkedHashMap<>();
        d.put(TOPIC_PREFIX, CurvewatchTopics.DEFAULT_PREFIX);
        d.put(HTTP_HOST, "127.0.0.1");
        d.put(HTTP_PORT, "8080");
        d.put(AUTH_TOKENS, "");
        d.put(AUTH_TOKENS_FILE, "");
        d.put(SNAPSHOT_DIR, ".curvewatch/snapshots");
        d.put(REFRESH_INTERVAL_MS, "5000");
        d.put(REFRESH_THREADS, "1");
        d.put(EIGH_DRIFT_TOLERANCE, "0.000005");
        d.put(EIGH_WARM_TOLERANCE, "0.00002");
        d.put(EIGH_PRECISION, "FLOAT64");
        d.put(CALIBRATION_TIMEOUT_MS, "60000");
        d.put(CALIBRATION_TOLERANCE, "0.01");
        d.put(CALIBRATION_LOSS_TOLERANCE, Double.toString(Math.log(1.05)));
        d.put(CALIBRATION_SEARCH, CalibrationSearch.BISECT.name());
        d.put(CALIBRATION_PEAK_TOKENS, "8");
        d.put(CALIBRATION_TRAIN_CANDIDATES, "");
        d.put(CALIBRATION_MIN_STEPS, "20");
        d.put(CALIBRATION_MAX_STEPS, "200");
        d.put(CALIBRATION_MIN_DRIFT, "0.01");
        d.put(REFRESH_MIN_STEPS, "1");
        d.put(ALERT_RULES_FILE, "");
        d.put(SIGNAL_HISTORY_POINTS, "2000");
        d.put(ALERT_HISTORY, "1000");
        d.put(SNAPSHOT_HISTORY, "1000");
        d.put(UNKNOWN_RUN_GRACE_MS, "10000");
        d.put(RUNS_MAX, "50");
        d.put(FACTORS_MAX_DIM, "16384");
        d.put(REFRESH_MEMORY_BUDGET_BYTES, "0");
        d.put(CANDIDATE_MAX_BYTES, Long.toString(1L << 30));
        d.put(CANDIDATE_PART_MAX_BYTES, Integer.toString(MAX_CANDIDATE_PART_BYTES));
        d.put(CANDIDATE_COMPACT, "true");
        d.put(WEIGHTS_PARKED_MAX_BYTES, Long.toString(64L * 1024 * 1024));
        d.put(LIVE_CLIENTS_MAX, "64");
        d.put(EDIT_GROUP_ID, "curvewatch-service");
        d.put(EDIT_WAIT_MS, "60000");
        d.put(DEAD_LETTER_MAX_VALUE_BYTES, Integer.toString(8 * 1024 * 1024));
        d.put(POLL_TIMEOUT_MS, "200");
        d.put(SSE_PING_MS, "15000");
        d.put(CODE_VERSION, "");
        d.put(AUTH_READ_REQUIRED, "auto");
        d.put(GUARD_HARM_TOLERANCE, "0.02");
        DEFAULTS = Collections.unmodifiableMap(d);
    }

    private final ConfigValues values;

    private ServiceConfig(Map<String, String> values) {
        this.values = ConfigValues.of(values);
        validate();
    }

    /** Defaults plus the given overrides only (no file, no environment): for tests and embedding. */
    public static ServiceConfig of(Map<String, String> overrides) {
        return new ServiceConfig(LAYERS.load(DEFAULTS, null, "service config", Map.of(), overrides));
    }

    /** Defaults, then the file (may be null), then {@code CURVEWATCH_SERVICE_*} variables of {@code env}, then overrides. */
    public static ServiceConfig load(Path file, Map<String, String> env, Map<String, String> overrides) {
        return new ServiceConfig(LAYERS.load(DEFAULTS, file, "service config", env, overrides));
    }

    /** Every key with its default, for help texts. */
    public static Map<String, String> defaults() {
        return DEFAULTS;
    }

    private void validate() {
        int port = httpPort();
        if (port < 0 || port > 65535) {
            throw new IllegalArgumentException(HTTP_PORT + " must be in [0, 65535], got " + port);
        }
        if (refreshIntervalMs() < 0 || calibrationTimeoutMs() < 1 || refreshThreads() < 1 || pollTimeoutMs() < 1
                || ssePingMs() < 1 || unknownRunGraceMs() < 0) {
            throw new IllegalArgumentException(REFRESH_INTERVAL_MS + " >= 0, " + CALIBRATION_TIMEOUT_MS + ", " + REFRESH_THREADS
                    + ", " + POLL_TIMEOUT_MS + ", " + SSE_PING_MS + " >= 1 and " + UNKNOWN_RUN_GRACE_MS + " >= 0 are required");
        }
        if (!(eighDriftTolerance() >= 0) || !(calibrationTolerance() >= 0) || !(calibrationLossTolerance() >= 0)) {
            throw new IllegalArgumentException(EIGH_DRIFT_TOLERANCE + ", " + CALIBRATION_TOLERANCE + " and "
                    + CALIBRATION_LOSS_TOLERANCE + " must be >= 0");
        }
        if (!(eighWarmTolerance() >= eighDriftTolerance())) {
            throw new IllegalArgumentException(EIGH_WARM_TOLERANCE + " must be >= " + EIGH_DRIFT_TOLERANCE + ", got "
                    + eighWarmTolerance() + " and " + eighDriftTolerance());
        }
        if (maxRuns() < 1 || signalHistoryPoints() < 1 || alertHistory() < 1 || snapshotHistory() < 1 || deadLetterMaxValueBytes() < 0) {
            throw new IllegalArgumentException(RUNS_MAX + ", " + SIGNAL_HISTORY_POINTS + ", " + ALERT_HISTORY + ", " + SNAPSHOT_HISTORY
                    + " must be >= 1 and " + DEAD_LETTER_MAX_VALUE_BYTES + " >= 0");
        }
        if (factorsMaxDim() < 1 || factorsMaxDim() > 46340 || weightsParkedMaxBytes() < 0 || liveClientsMax() < 0) {
            throw new IllegalArgumentException(FACTORS_MAX_DIM + " must be in [1, 46340] (a d x d factor fills one Java array), "
                    + WEIGHTS_PARKED_MAX_BYTES + " and " + LIVE_CLIENTS_MAX + " >= 0");
        }
        if (values.longValue(REFRESH_MEMORY_BUDGET_BYTES) < 0) {
            throw new IllegalArgumentException(REFRESH_MEMORY_BUDGET_BYTES + " must be >= 0 (0 = the maximum heap)");
        }
        if (candidateMaxBytes() < 0 || candidatePartMaxBytes() < 64 * 1024 || candidatePartMaxBytes() > MAX_CANDIDATE_PART_BYTES) {
            throw new IllegalArgumentException(CANDIDATE_MAX_BYTES + " must be >= 0 and " + CANDIDATE_PART_MAX_BYTES + " in [65536, "
                    + MAX_CANDIDATE_PART_BYTES + "] (the edit-candidates topic's record limit less room for the batch framing)");
        }
        if (calibrationPeakTokens() < 0 || refreshMinSteps() < 0) {
            throw new IllegalArgumentException(CALIBRATION_PEAK_TOKENS + " and " + REFRESH_MIN_STEPS + " must be >= 0");
        }
        if (calibrationMinSteps() < 0 || calibrationMaxSteps() < calibrationMinSteps() || !(calibrationMinDrift() >= 0)) {
            throw new IllegalArgumentException("need 0 <= " + CALIBRATION_MIN_STEPS + " <= " + CALIBRATION_MAX_STEPS + " and "
                    + CALIBRATION_MIN_DRIFT + " >= 0");
        }
        calibrationTrainCandidates();
        if (!(guardHarmTolerance() >= 0)) {
            throw new IllegalArgumentException(GUARD_HARM_TOLERANCE + " must be >= 0, got " + guardHarmTolerance());
        }
        readRequired();
        // the typed keys no bound above reads: parsed once here, so a bad value is refused naming its key
        calibrationSearch();
        eighPrecision();
        authTokens();
        snapshotDir();
        alertRulesFile();
        editWaitMs();
    }

    public String get(String key) {
        return values.string(key);
    }

    public CurvewatchTopics topics() {
        return new CurvewatchTopics(values.string(TOPIC_PREFIX));
    }

    /** Id of this instance in dead letters and logs (default: host name). */
    public String instanceId() {
        return values.stringOrHostName(INSTANCE_ID, "service");
    }

    public String httpHost() {
        return values.string(HTTP_HOST);
    }

    /** HTTP port; 0 = any free port (read the bound one from {@link CurvewatchService#httpPort()}). */
    public int httpPort() {
        return values.intValue(HTTP_PORT);
    }

    /**
     * Bearer tokens accepted by the authenticated endpoints: {@link #authTokensInline} plus those
     * of {@code auth.tokens.file} (one per line, '#' comments) as it reads now; the service re-reads
     * the file when it changes. Empty: those endpoints answer 403.
     */
    public List<String> authTokens() {
        List<String> out = new ArrayList<>(authTokensInline());
        authTokensFile().ifPresent(file -> {
            try {
                out.addAll(readTokenFile(file));
            } catch (IOException e) {
                throw new IllegalArgumentException(AUTH_TOKENS_FILE + " " + file + " cannot be read: " + e.getMessage(), e);
            }
        });
        return List.copyOf(out);
    }

    /** The tokens of {@code auth.tokens} (comma-separated). */
    public List<String> authTokensInline() {
        List<String> out = new ArrayList<>();
        for (String t : values.string(AUTH_TOKENS, "").split(",")) {
            if (!t.isBlank()) {
                out.add(t.trim());
            }
        }
        return List.copyOf(out);
    }

    /** {@code auth.tokens.file}, if set. */
    public Optional<Path> authTokensFile() {
        return values.optionalPath(AUTH_TOKENS_FILE);
    }

    /** The tokens of a token file: one per line, blank lines and '#' comments skipped. */
    public static List<String> readTokenFile(Path file) throws IOException {
        List<String> out = new ArrayList<>();
        for (String line : Files.readAllLines(file, StandardCharsets.UTF_8)) {
            String t = line.trim();
            if (!t.isEmpty() && !t.startsWith("#")) {
                out.add(t);
            }
        }
        return List.copyOf(out);
    }

    public Path snapshotDir() {
        return values.path(SNAPSHOT_DIR);
    }

    /** Shortest time between two refreshes of one layer (a newer manifest waits, and only the newest is refreshed). */
    public long refreshIntervalMs() {
        return values.longValue(REFRESH_INTERVAL_MS);
    }

    /**
     * Threads running refreshes: checkpoint assembly and eigendecompositions (never the ingest
     * thread or the Vert.x event loop). Edits run on the edit-request thread, not here.
     */
    public int refreshThreads() {
        return values.intValue(REFRESH_THREADS);
    }

    /** Below this basis drift the previous eigenvectors are kept (EigenbasisRefresh, mode SKIPPED). */
    public double eighDriftTolerance() {
        return values.doubleValue(EIGH_DRIFT_TOLERANCE);
    }

    /** Below this basis drift (and not below the skip one) the previous basis is rotated, not decomposed (mode WARM). */
    public double eighWarmTolerance() {
        return values.doubleValue(EIGH_WARM_TOLERANCE);
    }

    public Precision eighPrecision() {
        return values.enumValue(EIGH_PRECISION, Precision.class);
    }

    public long calibrationTimeoutMs() {
        return values.longValue(CALIBRATION_TIMEOUT_MS);
    }

    /** Allowed drop of probe accuracy (absolute, 0.01 = one point) for a calibrated rho. */
    public double calibrationTolerance() {
        return values.doubleValue(CALIBRATION_TOLERANCE);
    }

    /** Allowed rise of mean probe loss in nats when the trainer sends no correct flags (an LM); ln(1.05) = +5% perplexity. */
    public double calibrationLossTolerance() {
        return values.doubleValue(CALIBRATION_LOSS_TOLERANCE);
    }

    /** How the trainer is asked to evaluate candidates: BISECT (default) or ALL (every rho on every example, v1). */
    public CalibrationSearch calibrationSearch() {
        return values.enumValue(CALIBRATION_SEARCH, CalibrationSearch.class);
    }

    /** k of the per-example peak statistic asked of the trainer (EditCandidate.peak_tokens); 0: not asked. */
    public int calibrationPeakTokens() {
        return values.intValue(CALIBRATION_PEAK_TOKENS);
    }

    /**
     * Candidate indices (of {@code RhoCalibrator.standard}'s 19, most aggressive first) at which the
     * trainer evaluates training examples besides the rho it finds (EditCandidate.train_candidates):
     * the service publishes the gap there too ({@code memorization_gap_k<index>}). Comma-separated; empty: none.
     */
    public List<Integer> calibrationTrainCandidates() {
        int n = RhoCalibrator.standard(0, RhoCalibrator.Direction.HIGHER_IS_BETTER).candidates().length;
        java.util.TreeSet<Integer> out = new java.util.TreeSet<>();
        for (String t : values.string(CALIBRATION_TRAIN_CANDIDATES, "").split(",")) {
            if (t.isBlank()) {
                continue;
            }
            try {
                int k = Integer.parseInt(t.trim());
                if (k < 0 || k >= n) {
                    throw new NumberFormatException();
                }
                out.add(k);
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException(CALIBRATION_TRAIN_CANDIDATES + " must list candidate indices in [0, " + n + "), got '"
                        + t.trim() + "'");
            }
        }
        return List.copyOf(out);
    }

    /**
     * Trainer steps the factors must advance between two candidates of a layer (doubled after every
     * declined or unanswered candidate, halved back after every answer).
     */
    public long calibrationMinSteps() {
        return values.longValue(CALIBRATION_MIN_STEPS);
    }

    /** Steps after which a candidate goes out even when the bases barely drifted (the weights still change). */
    public long calibrationMaxSteps() {
        return values.longValue(CALIBRATION_MAX_STEPS);
    }

    /** Summed basis drift since a layer's last candidate that makes the next one worth sending before {@code calibration.max.steps}. */
    public double calibrationMinDrift() {
        return values.doubleValue(CALIBRATION_MIN_DRIFT);
    }

    /** Trainer steps the factors must advance past the last refresh's before a new manifest is refreshed (unless forced). */
    public long refreshMinSteps() {
        return values.longValue(REFRESH_MIN_STEPS);
    }

    /** Alert rules file, or null for the shipped defaults. */
    public Path alertRulesFile() {
        return values.optionalPath(ALERT_RULES_FILE).orElse(null);
    }

    public int signalHistoryPoints() {
        return values.intValue(SIGNAL_HISTORY_POINTS);
    }

    public int alertHistory() {
        return values.intValue(ALERT_HISTORY);
    }

    public int snapshotHistory() {
        return values.intValue(SNAPSHOT_HISTORY);
    }

    public long unknownRunGraceMs() {
        return values.longValue(UNKNOWN_RUN_GRACE_MS);
    }

    /** Runs held in memory; beyond it the least recently active run is forgotten (its factors, weights, history). */
    public int maxRuns() {
        return values.intValue(RUNS_MAX);
    }

    /**
     * Largest factor side (d_in or d_out) a manifest may announce: a d x d factor is assembled
     * as d^2 doubles, so 16384 is 2 GiB per factor. Larger manifests are dead letters.
     */
    public int factorsMaxDim() {
        return values.intValue(FACTORS_MAX_DIM);
    }

    /**
     * Memory one refresh may take ({@code LayerRefresh.memoryBytes}: 7.3 GB for 11008 x 4096); a
     * layer over it is not refreshed, its status and a {@code refresh_failed} signal (attribute
     * {@code over_budget} = 1) say why. 0 = the JVM's maximum heap. Per refresh thread.
     */
    public long refreshMemoryBudgetBytes() {
        long v = values.longValue(REFRESH_MEMORY_BUDGET_BYTES);
        return v > 0 ? v : Runtime.getRuntime().maxMemory();
    }

    /**
     * Largest EditCandidate (both bases and spectra as float32) the service sends; a layer with a
     * larger one gets spectra and drift but no calibration. 1 GiB by default: the paper's 11008 x 4096
     * layer is 552 MB, which the trainer holds while it answers.
     */
    public long candidateMaxBytes() {
        return values.longValue(CANDIDATE_MAX_BYTES);
    }

    /**
     * Whether candidates are compact (EditCandidate v4): a basis travels as its leading columns that
     * the masks use, and a basis the trainer already holds (unchanged since a candidate it answered)
     * is named instead of sent. False for trainers older than v4, which need both bases whole.
     */
    public boolean candidateCompact() {
        return values.booleanValue(CANDIDATE_COMPACT);
    }

    /** Largest record of one candidate part (a candidate above it travels in row parts). */
    public int candidatePartMaxBytes() {
        return values.intValue(CANDIDATE_PART_MAX_BYTES);
    }

    /**
     * Bytes of weight records of not-yet-registered runs held back at once, over all such runs;
     * beyond it a further record is a dead letter at once (besides the 64 records per run).
     */
    public long weightsParkedMaxBytes() {
        return values.longValue(WEIGHTS_PARKED_MAX_BYTES);
    }

    /** SSE and WebSocket clients served at once; a further one is answered 503. */
    public int liveClientsMax() {
        return values.intValue(LIVE_CLIENTS_MAX);
    }

    public String editGroupId() {
        return values.string(EDIT_GROUP_ID);
    }

    /** How long an edit request waits for an eigenbasis still being computed (after a restart) before it is a dead letter. */
    public long editWaitMs() {
        return values.longValue(EDIT_WAIT_MS);
    }

    public int deadLetterMaxValueBytes() {
        return values.intValue(DEAD_LETTER_MAX_VALUE_BYTES);
    }

    public long pollTimeoutMs() {
        return values.longValue(POLL_TIMEOUT_MS);
    }

    public long ssePingMs() {
        return values.longValue(SSE_PING_MS);
    }

    /** Version written into snapshots and events (default: the jar's implementation version). */
    public String codeVersion() {
        String impl = ServiceConfig.class.getPackage().getImplementationVersion();
        return values.string(CODE_VERSION, impl != null ? impl : "0.1.0-SNAPSHOT");
    }

    public double guardHarmTolerance() {
        return values.doubleValue(GUARD_HARM_TOLERANCE);
    }

    /**
     * Whether every /api/* read (SSE and WebSocket included) needs a token with the read scope:
     * {@code auth.read.required} true or false, or auto (the default): only when {@code http.host}
     * is not a loopback address, so a service on 127.0.0.1 stays convenient and one listening for
     * other hosts is not world-readable.
     */
    public boolean readRequired() {
        String v = values.string(AUTH_READ_REQUIRED).trim().toLowerCase(java.util.Locale.ROOT);
        return switch (v) {
            case "true" -> true;
            case "false" -> false;
            case "auto" -> !isLoopback(httpHost());
            default -> throw new IllegalArgumentException(AUTH_READ_REQUIRED + " must be auto, true or false, got '" + v + "'");
        };
    }

    private static boolean isLoopback(String host) {
        String h = host.trim().toLowerCase(java.util.Locale.ROOT);
        return h.equals("localhost") || h.equals("::1") || h.equals("[::1]") || h.startsWith("127.");
    }

    /** Kafka client properties: {@code CURVEWATCH_KAFKA_*}, then {@code kafka.*}, then {@code bootstrap}. */
    public Properties kafkaProperties() {
        return values.kafkaProperties(BOOTSTRAP, Map.of());
    }

    /** Every setting, secrets masked (tokens, passwords, JAAS). */
    public Map<String, String> describe() {
        return values.describe();
    }
}
