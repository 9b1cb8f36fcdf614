package dev.curvewatch.streams.internal;

import dev.curvewatch.avro.DeadLetter;
import dev.curvewatch.schemas.AvroDeserializer;
import dev.curvewatch.schemas.InvalidRecordException;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueStore;

/**
 * Dead-letter statistics: a count per {@code <original topic>/<reason code>} of everything on the
 * dead-letters topic, from every component. A record there that does not decode is counted under
 * {@code ?/UNDECODABLE} and not dead-lettered again (that would loop).
 */
public final class DeadLetterStatsProcessor implements Processor<byte[], byte[], Object, Object> {
    private final AvroDeserializer<DeadLetter> decoder = new AvroDeserializer<>(DeadLetter.class);
    private KeyValueStore<String, Long> counts;

    @Override
    public void init(ProcessorContext<Object, Object> context) {
        this.counts = context.getStateStore(Names.DEAD_LETTER_COUNTS_STORE);
    }

    @Override
    public void process(Record<byte[], byte[]> r) {
        String key = "?/UNDECODABLE";
        if (r.value() != null) {
            try {
                DeadLetter dl = decoder.decode(r.value());
                key = dl.getTopic() + "/" + dl.getReasonCode();
            } catch (InvalidRecordException e) {
                // counted as undecodable below
            }
        }
        Long n = counts.get(key);
        counts.put(key, n == null ? 1 : n + 1);
    }
}
