package dev.curvewatch.workers.internal;

import org.apache.kafka.clients.consumer.ConsumerGroupMetadata;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.TimeoutException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.time.Duration;
import java.util.Map;
import java.util.function.BooleanSupplier;
import java.util.function.Supplier;

/**
 * The worker's transactional producer and its open transaction: one is begun by the first send
 * after a commit or abort; a commit that times out is retried (Kafka allows only that after a
 * timeout); a producer that cannot abort (fenced, its epoch bumped by the coordinator, or in a
 * fatal state) is replaced by a new one with the same transactional id, whose
 * {@code initTransactions} completes or aborts what the old one left. Whether a fence means a real
 * duplicate instance is the group's to say ({@link WorkerLoop}). What goes into a transaction and
 * when it commits is {@link WorkerLoop}'s. Used by the poll thread only.
 */
final class TransactionalProducer implements AutoCloseable {
    private static final Logger log = LoggerFactory.getLogger(TransactionalProducer.class);

    private final Supplier<KafkaProducer<byte[], byte[]>> factory;
    /** False once the worker is stopping: retries give up sooner. */
    private final BooleanSupplier running;
    private KafkaProducer<byte[], byte[]> producer;
    private boolean open;

    /** Creates the producer and fences an earlier incarnation with the same transactional id, aborting its open transaction. */
    TransactionalProducer(Supplier<KafkaProducer<byte[], byte[]>> factory, BooleanSupplier running) {
        this.factory = factory;
        this.running = running;
        this.producer = factory.get();
        try {
            // a broker that is starting (or loaded) may not have its transaction coordinator yet: a timeout here is
            // retried like a replacement's, not fatal (WorkerFailuresIT's worker died so with max.block.ms 2 s)
            initTransactionsWithRetry();
        } catch (RuntimeException e) {
            producer.close(Duration.ZERO);
            throw e;
        }
    }

    /** Whether a transaction is open (begun since the last commit or abort, or a begin failed): the rollback must abort it. */
    boolean isOpen() {
        return open;
    }

    /** Sends a record in the open transaction, beginning one if none is. */
    void send(ProducerRecord<byte[], byte[]> record) {
        begin();
        producer.send(record);
    }

    /** Begins a transaction if none is open. */
    void begin() {
        if (!open) {
            // open before beginTransaction: a producer that cannot begin (fenced, fatal) is replaced by the rollback
            open = true;
            producer.beginTransaction();
        }
    }

    void sendOffsets(Map<TopicPartition, OffsetAndMetadata> offsets, ConsumerGroupMetadata group) {
        producer.sendOffsetsToTransaction(offsets, group);
    }

    /** Commits the open transaction, retrying a timeout up to 4 attempts (2 while stopping). */
    void commit() {
        for (int attempt = 1; ; attempt++) {
            try {
                producer.commitTransaction();
                open = false;
                return;
            } catch (TimeoutException e) {
                // commitTransaction may be retried after a timeout (broker briefly unreachable)
                if (attempt >= 4 || !running.getAsBoolean() && attempt >= 2) {
                    throw e;
                }
                log.warn("commit timed out (attempt {}), retrying: {}", attempt, e.getMessage());
            }
        }
    }

    /** Aborts the open transaction, or replaces the producer if it cannot; nothing if none is open. */
    void abortOrReplace() {
        if (!open) {
            return;
        }
        try {
            producer.abortTransaction();
        } catch (KafkaException | IllegalStateException e) {
            // IllegalStateException: a commitTransaction timed out (broker away) and Kafka allows only retrying it;
            // the replacement's initTransactions completes or aborts that transaction, and the rollback then reads
            // whichever offsets it left committed. ProducerFencedException: the coordinator holds a newer epoch of
            // this id; a real duplicate worker is told so by the group (FencedInstanceIdException, WorkerLoop)
            log.warn("abort failed ({}); replacing the producer", e.toString());
            producer.close(Duration.ZERO);
            producer = factory.get();
            initTransactionsWithRetry();
        }
        open = false;
    }

    private void initTransactionsWithRetry() {
        for (int attempt = 1; ; attempt++) {
            try {
                producer.initTransactions();
                return;
            } catch (TimeoutException e) {
                // nothing can be committed without a producer: keep trying while the broker is away
                if (!running.getAsBoolean()) {
                    throw e;
                }
                log.warn("initTransactions timed out (attempt {}), retrying", attempt);
            }
        }
    }

    @Override
    public void close() {
        producer.close(Duration.ofSeconds(10));
    }
}
