package dev.curvewatch.schemas;

import org.apache.avro.AvroRuntimeException;
import org.apache.avro.Schema;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.specific.SpecificDatumReader;
import org.apache.avro.specific.SpecificRecord;
import org.apache.kafka.common.serialization.Deserializer;

import java.io.EOFException;
import java.io.IOException;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Decodes single-object encoded records into {@code T}, resolving older or newer writer schemas
 * found in the {@link SchemaCatalog}. Every failure is an {@link InvalidRecordException} naming
 * what was wrong; nothing decodes to a silent default.
 */
public final class AvroDeserializer<T extends SpecificRecord> implements Deserializer<T> {
    private final Class<T> type;
    private final Schema readerSchema;
    private final SchemaCatalog catalog;
    private final Map<Long, SpecificDatumReader<T>> readers = new ConcurrentHashMap<>();

    public AvroDeserializer(Class<T> type) {
        this(type, SchemaCatalog.defaultCatalog());
    }

    public AvroDeserializer(Class<T> type, SchemaCatalog catalog) {
        this.type = type;
        this.readerSchema = RecordTypes.schemaOf(type);
        this.catalog = catalog;
    }

    @Override
    public T deserialize(String topic, byte[] data) {
        if (data == null) {
            return null; // tombstone
        }
        return decode(data);
    }

    /** Decodes one record, or throws {@link InvalidRecordException}. */
    public T decode(byte[] data) {
        if (data.length < SingleObjectHeader.LENGTH) {
            throw new InvalidRecordException(RejectReason.TRUNCATED,
                    "record has " + data.length + " bytes, fewer than the 10-byte single-object header");
        }
        if (data[0] != SingleObjectHeader.MARKER_0 || data[1] != SingleObjectHeader.MARKER_1) {
            throw new InvalidRecordException(RejectReason.BAD_HEADER, String.format(
                    "expected Avro single-object marker C3 01, found %02X %02X", data[0] & 0xFF, data[1] & 0xFF));
        }
        long fingerprint = SingleObjectHeader.fingerprint(data);
        SpecificDatumReader<T> reader = readers.computeIfAbsent(fingerprint, this::readerFor);
        BinaryDecoder decoder = DecoderFactory.get().binaryDecoder(
                data, SingleObjectHeader.LENGTH, data.length - SingleObjectHeader.LENGTH, null);
        T record;
        try {
            record = reader.read(null, decoder);
        } catch (EOFException e) {
            throw new InvalidRecordException(RejectReason.TRUNCATED,
                    readerSchema.getName() + " body ends early (" + data.length + " bytes in all)", e);
        } catch (IOException | AvroRuntimeException | IndexOutOfBoundsException | NegativeArraySizeException
                 | ClassCastException | IllegalArgumentException | UnsupportedOperationException e) {
            throw new InvalidRecordException(RejectReason.MALFORMED,
                    readerSchema.getName() + " body does not parse: " + e, e);
        }
        try {
            if (!decoder.isEnd()) {
                throw new InvalidRecordException(RejectReason.TRAILING_BYTES,
                        readerSchema.getName() + " parsed but bytes are left over after it");
            }
        } catch (IOException e) {
            throw new InvalidRecordException(RejectReason.MALFORMED, "cannot check record end: " + e, e);
        }
        return record;
    }

    private SpecificDatumReader<T> readerFor(long fingerprint) {
        Schema writer = catalog.findByFingerprint(fingerprint);
        if (writer == null) {
            throw new InvalidRecordException(RejectReason.UNKNOWN_SCHEMA, String.format(
                    "no known schema has fingerprint %016x (expected %s)", fingerprint, readerSchema.getFullName()));
        }
        if (!writer.getFullName().equals(readerSchema.getFullName())) {
            throw new InvalidRecordException(RejectReason.WRONG_TYPE,
                    "record is a " + writer.getFullName() + ", expected " + readerSchema.getFullName());
        }
        return new SpecificDatumReader<>(writer, readerSchema);
    }

    public Class<T> type() {
        return type;
    }
}
