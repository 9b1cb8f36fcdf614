package dev.curvewatch.workers.internal;

import dev.curvewatch.schemas.InvalidRecordException;
import dev.curvewatch.schemas.RejectReason;
import dev.curvewatch.workers.WorkerMetrics;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;

import java.time.Duration;
import java.util.List;
import java.util.Set;

/**
 * Whether a capture record is taken in: {@link CaptureValidator}'s checks against the runs known,
 * and for a capture whose run is not registered yet, the {@link UnknownRunDeferral} policy applied
 * to the consumer (the runs topic re-read, the partition paused at the capture and resumed for a
 * retry). Used by the poll thread only.
 */
final class CaptureAdmission {
    private static final long RUNS_CATCH_UP_MIN_INTERVAL_MS = 200;

    private final CaptureValidator validator;
    private final UnknownRunDeferral deferral;
    private final RunRegistry runs;
    private final KafkaConsumer<byte[], byte[]> consumer;
    private final int capturePartitions;
    private final WorkerMetrics metrics;
    private final Duration timeout;

    CaptureAdmission(CaptureValidator validator, UnknownRunDeferral deferral, RunRegistry runs,
                     KafkaConsumer<byte[], byte[]> consumer, int capturePartitions, WorkerMetrics metrics, Duration timeout) {
        this.validator = validator;
        this.deferral = deferral;
        this.runs = runs;
        this.consumer = consumer;
        this.capturePartitions = capturePartitions;
        this.metrics = metrics;
        this.timeout = timeout;
    }

    /**
     * The capture, checked; null if its run is not registered yet and its partition is now paused
     * at it (the rest of the partition's batch waits).
     *
     * @throws InvalidRecordException the capture is a dead letter (an unknown run after its grace period, too)
     */
    CaptureValidator.Accepted admit(ConsumerRecord<byte[], byte[]> r) {
        TopicPartition tp = new TopicPartition(r.topic(), r.partition());
        CaptureValidator.Accepted ok;
        try {
            ok = check(r);
        } catch (InvalidRecordException e) {
            if (e.reason() != RejectReason.UNKNOWN_RUN) {
                throw e;
            }
            runs.catchUp(timeout, RUNS_CATCH_UP_MIN_INTERVAL_MS);
            try {
                ok = check(r);
            } catch (InvalidRecordException again) {
                if (again.reason() == RejectReason.UNKNOWN_RUN && defer(tp, r.offset())) {
                    return null;
                }
                throw again;
            }
        }
        deferral.accepted(tp);
        return ok;
    }

    private CaptureValidator.Accepted check(ConsumerRecord<byte[], byte[]> r) {
        return validator.check(r.key(), r.value(), r.partition(), capturePartitions, runs::get);
    }

    /** @return true if the capture's partition is paused on it, false if its grace period is over */
    private boolean defer(TopicPartition tp, long offset) {
        UnknownRunDeferral.Outcome outcome = deferral.unknownRun(tp, offset, System.currentTimeMillis());
        if (outcome == UnknownRunDeferral.Outcome.GRACE_OVER) {
            return false;
        }
        if (outcome == UnknownRunDeferral.Outcome.PAUSED_FIRST_TIME) {
            metrics.inc("curvewatch_worker_unknown_run_deferrals_total", 1);
        }
        consumer.seek(tp, offset);
        consumer.pause(List.of(tp));
        return true;
    }

    /** Whether the partition is paused on a capture of an unknown run (the rest of its batch waits). */
    boolean isPaused(TopicPartition tp) {
        return deferral.isPaused(tp);
    }

    /** Resumes the assigned partitions whose deferred capture is due for a retry, after re-reading the runs topic. */
    void resumeDue(Set<TopicPartition> assigned) {
        if (deferral.paused() == 0) {
            return;
        }
        List<TopicPartition> ready = deferral.dueForRetry(System.currentTimeMillis());
        if (!ready.isEmpty()) {
            runs.catchUp(timeout, 0);
            ready.retainAll(assigned);
            consumer.resume(ready);
        }
    }

    /** Forgets a partition given up or reset, resuming it if it was paused. */
    void forget(TopicPartition tp) {
        if (deferral.forget(tp)) {
            try {
                consumer.resume(List.of(tp));
            } catch (IllegalStateException ignored) {
                // no longer assigned
            }
        }
    }
}
