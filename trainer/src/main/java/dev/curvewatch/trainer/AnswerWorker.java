package dev.curvewatch.trainer;

import dev.curvewatch.trainer.CandidateValidator.Prepared;

import java.time.Duration;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * The one answer being scored off the training thread, and the daemon thread that scores it. An
 * answer is taken out before its caller finishes it, so it is handled once whatever finishing does.
 * Training thread only (the scoring itself runs on the worker).
 */
final class AnswerWorker {
    /** An answer being scored: its candidate, the frozen model it scores, the result to come. */
    record InFlight(Prepared candidate, EditEvaluator.Session session, Future<CandidateScorer.Answer> result,
                    long startNanos) {
    }

    private ExecutorService executor;
    private InFlight inFlight;

    boolean busy() {
        return inFlight != null;
    }

    /** Starts scoring {@code p} on {@code session} as of {@code step}; the caller has checked {@link #busy()}. */
    void start(Prepared p, EditEvaluator.Session session, String runId, long step) {
        if (executor == null) {
            executor = Executors.newSingleThreadExecutor(r -> {
                Thread t = new Thread(r, "curvewatch-candidate-answers");
                t.setDaemon(true);
                return t;
            });
        }
        inFlight = new InFlight(p, session, executor.submit(() -> CandidateScorer.measure(p, session, runId, step)),
                System.nanoTime());
    }

    /** The answer in progress, taken out, once it is scored; null while it is not (or none is). */
    InFlight takeIfDone() {
        return inFlight != null && inFlight.result().isDone() ? take() : null;
    }

    /** The answer in progress, taken out, scored or not; null when none is. */
    InFlight take() {
        InFlight f = inFlight;
        inFlight = null;
        return f;
    }

    /** Waits until the answer in progress (if any) is scored. For tests. */
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

    /** Closes a finished answer's session now, or after its scoring ends (freeing native memory mid-scoring could crash it). */
    void release(InFlight f) {
        if (f.result().isDone()) {
            f.session().close();
        } else {
            executor.submit(f.session()::close);
        }
    }

    /** Stops the thread once the queued session closes have run (it is a daemon). */
    void shutdown() {
        if (executor != null) {
            executor.shutdown();
            executor = null;
        }
    }
}
