package dev.curvewatch.streams.internal;

import dev.curvewatch.avro.DeadLetter;
import dev.curvewatch.schemas.DeadLetters;
import dev.curvewatch.schemas.InvalidRecordException;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.processor.api.RecordMetadata;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/** Forwards a rejected input record to the dead-letters sink, with where it came from and why. */
public final class Rejects {
    private static final Logger LOG = LoggerFactory.getLogger(Rejects.class);
    /** Dead letters keep at most this much of the original value (alerts and registrations are small). */
    static final int MAX_VALUE_BYTES = 1 << 20;

    private Rejects() {
    }

    public static void forward(ProcessorContext<Object, Object> ctx, Record<byte[], byte[]> r, InvalidRecordException e,
                               String component) {
        RecordMetadata m = ctx.recordMetadata().orElse(null);
        DeadLetter dl = DeadLetters.of(m == null ? "?" : m.topic(), m == null ? -1 : m.partition(), m == null ? -1 : m.offset(),
                r.key(), r.value(), MAX_VALUE_BYTES, e, component);
        LOG.warn("dead letter from {}: {} {}", dl.getTopic(), e.reason(), e.getMessage());
        ctx.forward(new Record<Object, Object>(r.key(), dl, r.timestamp()), Names.DEAD_LETTERS_SINK);
    }
}
