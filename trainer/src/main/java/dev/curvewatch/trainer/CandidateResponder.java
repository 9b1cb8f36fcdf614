package dev.curvewatch.trainer;

import dev.curvewatch.avro.EditCandidate;
import dev.curvewatch.avro.ProbeResult;
import dev.curvewatch.curvature.CurvatureEdit;
import dev.curvewatch.schemas.CurvewatchTopics;
import dev.curvewatch.trainer.CandidateValidator.Prepared;
import dev.curvewatch.schemas.InvalidRecordException;
import dev.curvewatch.schemas.RejectReason;
import org.apache.kafka.clients.consumer.ConsumerRecord;

import java.io.PrintStream;
import java.time.Duration;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ExecutionException;
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
 * <p>The work is split along its seams: {@link CandidateIntake} turns records into whole new
 * candidates of this run (decoding, other runs, the answer budget, row parts, duplicates),
 * {@link CandidateBases} fills in bases named instead of sent (v4), {@link CandidateValidator} checks
 * a candidate and builds its edit and masks, {@link PendingCandidates} keeps the newest per layer,
 * {@link CandidateScorer} scores an answer, {@link ResponderCounters} counts; this class runs them
 * between steps, handing each answer to the {@link AnswerWorker}'s thread and publishing it when scored.
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
 *
 * <p>Over 400 lines with its comments (about 270 of code): the javadoc above is the trainer's side
 * of the round trip's contract, kept with the class that runs it.
 */
public final class CandidateResponder implements AutoCloseable {
    /** Training examples per answer (SERVICE-CONTRACT §1). */
    public static final int MAX_TRAINING_EXAMPLES = 512;

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

        /** {@code candidate} without its bases if it was checked already ({@link CandidateValidator.Prepared}). */
        default void candidateSkipped(EditCandidate candidate, String why) {
        }

