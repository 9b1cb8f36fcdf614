package dev.curvewatch.trainer;

import dev.curvewatch.avro.EditCandidate;
import dev.curvewatch.avro.ExampleLosses;
import dev.curvewatch.avro.ProbeResult;
import dev.curvewatch.avro.Tensor;
import dev.curvewatch.curvature.CurvatureEdit;
import dev.curvewatch.curvature.Eigenbasis;
import dev.curvewatch.curvature.KeepMassMask;
import dev.curvewatch.curvature.Precision;
import dev.curvewatch.schemas.AvroDeserializer;
import dev.curvewatch.schemas.CurvewatchTopics;
import dev.curvewatch.schemas.EditCandidateParts;
import dev.curvewatch.schemas.InvalidRecordException;
import dev.curvewatch.schemas.RejectReason;
import dev.curvewatch.schemas.TensorCodec;
import org.apache.kafka.clients.consumer.ConsumerRecord;

import java.io.PrintStream;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * The trainer's side of the exact calibration round trip (SERVICE-CONTRACT §1): reads the
 * service's {@link EditCandidate}s for its own run from topic edit-candidates, and answers each
 * one once with a {@link ProbeResult}: per example, the loss and correctness under the layer's
 * current weight W and under every candidate edit W'_k = U_G ((U_Gᵀ W U_A) ⊙ M_k) U_Aᵀ, built with
 * {@link CurvatureEdit} from the candidate's eigenbases and {@code select(rho_k)}.
 *
 * <p>{@link #poll(long)} runs on the training thread between steps and never waits: it takes the
 * candidates that have arrived (checking each at once; every bad input is a logged, counted
 * refusal, never an exception), and when no answer is in progress it freezes the model
 * ({@link EditEvaluator#begin}, a copy of the parameters) and scores the oldest pending layer's
 * candidate on a worker thread while training goes on; the finished answer is published at a
 * later poll. One answer is in progress at a time. When several candidates of one layer are
 * pending, only the newest (highest factor version, then step, then arrival) is answered; the
 * others are skipped and counted. Candidates published before the responder started are not read.
 * The answer's step is the step at which the model was frozen.
 *
 * <p>Checks before answering: key and run id are this run's, the layer is watched, tensor shapes
 * (U_G d_out², U_A d_in², λ d_out, μ d_in; v4: U_G d_out x k with its leading k columns, no pair of any
 * mask kept beyond them, and a basis named by an earlier candidate's id taken from {@link CandidateBases}), lengths and dtype (FLOAT32 or FLOAT64), finite values,
 * spectra descending and ≥ 0, bases orthonormal ({@link #ORTHONORMAL_TOLERANCE}, a cheap O(n²)
 * test of every column's norm and of two column pairings), ρ in (0, 1], and each candidate
 * threshold τ_k equal to this trainer's {@code select(rho_k).tau()} within
 * {@link #TAU_RELATIVE_TOLERANCE} (relative; float32 eigenvalues change τ by ~1e-7).
 *
 * <p>Memory: a candidate whose answer would need more than the answer budget
 * ({@link #answerBytes}: its bases in float32 and fp64, the coordinates and one edit at a time)
 * is refused at its first record (reason {@code OVERSIZED}, the sizes and the budget in the
 * message), before any of it is assembled; its later parts are dropped quietly. The service's
 * calibration of it times out. Default budget: half the JVM's maximum heap.
 *
 * <p>What an answer holds: a mask that keeps every pair is "no edit" (its losses and flags are
 * {@code loss_now}'s exactly, no forward pass); masks keeping the same set share one forward pass;
 * a non-finite loss is sent as ±{@link Float#MAX_VALUE} and counted ({@link #nonFiniteLosses()}).
 * A sink or an observer that throws is logged and counted ({@link #publishFailures()},
 * {@link #observerFailures()}); the answer it concerned is not retried, and the responder goes on.
 */
public final class CandidateResponder implements AutoCloseable {
    /** Training examples per answer (SERVICE-CONTRACT §1). */
    public static final int MAX_TRAINING_EXAMPLES = 512;
    /** Allowed |‖u‖ − 1| and |u_iᵀu_j| of basis columns (float32 vectors of fp64 eigh are ~1e-6 off). */
    public static final double ORTHONORMAL_TOLERANCE = 1e-3;
    /** Allowed relative difference between the candidate's τ_k and {@code select(rho_k).tau()}. */
    public static final double TAU_RELATIVE_TOLERANCE = 1e-4;
    static final int MAX_RHOS = 64;
    private static final int REMEMBERED_IDS = 10_000;

    /** Where answers go (the publisher); false when it did not take the result. */
    @FunctionalInterface
    public interface Sink {
        boolean publish(ProbeResult result);
    }

    /** What happened to candidates, on the training thread (for the run's observer and tests). */
    public interface Events {
        /**
         * An answer was offered to the sink, which took or dropped it (not called when the sink
         * threw); {@code measured} is the frozen model it scored, still open. A callback that
         * throws is logged and counted ({@link CandidateResponder#observerFailures()}), never retried.
         */
        default void candidateAnswered(EditCandidate candidate, ProbeResult result, EditEvaluator.Session measured) {
        }

        /** {@code candidate} without its bases if it was checked already ({@link Prepared}). */
        default void candidateSkipped(EditCandidate candidate, String why) {
        }

        default void candidateRefused(String candidateId, String reason, String message) {
        }
    }

    /**
     * A candidate that passed every check, with its edit and one mask per ρ. {@code candidate} keeps
     * its ids, spectra, rhos and thresholds but not its bases: those live in {@code edit} (a large
     * layer's float32 bases would otherwise be held twice while it waits).
     */
    public record Prepared(EditCandidate candidate, LayerShape layer, CurvatureEdit edit, List<KeepMassMask> masks) {
    }

    private final String runId;
    private final EditEvaluator evaluator;
    private final Sink sink;
    private final PrintStream log;
    private final Events events;
    private final int maxTrainingExamples;
    private final long answerBudgetBytes;
    /** Candidates refused over the budget at their first part: their later parts are dropped without another refusal. */
    private final LinkedHashSet<String> overBudget = new LinkedHashSet<>();
    private final AvroDeserializer<EditCandidate> decoder = new AvroDeserializer<>(EditCandidate.class);
    /** Candidates larger than one record arrive in row parts (EditCandidate v2). */
    private final EditCandidateParts.Assembler parts = new EditCandidateParts.Assembler();
    /** Bases later candidates may name instead of sending (EditCandidate v4). */
    private final CandidateBases bases = new CandidateBases();
    // layer -> its newest pending candidate, in the order the layers became pending
    private final LinkedHashMap<String, Prepared> pending = new LinkedHashMap<>();
    private final LinkedHashSet<String> seenIds = new LinkedHashSet<>();
    private final Map<String, Long> refusalReasons = new TreeMap<>();
    private TopicTail tail;
    private ExecutorService worker;
    private InFlight inFlight;
    private long answered;
    private long skipped;
    private long refused;
    private long duplicates;
    private long otherRuns;
    private long notPublished;
    private long failed;
    private long publishFailures;
    private long observerFailures;
    private long nonFiniteLosses;
    private long partsReceived;
    private long answerNanos;
    private long pendingAtClose = -1; // pending + in flight when close began; -1 while open

    public CandidateResponder(String runId, EditEvaluator evaluator, Sink sink, PrintStream log, Events events) {
        this(runId, evaluator, sink, log, events, MAX_TRAINING_EXAMPLES);
    }

    public CandidateResponder(String runId, EditEvaluator evaluator, Sink sink, PrintStream log, Events events,
                              int maxTrainingExamples) {
        this(runId, evaluator, sink, log, events, maxTrainingExamples, Runtime.getRuntime().maxMemory() / 2);
    }

    /** @param answerBudgetBytes a candidate whose {@link #answerBytes} exceed it is refused before it is assembled */
    public CandidateResponder(String runId, EditEvaluator evaluator, Sink sink, PrintStream log, Events events,
                              int maxTrainingExamples, long answerBudgetBytes) {
        this.answerBudgetBytes = answerBudgetBytes;
        this.runId = runId;
        this.evaluator = evaluator;
        this.sink = sink;
        this.log = log;
        this.events = events == null ? new Events() { } : events;
        this.maxTrainingExamples = maxTrainingExamples;
    }

    /**
     * Starts reading {@code topics.editCandidates()} at its current end. A broker that cannot be
     * read is logged and leaves the responder idle (training goes on).
     *
     * @return whether the topic is being read
     */
    public boolean tail(String bootstrap, CurvewatchTopics topics) {
        try {
            tail = TopicTail.open(bootstrap, topics.editCandidates(), Duration.ofSeconds(30));
            log.println("candidates: answering edit candidates of run " + runId + " from " + topics.editCandidates());
            return true;
        } catch (RuntimeException e) {
            log.println("candidates: cannot read " + topics.editCandidates() + " (" + e.getMessage()
                    + "); edit candidates will not be answered");
            return false;
        }
    }

    /** An answer being scored on the worker thread. */
    private record InFlight(Prepared candidate, EditEvaluator.Session session, long step, Future<Answer> result,
                            long startNanos) {
    }

    /** A scored answer and how many of its losses were non-finite (sent as ±Float.MAX_VALUE). */
    record Answer(ProbeResult result, long nonFiniteLosses) {
    }

    /**
     * Between steps (after step {@code step}), never waiting: takes whatever candidates have
     * arrived, publishes the answer that has finished since the last call (returned), and starts
     * scoring the next pending candidate on the worker thread if none is in progress.
     */
    public Optional<ProbeResult> poll(long step) {
        if (tail != null) {
            try {
                for (ConsumerRecord<String, byte[]> r : tail.poll()) {
                    offer(r.key(), r.value());
                }
            } catch (RuntimeException e) {
                failed++;
                log.println("candidates: reading " + tail.topic() + " failed: " + e + " (training goes on)");
            }
        }
        Optional<ProbeResult> done = Optional.empty();
        if (inFlight != null && inFlight.result().isDone()) {
            InFlight f = inFlight;
            inFlight = null; // taken out first: whatever finishing it does, this answer is handled once
            done = finish(f, Duration.ZERO);
        }
        if (inFlight == null && !pending.isEmpty()) {
            Prepared p = nextPending();
            EditEvaluator.Session session;
            try {
                session = evaluator.begin(maxTrainingExamples);
            } catch (RuntimeException e) {
                failed++;
                log.println("candidates: freezing the model for " + p.candidate().getCandidateId() + " failed: " + e);
                return done;
            }
            if (worker == null) {
                worker = Executors.newSingleThreadExecutor(r -> {
                    Thread t = new Thread(r, "curvewatch-candidate-answers");
                    t.setDaemon(true);
                    return t;
                });
            }
            inFlight = new InFlight(p, session, step, worker.submit(() -> measure(p, session, runId, step)), System.nanoTime());
        }
        return done;
    }

    /** Whether an answer is being scored now. */
    public boolean answering() {
        return inFlight != null;
    }

    /** Waits until the answer in progress (if any) is scored; the next {@link #poll} publishes it. For tests. */
    boolean awaitScored(Duration timeout) throws InterruptedException {
        if (inFlight == null) {
            return true;
        }
        try {
            inFlight.result().get(timeout.toMillis(), TimeUnit.MILLISECONDS);
            return true;
        } catch (ExecutionException e) {
            return true; // done, with a failure the next poll reports
        } catch (TimeoutException e) {
            return false;
        }
    }

    private Prepared nextPending() {
        Iterator<Map.Entry<String, Prepared>> it = pending.entrySet().iterator();
        Prepared p = it.next().getValue();
        it.remove();
        return p;
    }

    /**
     * Publishes a finished (or, waiting up to {@code wait}, finishing) answer; closes its session.
     * Never throws: a failing sink or observer is counted by {@link #publish}.
     */
    private Optional<ProbeResult> finish(InFlight f, Duration wait) {
        String id = f.candidate().candidate().getCandidateId();
        try {
            Answer answer = f.result().get(wait.toMillis(), TimeUnit.MILLISECONDS);
            long nanos = System.nanoTime() - f.startNanos();
            answerNanos += nanos;
            nonFiniteLosses += answer.nonFiniteLosses();
            return publish(f.candidate(), answer.result(), f.session(), nanos) ? Optional.of(answer.result()) : Optional.empty();
        } catch (ExecutionException e) {
            failed++;
            log.println("candidates: answering " + id + " failed: " + e.getCause() + " (training goes on)");
        } catch (TimeoutException e) {
            failed++;
            log.println("candidates: answering " + id + " did not finish within " + wait.toSeconds() + " s; abandoned");
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            failed++;
        } finally {
            if (f.result().isDone()) {
                f.session().close();
            } else {
                // still scoring: freeing its native memory now could crash it; close it after it ends
                worker.submit(f.session()::close);
            }
        }
        return Optional.empty();
    }

    /**
     * Offers the answer to the sink once and tells the observer. A sink that throws (a producer
     * refusing the record synchronously) and an observer that throws are caught here, logged and
     * counted apart, so neither can make an answer go out again or stop the responder.
     *
     * @return whether the sink took or dropped the answer (false: it threw, nothing was sent)
     */
    private boolean publish(Prepared p, ProbeResult result, EditEvaluator.Session session, long nanos) {
        String id = p.candidate().getCandidateId();
        boolean taken;
        try {
            taken = sink.publish(result);
        } catch (RuntimeException e) {
            publishFailures++;
            log.println("candidates: publishing the answer to " + id + " failed: " + e
                    + "; it is not sent and not retried (training goes on)");
            return false;
        }
        if (!taken) {
            notPublished++;
            log.println("candidates: answer to " + id + " was not published (dropped)");
        }
        answered++;
        log.printf("candidates: answered %s (%s, factor version %d) at step %d: %d examples x %d rho in %.0f ms%n",
                id, p.layer().name(), p.candidate().getFactorVersion(), result.getStep(),
                result.getExamples().size(), result.getRhos().size(), nanos / 1e6);
        notify("candidateAnswered(" + id + ")", () -> events.candidateAnswered(p.candidate(), result, session));
        return true;
    }

    /** Runs an observer callback; its failure is the observer's, logged and counted, never the responder's. */
    private void notify(String what, Runnable callback) {
        try {
            callback.run();
        } catch (RuntimeException e) {
            observerFailures++;
            log.println("candidates: the observer's " + what + " threw " + e + " (ignored; training goes on)");
        }
    }

    /** One record of topic edit-candidates (key = run id): checked now, answered by {@link #answerNext}. */
    public void offer(String key, byte[] value) {
        if (key != null && !key.equals(runId)) {
            otherRuns++; // another run's candidate on the shared topic: not ours to judge
            return;
        }
        EditCandidate decoded;
        try {
            decoded = decoder.decode(value);
        } catch (InvalidRecordException e) {
            refuse("?", e.reason().name(), "undecodable edit candidate: " + e.getMessage());
            return;
        } catch (RuntimeException e) {
            refuse("?", RejectReason.MALFORMED.name(), "undecodable edit candidate: " + e);
            return;
        }
        EditCandidate c = decoded;
        if (key == null && !runId.equals(c.getRunId())) {
            otherRuns++;
            return;
        }
        if (overBudget.contains(c.getCandidateId())) {
            return; // a later part of a candidate refused at its first one
        }
        if (c.getPart() == 0 && overBudget(c)) {
            return;
        }
        if (c.getParts() != 1 || c.getPart() != 0) {
            partsReceived++;
            Optional<EditCandidate> whole;
            try {
                LayerShape shape = evaluator.layer(decoded.getLayer()).orElseThrow(() -> new InvalidRecordException(
                        RejectReason.UNKNOWN_LAYER, "layer '" + decoded.getLayer() + "' is not watched by this trainer"));
                whole = parts.accept(decoded, shape.dOut(), shape.dIn());
            } catch (InvalidRecordException e) {
                refuse(decoded.getCandidateId(), e.reason().name(), e.getMessage());
                return;
            }
            if (whole.isEmpty()) {
                return; // more parts to come
            }
            c = whole.get();
        }
        String id = c.getCandidateId();
        if (seenIds.contains(id)) {
            duplicates++;
            log.println("candidates: candidate " + id + " was already received; answered once only");
            return;
        }
        remember(id);
        Prepared p;
        try {
            c = bases.resolve(c);
            p = prepare(c, runId, evaluator);
            bases.remember(c);
        } catch (InvalidRecordException e) {
            refuse(id, e.reason().name(), e.getMessage());
            return;
        } catch (Refusal e) {
            refuse(id, e.reason(), e.getMessage());
            return;
        } catch (RuntimeException e) {
            refuse(id, RejectReason.INVALID_FIELD.name(), e.toString());
            return;
        }
        Prepared old = pending.get(c.getLayer());
        if (old != null) {
            if (newer(old.candidate(), c)) {
                skip(p.candidate(), "candidate " + old.candidate().getCandidateId() + " of the same layer is newer");
                return;
            }
            skip(old.candidate(), "superseded by candidate " + id + " (factor version " + c.getFactorVersion() + ")");
            pending.remove(c.getLayer()); // re-inserted at the end: the layer waits its turn again
        }
        pending.put(c.getLayer(), p);
    }

    /**
     * Answers the oldest pending layer's candidate now, on the calling thread, measured at
     * {@code step} (for tests and callers that cannot spare a thread; {@link #poll} does not wait).
     */
    public Optional<ProbeResult> answerNext(long step) {
        if (pending.isEmpty()) {
            return Optional.empty();
        }
        Prepared p = nextPending();
        long t0 = System.nanoTime();
        try (EditEvaluator.Session session = evaluator.begin(maxTrainingExamples)) {
            Answer answer = measure(p, session, runId, step);
            long nanos = System.nanoTime() - t0;
            answerNanos += nanos;
            nonFiniteLosses += answer.nonFiniteLosses();
            return publish(p, answer.result(), session, nanos) ? Optional.of(answer.result()) : Optional.empty();
        } catch (RuntimeException e) {
            failed++;
            log.println("candidates: answering " + p.candidate().getCandidateId() + " failed: " + e + " (training goes on)");
            return Optional.empty();
        }
    }

    /**
     * Checks a candidate against this run and the model, and builds its edit and masks.
     *
     * @throws InvalidRecordException or {@link Refusal}, naming what is wrong
     */
    public static Prepared prepare(EditCandidate c, String runId, EditEvaluator evaluator) {
        String id = c.getCandidateId();
        if (id == null || id.isEmpty() || id.length() > 256) {
            throw new InvalidRecordException(RejectReason.INVALID_FIELD, "candidate_id must be 1-256 characters");
        }
        if (!runId.equals(c.getRunId())) {
            throw new InvalidRecordException(RejectReason.KEY_MISMATCH, "run_id '" + c.getRunId()
                    + "' is not this trainer's run '" + runId + "'");
        }
        LayerShape layer = evaluator.layer(c.getLayer()).orElseThrow(() -> new InvalidRecordException(
                RejectReason.UNKNOWN_LAYER, "layer '" + c.getLayer() + "' is not watched by this trainer"));
        List<Double> rhos = c.getRhos();
        List<Double> taus = c.getThresholds();
        if (rhos.isEmpty() || rhos.size() > MAX_RHOS || rhos.size() != taus.size()) {
            throw new InvalidRecordException(RejectReason.INVALID_FIELD, rhos.size() + " rhos and " + taus.size()
                    + " thresholds: need the same number, 1 to " + MAX_RHOS);
        }
        for (int k = 0; k < rhos.size(); k++) {
            double rho = rhos.get(k);
            double tau = taus.get(k);
            if (!Double.isFinite(rho) || !Double.isFinite(tau)) {
                throw new InvalidRecordException(RejectReason.NON_FINITE, "rho " + rho + " / threshold " + tau + " at index " + k);
            }
            if (!(rho > 0 && rho <= 1) || tau < 0) {
                throw new InvalidRecordException(RejectReason.INVALID_FIELD, "rho " + rho + " must be in (0, 1] and threshold "
                        + tau + " >= 0 (index " + k + ")");
            }
        }
        int kg = columns(c.getBasisG(), "basis_g", layer.dOut());
        int ka = columns(c.getBasisA(), "basis_a", layer.dIn());
        double[] ug = leadingColumns(c.getBasisG(), "basis_g", layer.dOut(), kg);
        double[] ua = leadingColumns(c.getBasisA(), "basis_a", layer.dIn(), ka);
        double[] lambda = spectrum(c.getEigenvaluesG(), "eigenvalues_g", layer.dOut());
        double[] mu = spectrum(c.getEigenvaluesA(), "eigenvalues_a", layer.dIn());
        requireOrthonormal(ug, layer.dOut(), kg, "basis_g");
        requireOrthonormal(ua, layer.dIn(), ka, "basis_a");
        Eigenbasis g = new Eigenbasis(layer.dOut(), lambda, ug, lambda[lambda.length - 1], precision(c.getBasisG()));
        Eigenbasis a = new Eigenbasis(layer.dIn(), mu, ua, mu[mu.length - 1], precision(c.getBasisA()));
        CurvatureEdit edit = new CurvatureEdit(g, a);
        double top = lambda[0] * mu[0];
        List<KeepMassMask> masks = new ArrayList<>(rhos.size());
        for (int k = 0; k < rhos.size(); k++) {
            KeepMassMask m = edit.select(rhos.get(k));
            double theirs = taus.get(k);
            if (!tauAgrees(m.tau(), theirs, top)) {
                throw new Refusal("THRESHOLD_MISMATCH", String.format(
                        "threshold %.9g for rho %s differs from this trainer's select(rho).tau() = %.9g (relative "
                                + "tolerance %.0e): the masks would not be the service's", theirs, rhos.get(k), m.tau(),
                        TAU_RELATIVE_TOLERANCE));
            }
            // v4: columns not sent are zero here, so a pair kept beyond them would silently drop out of W'
            if ((kg < layer.dOut() && m.rowCount(kg) > 0) || (m.rows() > 0 && m.rowCount(0) > ka)) {
                throw new Refusal("COLUMNS_MISSING", String.format(java.util.Locale.ROOT, "rho %s keeps pairs beyond the %d x %d "
                        + "leading basis columns sent", rhos.get(k), kg, ka));
            }
            masks.add(m);
        }
        EditCandidate withoutBases = EditCandidate.newBuilder(c)
                .setBasisG(TensorCodec.ofBytes(c.getBasisG().getDtype(), java.nio.ByteBuffer.allocate(0), 0, layer.dOut()))
                .setBasisA(TensorCodec.ofBytes(c.getBasisA().getDtype(), java.nio.ByteBuffer.allocate(0), 0, layer.dIn())).build();
        return new Prepared(withoutBases, layer, edit, List.copyOf(masks));
    }

    static boolean tauAgrees(double ours, double theirs, double topPair) {
        return Math.abs(ours - theirs) <= TAU_RELATIVE_TOLERANCE * Math.max(Math.abs(ours), Math.abs(theirs))
                + 1e-12 * topPair;
    }

    /** Scores the session's examples under W and every W'_k and builds the answer (any thread). */
    public static ProbeResult answer(Prepared p, EditEvaluator.Session session, String runId, long step) {
        return measure(p, session, runId, step).result();
    }

    /**
     * {@link #answer}, with the count of non-finite losses it replaced. A mask that keeps every
     * pair is the unedited layer (SERVICE-CONTRACT §1: its losses are loss_now exactly), so it reuses
     * the unedited scores instead of a round trip through the float32 bases that would move them by
     * rounding and could flip a flag on a near-tie. The masks of one candidate all come from one
     * spectrum's thresholds ({@code λ_i μ_j ≥ τ_k}), so they are nested and two keeping the same
     * number of pairs keep the same pairs: one forward pass serves both.
     */
    static Answer measure(Prepared p, EditEvaluator.Session session, String runId, long step) {
        String layer = p.layer().name();
        EditEvaluator.Scores now = session.score(layer, null);
        long allPairs = (long) p.layer().dOut() * p.layer().dIn();
        List<EditEvaluator.Scores> edited = new ArrayList<>(p.masks().size());
        Map<Long, EditEvaluator.Scores> byKeptPairs = new HashMap<>();
        CurvatureEdit.Coordinates coordinates = null; // once for all ρ (only the mask changes), and only if some ρ edits
        for (KeepMassMask m : p.masks()) {
            if (m.keptPairs() == allPairs) {
                edited.add(now);
                continue;
            }
            EditEvaluator.Scores s = byKeptPairs.get(m.keptPairs());
            if (s == null) {
                if (coordinates == null) {
                    coordinates = p.edit().coordinates(session.weight(layer).clone());
                }
                s = session.score(layer, p.edit().applyFloat32(coordinates, m));
                byKeptPairs.put(m.keptPairs(), s);
            }
            edited.add(s);
        }
        List<String> ids = session.sampleIds();
        boolean[] probe = session.probe();
        boolean correct = session.hasCorrect();
        long[] nonFinite = {0};
        List<ExampleLosses> examples = new ArrayList<>(ids.size());
        for (int i = 0; i < ids.size(); i++) {
            List<Float> losses = new ArrayList<>(edited.size());
            List<Boolean> flags = new ArrayList<>(correct ? edited.size() : 0);
            for (EditEvaluator.Scores s : edited) {
                losses.add(sentinel(s.loss()[i], nonFinite));
                if (correct) {
                    flags.add(s.correct()[i]);
                }
            }
            examples.add(ExampleLosses.newBuilder().setSampleId(ids.get(i)).setProbe(probe[i])
                    .setLossNow(sentinel(now.loss()[i], nonFinite)).setCorrectNow(correct && now.correct()[i])
                    .setLossEdited(losses).setCorrectEdited(flags).build());
        }
        ProbeResult result = ProbeResult.newBuilder().setRunId(runId).setCandidateId(p.candidate().getCandidateId())
                .setLayer(layer).setStep(step).setRhos(new ArrayList<>(p.candidate().getRhos())).setExamples(examples)
                .setTimestampMs(System.currentTimeMillis()).build();
        return new Answer(result, nonFinite[0]);
    }

    /**
     * A loss as SERVICE-CONTRACT §1 sends it: finite ones as they are, NaN and +∞ as
     * {@link Float#MAX_VALUE} (as bad as a loss gets), −∞ as −{@link Float#MAX_VALUE}; the service
     * leaves an example with such a loss out instead of dead-lettering the whole answer.
     */
    static float sentinel(float loss, long[] nonFinite) {
        if (Float.isFinite(loss)) {
            return loss;
        }
        nonFinite[0]++;
        return loss < 0 ? -Float.MAX_VALUE : Float.MAX_VALUE;
    }

    /** Columns a basis carries: its leading k of the layer's n (v4), 1 <= k <= n. */
    private static int columns(Tensor t, String field, int n) {
        List<Integer> shape = t.getShape();
        int k = shape.size() == 2 ? shape.get(1) : -1;
        if (k < 1 || k > n) {
            throw new InvalidRecordException(RejectReason.SHAPE_MISMATCH, field + " has shape " + shape
                    + ", the watched layer needs " + n + " x k, 1 <= k <= " + n);
        }
        return k;
    }

    /** The n x k basis as a row-major n x n one, the columns not sent zero (no kept pair uses them). */
    private static double[] leadingColumns(Tensor t, String field, int n, int k) {
        requireShape(t, field, n, k);
        TensorCodec.requireFinite(t, field);
        double[] v = TensorCodec.toDoubleArray(t, field);
        if (k == n) {
            return v;
        }
        double[] square = new double[n * n];
        for (int r = 0; r < n; r++) {
            System.arraycopy(v, r * k, square, r * n, k);
        }
        return square;
    }

    private static double[] spectrum(Tensor t, String field, int n) {
        requireShape(t, field, n);
        TensorCodec.requireFinite(t, field);
        double[] v = TensorCodec.toDoubleArray(t, field);
        for (int k = 0; k < n; k++) {
            if (v[k] < 0 || (k > 0 && v[k] > v[k - 1])) {
                throw new InvalidRecordException(RejectReason.INVALID_FIELD, field + " must be >= 0 and descending; index "
                        + k + " is " + v[k] + (k > 0 ? " after " + v[k - 1] : ""));
            }
        }
        return v;
    }

    private static void requireShape(Tensor t, String field, int... shape) {
        List<Integer> want = new ArrayList<>();
        for (int d : shape) {
            want.add(d);
        }
        if (!t.getShape().equals(want)) {
            throw new InvalidRecordException(RejectReason.SHAPE_MISMATCH, field + " has shape " + t.getShape()
                    + ", the watched layer needs " + want);
        }
        if (t.getDtype() != dev.curvewatch.avro.DType.FLOAT32 && t.getDtype() != dev.curvewatch.avro.DType.FLOAT64) {
            throw new InvalidRecordException(RejectReason.SHAPE_MISMATCH, field + " is " + t.getDtype()
                    + ", expected FLOAT32 or FLOAT64");
        }
        TensorCodec.requireConsistent(t, field);
    }

    /**
     * Cheap orthonormality test of the columns of a row-major n x n matrix: every column's norm,
     * and the inner products of columns j, j+1 and of j, j+n/2. O(n²), so a basis whose columns
     * are scaled, repeated next to each other or not orthogonal at all is caught without forming UᵀU.
     */
    static void requireOrthonormal(double[] v, int n, String field) {
        requireOrthonormal(v, n, n, field);
    }

    /** As above, over the leading k columns of a row-major n x n matrix. */
    static void requireOrthonormal(double[] v, int n, int k, String field) {
        double[] norms = new double[k];
        double[] next = new double[k];
        double[] half = new double[k];
        int shift = Math.max(1, k / 2);
        for (int i = 0; i < n; i++) {
            int row = i * n;
            for (int j = 0; j < k; j++) {
                double x = v[row + j];
                norms[j] += x * x;
                next[j] += x * v[row + (j + 1) % k];
                half[j] += x * v[row + (j + shift) % k];
            }
        }
        for (int j = 0; j < k; j++) {
            if (Math.abs(Math.sqrt(norms[j]) - 1) > ORTHONORMAL_TOLERANCE) {
                throw new Refusal("NOT_ORTHONORMAL", field + " is not orthonormal: column " + j + " has norm "
                        + Math.sqrt(norms[j]));
            }
            if (k > 1 && (Math.abs(next[j]) > ORTHONORMAL_TOLERANCE || Math.abs(half[j]) > ORTHONORMAL_TOLERANCE)) {
                double worst = Math.abs(next[j]) > Math.abs(half[j]) ? next[j] : half[j];
                int other = Math.abs(next[j]) > Math.abs(half[j]) ? (j + 1) % k : (j + shift) % k;
                throw new Refusal("NOT_ORTHONORMAL", field + " is not orthonormal: columns " + j + " and "
                        + other + " have inner product " + worst);
            }
        }
    }

    private static Precision precision(Tensor t) {
        return t.getDtype() == dev.curvewatch.avro.DType.FLOAT64 ? Precision.FLOAT64 : Precision.FLOAT32;
    }

    /** Whether {@code a} is strictly newer than {@code b} (factor version, then step, then creation time). */
    private static boolean newer(EditCandidate a, EditCandidate b) {
        if (a.getFactorVersion() != b.getFactorVersion()) {
            return a.getFactorVersion() > b.getFactorVersion();
        }
        if (a.getStep() != b.getStep()) {
            return a.getStep() > b.getStep();
        }
        return a.getCreatedMs() > b.getCreatedMs();
    }

    /**
     * Bytes an answer to a d_out x d_in layer's candidate holds at its peak: the bases as the
     * candidate carries them (float32) and as the edit holds them (fp64, plus a copy while it is
     * built), the coordinates C and, for one ρ at a time, the native operands of the edit's two
     * gemms and the edited weight.
     */
    public static long answerBytes(int dOut, int dIn) {
        long squares = (long) dOut * dOut + (long) dIn * dIn;
        long weight = (long) dOut * dIn;
        return 4 * squares + 16 * squares + 8 * squares + 40 * weight;
    }

    /** Refuses (once) a candidate whose answer would exceed the budget; true when refused. */
    private boolean overBudget(EditCandidate c) {
        Optional<LayerShape> shape = evaluator.layer(c.getLayer());
        if (shape.isEmpty()) {
            return false; // refused below with the reason that fits
        }
        long needed = answerBytes(shape.get().dOut(), shape.get().dIn());
        if (needed <= answerBudgetBytes) {
            return false;
        }
        overBudget.add(c.getCandidateId());
        if (overBudget.size() > REMEMBERED_IDS) {
            Iterator<String> it = overBudget.iterator();
            it.next();
            it.remove();
        }
        refuse(c.getCandidateId(), RejectReason.OVERSIZED.name(), String.format(java.util.Locale.ROOT,
                "answering candidate %s of layer %s (%d x %d) needs about %.2f GiB, over this trainer's answer budget of %.2f GiB",
                c.getCandidateId(), c.getLayer(), shape.get().dOut(), shape.get().dIn(), needed / (double) (1L << 30),
                answerBudgetBytes / (double) (1L << 30)));
        return true;
    }

    private void skip(EditCandidate c, String why) {
        skipped++;
        log.println("candidates: skipped " + c.getCandidateId() + " (" + c.getLayer() + "): " + why);
        notify("candidateSkipped(" + c.getCandidateId() + ")", () -> events.candidateSkipped(c, why));
    }

    private void refuse(String id, String reason, String message) {
        refused++;
        refusalReasons.merge(reason, 1L, Long::sum);
        log.println("candidates: refused " + id + ": " + message);
        notify("candidateRefused(" + id + ")", () -> events.candidateRefused(id, reason, message));
    }

    private void remember(String id) {
        seenIds.add(id);
        if (seenIds.size() > REMEMBERED_IDS) {
            Iterator<String> it = seenIds.iterator();
            it.next();
            it.remove();
        }
    }

    public long answered() {
        return answered;
    }

    /** Valid candidates not answered because a newer one of the same layer was pending. */
    public long skipped() {
        return skipped;
    }

    public long refused() {
        return refused;
    }

    /** Candidates whose id had been received before. */
    public long duplicates() {
        return duplicates;
    }

    /** Records of other runs on the shared topic (ignored). */
    public long otherRuns() {
        return otherRuns;
    }

    /** Answers the sink did not take (DROP policy, too large). */
    public long notPublished() {
        return notPublished;
    }

    /** Reading or answering failures that were not the candidate's fault. */
    public long failed() {
        return failed;
    }

    /** Answers whose sink threw (nothing sent; not retried). */
    public long publishFailures() {
        return publishFailures;
    }

    /** Observer callbacks ({@link Events}) that threw (ignored). */
    public long observerFailures() {
        return observerFailures;
    }

    /** Losses sent as ±{@link Float#MAX_VALUE} because they were NaN or infinite. */
    public long nonFiniteLosses() {
        return nonFiniteLosses;
    }

    public int pending() {
        return pending.size();
    }

    /** Refusals by reason (RejectReason names, NOT_ORTHONORMAL, THRESHOLD_MISMATCH). */
    public Map<String, Long> refusalReasons() {
        return new TreeMap<>(refusalReasons);
    }

    /** Time spent scoring answers (edits and forward passes), in ms. */
    public double answerMillis() {
        return answerNanos / 1e6;
    }

    public Map<String, Object> summary() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("candidates_answered", answered);
        m.put("candidates_skipped", skipped);
        m.put("candidates_refused", refused);
        m.put("candidates_duplicate", duplicates);
        m.put("candidates_other_runs", otherRuns);
        // counted when close began, before it finished (and cleared) the answer in progress
        m.put("candidates_pending_at_end", pendingAtClose >= 0 ? pendingAtClose : pendingNow());
        m.put("candidate_failures", failed);
        m.put("probe_result_publish_failures", publishFailures);
        m.put("candidate_observer_failures", observerFailures);
        m.put("candidate_nonfinite_losses", nonFiniteLosses);
        m.put("candidate_refusal_reasons", refusalReasons());
        m.put("probe_results_not_published", notPublished);
        m.put("candidate_answer_ms", answerMillis());
        m.put("candidate_parts_received", partsReceived);
        return m;
    }

    private long pendingNow() {
        return (long) pending.size() + (inFlight == null ? 0 : 1);
    }

    /**
     * Publishes the answer in progress (waiting up to {@code wait} for it), then stops the worker and
     * the tail. The candidates pending at that moment, the one in progress included, are what the
     * summary reports as {@code candidates_pending_at_end}.
     */
    public void close(Duration wait) {
        if (pendingAtClose < 0) {
            pendingAtClose = pendingNow();
        }
        InFlight f = inFlight;
        inFlight = null; // out before finishing it, as in poll
        try {
            if (f != null) {
                finish(f, wait);
            }
        } finally {
            if (worker != null) {
                worker.shutdown(); // queued session closes still run; the thread is a daemon
                worker = null;
            }
            if (tail != null) {
                tail.close();
                tail = null;
            }
        }
    }

    @Override
    public void close() {
        close(Duration.ofSeconds(60));
    }

    /** A candidate refused for a reason that has no {@link RejectReason} (NOT_ORTHONORMAL, THRESHOLD_MISMATCH). */
    public static final class Refusal extends RuntimeException {
        private final String reason;

        Refusal(String reason, String message) {
            super(reason + ": " + message);
            this.reason = reason;
        }

        public String reason() {
            return reason;
        }
    }
}
