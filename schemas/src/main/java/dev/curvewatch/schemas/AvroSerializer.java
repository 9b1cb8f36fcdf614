package dev.curvewatch.schemas;

import org.apache.avro.Schema;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.EncoderFactory;
import org.apache.avro.specific.SpecificDatumWriter;
import org.apache.avro.specific.SpecificRecord;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.serialization.Serializer;

import java.io.ByteArrayOutputStream;
import java.io.IOException;

/**
 * Avro single-object encoding (marker C3 01, 8-byte little-endian CRC-64-AVRO fingerprint, binary
 * body): self-describing enough to decode with a {@link SchemaCatalog}, no registry needed. The
 * Python client writes the same bytes. Thread-safe: Kafka calls a producer's serializer from
 * every thread that sends, and the service sends from several.
 */
public final class AvroSerializer<T extends SpecificRecord> implements Serializer<T> {
    private final Schema schema;
    private final byte[] header;
    private final SpecificDatumWriter<T> writer;
    /** Size of the last record written: a hint that spares large records the buffer's doublings. */
    private volatile int lastSize = 256;

    public AvroSerializer(Class<T> type) {
        this.schema = RecordTypes.schemaOf(type);
        this.header = SingleObjectHeader.of(SchemaCatalog.fingerprint(schema));
        this.writer = new SpecificDatumWriter<>(schema);
    }

    @Override
    public byte[] serialize(String topic, T record) {
        if (record == null) {
            return null; // tombstone on compacted topics
        }
        ByteArrayOutputStream out = new ByteArrayOutputStream(lastSize + 64);
        out.writeBytes(header);
        try {
            // an encoder per call (a 2 KiB buffer): one shared between threads interleaves their records
            BinaryEncoder encoder = EncoderFactory.get().binaryEncoder(out, null);
            writer.write(record, encoder);
            encoder.flush();
        } catch (IOException | RuntimeException e) {
            throw new SerializationException("cannot encode " + schema.getName() + " for topic " + topic + ": " + e.getMessage(), e);
        }
        lastSize = out.size();
        return out.toByteArray();
    }
}