        default void candidateRefused(String candidateId, String reason, String message) {
        }
    }

    private final String runId;
    private final EditEvaluator evaluator;
    private final Sink sink;
    private final PrintStream log;
    private final Events events;
    private final int maxTrainingExamples;
    private final ResponderCounters counters = new ResponderCounters();
    private final CandidateIntake intake;
    /** Bases later candidates may name instead of sending (EditCandidate v4). */
    private final CandidateBases bases = new CandidateBases();
    private final PendingCandidates pending = new PendingCandidates();
    private TopicTail tail;
    private final AnswerWorker worker = new AnswerWorker();
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
        this.runId = runId;
        this.evaluator = evaluator;
        this.sink = sink;
        this.log = log;
        this.events = events == null ? new Events() { } : events;
        this.maxTrainingExamples = maxTrainingExamples;
        this.intake = new CandidateIntake(runId, evaluator::layer, answerBudgetBytes, counters, log, this::refuse);
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
                counters.failed++;
                log.println("candidates: reading " + tail.topic() + " failed: " + e + " (training goes on)");
            }
        }
        Optional<ProbeResult> done = Optional.empty();
        AnswerWorker.InFlight finished = worker.takeIfDone(); // taken out first: this answer is handled once
        if (finished != null) {
            done = finish(finished, Duration.ZERO);
        }
        if (!worker.busy() && !pending.isEmpty()) {
            Prepared p = pending.next();
            EditEvaluator.Session session;
            try {
                session = evaluator.begin(maxTrainingExamples);
            } catch (RuntimeException e) {
                counters.failed++;
                log.println("candidates: freezing the model for " + p.candidate().getCandidateId() + " failed: " + e);
                return done;
            }
            worker.start(p, session, runId, step);
        }
        return done;
    }

    /** Whether an answer is being scored now. */
    public boolean answering() {
        return worker.busy();
    }

    /** Waits until the answer in progress (if any) is scored; the next {@link #poll} publishes it. For tests. */
    boolean awaitScored(Duration timeout) throws InterruptedException {
        return worker.awaitScored(timeout);
    }

    /**
     * Publishes a finished (or, waiting up to {@code wait}, finishing) answer; closes its session.
     * Never throws: a failing sink or observer is counted by {@link #publish}.
     */
    private Optional<ProbeResult> finish(AnswerWorker.InFlight f, Duration wait) {
        String id = f.candidate().candidate().getCandidateId();
        try {
            CandidateScorer.Answer answer = f.result().get(wait.toMillis(), TimeUnit.MILLISECONDS);
            long nanos = System.nanoTime() - f.startNanos();
            counters.answerNanos += nanos;
            counters.nonFiniteLosses += answer.nonFiniteLosses();
            return publish(f.candidate(), answer.result(), f.session(), nanos) ? Optional.of(answer.result()) : Optional.empty();
        } catch (ExecutionException e) {
            counters.failed++;
            log.println("candidates: answering " + id + " failed: " + e.getCause() + " (training goes on)");
        } catch (TimeoutException e) {
            counters.failed++;
            log.println("candidates: answering " + id + " did not finish within " + wait.toSeconds() + " s; abandoned");
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            counters.failed++;
        } finally {
            worker.release(f);
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
            counters.publishFailures++;
            log.println("candidates: publishing the answer to " + id + " failed: " + e
                    + "; it is not sent and not retried (training goes on)");
            return false;
        }
        if (!taken) {
            counters.notPublished++;
            log.println("candidates: answer to " + id + " was not published (dropped)");
        }
        counters.answered++;
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
            counters.observerFailures++;
            log.println("candidates: the observer's " + what + " threw " + e + " (ignored; training goes on)");
        }
    }

    /** One record of topic edit-candidates (key = run id): checked now, answered by {@link #answerNext}. */
    public void offer(String key, byte[] value) {
        intake.accept(key, value).ifPresent(this::validate);
    }

    /** Checks a whole candidate (named bases filled in) and queues it; a bad one is refused. */
    private void validate(EditCandidate whole) {
        String id = whole.getCandidateId();
        Prepared p;
        try {
            EditCandidate c = bases.resolve(whole);
            p = CandidateValidator.prepare(c, runId, evaluator::layer);
            bases.remember(c);
        } catch (InvalidRecordException e) {
            refuse(id, e.reason().name(), e.getMessage());
            return;
        } catch (CandidateValidator.Refusal e) {
            refuse(id, e.reason(), e.getMessage());
            return;
        } catch (RuntimeException e) {
            refuse(id, RejectReason.INVALID_FIELD.name(), e.toString());
            return;
        }
        pending.add(p, this::skip);
    }

    /**
     * Answers the oldest pending layer's candidate now, on the calling thread, measured at
     * {@code step} (for tests and callers that cannot spare a thread; {@link #poll} does not wait).
     */
    public Optional<ProbeResult> answerNext(long step) {
        if (pending.isEmpty()) {
            return Optional.empty();
        }
        Prepared p = pending.next();
        long t0 = System.nanoTime();
        try (EditEvaluator.Session session = evaluator.begin(maxTrainingExamples)) {
            CandidateScorer.Answer answer = CandidateScorer.measure(p, session, runId, step);
            long nanos = System.nanoTime() - t0;
            counters.answerNanos += nanos;
            counters.nonFiniteLosses += answer.nonFiniteLosses();
            return publish(p, answer.result(), session, nanos) ? Optional.of(answer.result()) : Optional.empty();
        } catch (RuntimeException e) {
            counters.failed++;
            log.println("candidates: answering " + p.candidate().getCandidateId() + " failed: " + e + " (training goes on)");
            return Optional.empty();
        }
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

    private void skip(EditCandidate c, String why) {
        counters.skipped++;
        log.println("candidates: skipped " + c.getCandidateId() + " (" + c.getLayer() + "): " + why);
        notify("candidateSkipped(" + c.getCandidateId() + ")", () -> events.candidateSkipped(c, why));
    }

    private void refuse(String id, String reason, String message) {
        counters.refusal(reason);
        log.println("candidates: refused " + id + ": " + message);
        notify("candidateRefused(" + id + ")", () -> events.candidateRefused(id, reason, message));
    }

    public long answered() {
        return counters.answered;
    }

    /** Valid candidates not answered because a newer one of the same layer was pending. */
    public long skipped() {
        return counters.skipped;
    }

    public long refused() {
        return counters.refused;
    }

    /** Candidates whose id had been received before. */
    public long duplicates() {
        return counters.duplicates;
    }

    /** Records of other runs on the shared topic (ignored). */
    public long otherRuns() {
        return counters.otherRuns;
    }

    /** Answers the sink did not take (DROP policy, too large). */
    public long notPublished() {
        return counters.notPublished;
    }

    /** Reading or answering failures that were not the candidate's fault. */
    public long failed() {
        return counters.failed;
    }

    /** Answers whose sink threw (nothing sent; not retried). */
    public long publishFailures() {
        return counters.publishFailures;
    }

    /** Observer callbacks ({@link Events}) that threw (ignored). */
    public long observerFailures() {
        return counters.observerFailures;
    }

    /** Losses sent as ±{@link Float#MAX_VALUE} because they were NaN or infinite. */
    public long nonFiniteLosses() {
        return counters.nonFiniteLosses;
    }

    public int pending() {
        return pending.size();
    }

    /** Refusals by reason (RejectReason names, NOT_ORTHONORMAL, THRESHOLD_MISMATCH). */
    public Map<String, Long> refusalReasons() {
        return counters.refusalReasons();
    }

    /** Time spent scoring answers (edits and forward passes), in ms. */
    public double answerMillis() {
        return counters.answerNanos / 1e6;
    }

    public Map<String, Object> summary() {
        // pending counted when close began, before it finished (and cleared) the answer in progress
        return counters.summary(pendingAtClose >= 0 ? pendingAtClose : pendingNow());
    }

    private long pendingNow() {
        return (long) pending.size() + (worker.busy() ? 1 : 0);
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
        AnswerWorker.InFlight f = worker.take(); // out before finishing it, as in poll
        try {
            if (f != null) {
                finish(f, wait);
            }
        } finally {
            worker.shutdown();
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


}
