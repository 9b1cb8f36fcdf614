package dev.curvewatch.schemas;

import dev.curvewatch.avro.Capture;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.avro.Tensor;
import org.apache.avro.Schema;
import org.apache.avro.SchemaBuilder;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumWriter;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.EncoderFactory;
import org.apache.avro.specific.SpecificRecord;
import org.junit.jupiter.api.Test;

import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class AvroSerdeTest {

    @SuppressWarnings({"unchecked", "rawtypes"})
    @Test
    void everyRecordTypeRoundTrips() {
        List<SpecificRecord> records = SampleRecords.oneOfEach(new Random(1));
        assertEquals(RecordTypes.ALL.size(), records.size(), "one sample per record type");
        for (SpecificRecord record : records) {
            Class type = record.getClass();
            byte[] bytes = new AvroSerializer(type).serialize("t", record);
            assertEquals((byte) 0xC3, bytes[0]);
            assertEquals(0x01, bytes[1]);
            Object back = new AvroDeserializer(type).deserialize("t", bytes);
            assertEquals(record, back, type.getSimpleName() + " changed in a round trip");
        }
    }

    @Test
    void headerCarriesTheSchemaFingerprintLittleEndian() {
        Capture c = SampleRecords.capture(new Random(2), "r", "l", 1, 2, 3, 4);
        byte[] bytes = new AvroSerializer<>(Capture.class).serialize("t", c);
        long fp = SchemaCatalog.fingerprint(Capture.getClassSchema());
        for (int i = 0; i < 8; i++) {
            assertEquals((byte) (fp >>> (8 * i)), bytes[2 + i], "fingerprint byte " + i);
        }
    }

    @Test
    void truncatedBytesAreTypedErrors() {
        byte[] bytes = new AvroSerializer<>(Capture.class).serialize("t", SampleRecords.capture(new Random(3), "r", "l", 1, 8, 4, 4));
        AvroDeserializer<Capture> de = new AvroDeserializer<>(Capture.class);
        for (int cut : new int[]{0, 5, 10, 11, 40, bytes.length / 2, bytes.length - 1}) {
            InvalidRecordException e = assertThrows(InvalidRecordException.class, () -> de.decode(Arrays.copyOf(bytes, cut)), "cut at " + cut);
            assertTrue(e.reason() == RejectReason.TRUNCATED || e.reason() == RejectReason.MALFORMED,
                    "cut at " + cut + " gave " + e.reason() + ": " + e.getMessage());
            assertNotNull(e.getMessage());
        }
        assertEquals(RejectReason.TRUNCATED, assertThrows(InvalidRecordException.class,
                () -> de.decode(Arrays.copyOf(bytes, bytes.length - 1))).reason());
    }

    @Test
    void garbageAndForeignBytesAreTypedErrors() {
        AvroDeserializer<Capture> de = new AvroDeserializer<>(Capture.class);
        InvalidRecordException badHeader = assertThrows(InvalidRecordException.class,
                () -> de.decode("{\"json\": true, \"not\": \"avro\"}".getBytes()));
        assertEquals(RejectReason.BAD_HEADER, badHeader.reason());
        assertTrue(badHeader.getMessage().contains("C3 01"), badHeader.getMessage());

        byte[] unknown = new byte[40];
        unknown[0] = (byte) 0xC3;
        unknown[1] = 0x01;
        Arrays.fill(unknown, 2, 10, (byte) 0x5A);
        InvalidRecordException e = assertThrows(InvalidRecordException.class, () -> de.decode(unknown));
        assertEquals(RejectReason.UNKNOWN_SCHEMA, e.reason());
        assertTrue(e.getMessage().contains("5a5a5a5a5a5a5a5a"), e.getMessage());

        // valid header, random body: must never decode silently
        Random rnd = new Random(4);
        byte[] header = SingleObjectHeader.of(SchemaCatalog.fingerprint(Capture.getClassSchema()));
        for (int trial = 0; trial < 200; trial++) {
            byte[] body = new byte[10 + rnd.nextInt(200)];
            rnd.nextBytes(body);
            byte[] garbage = new byte[header.length + body.length];
            System.arraycopy(header, 0, garbage, 0, header.length);
            System.arraycopy(body, 0, garbage, header.length, body.length);
            assertThrows(InvalidRecordException.class, () -> de.decode(garbage), "random body " + trial);
        }
    }

    @Test
    void wrongRecordTypeIsReported() {
        byte[] runInfo = new AvroSerializer<>(RunInfo.class).serialize("t", (RunInfo) SampleRecords.oneOfEach(new Random(5)).get(0));
        InvalidRecordException e = assertThrows(InvalidRecordException.class,
                () -> new AvroDeserializer<>(Capture.class).decode(runInfo));
        assertEquals(RejectReason.WRONG_TYPE, e.reason());
        assertTrue(e.getMessage().contains("RunInfo"), e.getMessage());
    }

    @Test
    void trailingBytesAreRejected() {
        byte[] bytes = new AvroSerializer<>(Capture.class).serialize("t", SampleRecords.capture(new Random(6), "r", "l", 1, 2, 2, 2));
        byte[] longer = Arrays.copyOf(bytes, bytes.length + 3);
        assertEquals(RejectReason.TRAILING_BYTES,
                assertThrows(InvalidRecordException.class, () -> new AvroDeserializer<>(Capture.class).decode(longer)).reason());
    }

    /** A newer writer adds an optional field; an old reader, handed the new schema, still reads. */
    @Test
    void oldReaderReadsRecordWithNewOptionalField() throws Exception {
        Schema current = RunInfo.getClassSchema();
        Schema newer = withExtraOptionalField(current, "tokenizer", "unknown");
        RunInfo original = (RunInfo) SampleRecords.oneOfEach(new Random(7)).get(0);

        GenericRecord rec = new GenericData.Record(newer);
        for (Schema.Field f : current.getFields()) {
            rec.put(f.name(), GenericData.get().deepCopy(f.schema(), original.get(f.pos())));
        }
        rec.put("tokenizer", "bpe-32k");
        byte[] bytes = encodeGeneric(newer, rec);

        SchemaCatalog catalog = SchemaCatalog.withBuiltins();
        AvroDeserializer<RunInfo> oldReader = new AvroDeserializer<>(RunInfo.class, catalog);
        assertEquals(RejectReason.UNKNOWN_SCHEMA, assertThrows(InvalidRecordException.class, () -> oldReader.decode(bytes)).reason(),
                "without the new schema the reader must say so, not guess");
        catalog.register(newer);
        assertEquals(original, new AvroDeserializer<>(RunInfo.class, catalog).decode(bytes));
    }

    /**
     * GuardDecision evolves by its enum default: a newer writer with an action this reader does not
     * know (and a new optional field) reads as OTHER, everything else intact.
     */
    @Test
    void aGuardActionFromANewerWriterReadsAsOther() throws Exception {
        String json = dev.curvewatch.avro.GuardDecision.getClassSchema().toString()
                .replace("\"ROLLBACK_OFFERED\",", "\"ROLLBACK_OFFERED\",\"PAUSED\",");
        Schema newer = withExtraOptionalField(new Schema.Parser().parse(json), "operator", "nobody");
        assertTrue(newer.getField("action").schema().getEnumSymbols().contains("PAUSED"));
        GenericRecord rec = new GenericData.Record(newer);
        rec.put("id", "g9");
        rec.put("run_id", "run-1");
        rec.put("layer", "fc1");
        rec.put("step", 12L);
        rec.put("action", new GenericData.EnumSymbol(newer.getField("action").schema(), "PAUSED"));
        rec.put("reason", "a person paused the guard");
        rec.put("source", "streams:x");
        rec.put("rule", null);
        rec.put("alert_fingerprint", null);
        rec.put("idempotency_key", null);
        rec.put("snapshot_id", null);
        rec.put("layers", new GenericData.Array<>(newer.getField("layers").schema(), List.of()));
        rec.put("details", Map.of());
        rec.put("created_ms", 5L);
        rec.put("operator", "alice");
        byte[] bytes = encodeGeneric(newer, rec);
        SchemaCatalog catalog = SchemaCatalog.withBuiltins();
        catalog.register(newer);
        dev.curvewatch.avro.GuardDecision d = new AvroDeserializer<>(dev.curvewatch.avro.GuardDecision.class, catalog).decode(bytes);
        assertEquals(dev.curvewatch.avro.GuardAction.OTHER, d.getAction());
        assertEquals("a person paused the guard", d.getReason());
        assertEquals(12L, d.getStep());
        assertEquals("fc1", d.getLayer());
    }

    /** Every shipped historical schema stays readable by the current classes, and the current one is shipped. */
    @Test
    void historyCoversCurrentSchemasAndStaysReadable() {
        SchemaCatalog catalog = SchemaCatalog.withBuiltins();
        for (var type : RecordTypes.ALL) {
            Schema schema = RecordTypes.schemaOf(type);
            Schema fromHistory = SchemaCatalog.withBuiltins().findByFingerprint(SchemaCatalog.fingerprint(schema));
            assertNotNull(fromHistory, type.getSimpleName());
        }
        assertNotNull(catalog);
    }

    /** Kafka calls one producer's serializer from every sending thread (the service sends from several). */
    @Test
    void oneSerializerIsSafeToShareBetweenThreads() throws Exception {
        AvroSerializer<Capture> shared = new AvroSerializer<>(Capture.class);
        AvroDeserializer<Capture> de = new AvroDeserializer<>(Capture.class);
        int threads = 4;
        java.util.concurrent.ExecutorService pool = java.util.concurrent.Executors.newFixedThreadPool(threads);
        try {
            List<java.util.concurrent.Future<Integer>> wrong = new java.util.ArrayList<>();
            for (int t = 0; t < threads; t++) {
                // records of different sizes per thread, so the size hint moves under every writer
                Capture c = SampleRecords.capture(new Random(t), "run-" + t, "fc", t, 8 + 40 * t, 16, 8);
                wrong.add(pool.submit(() -> {
                    int bad = 0;
                    for (int i = 0; i < 400; i++) {
                        bad += c.equals(de.decode(shared.serialize("t", c))) ? 0 : 1;
                    }
                    return bad;
                }));
            }
            for (java.util.concurrent.Future<Integer> f : wrong) {
                assertEquals(0, f.get(), "records corrupted by a concurrent serialize");
            }
        } finally {
            pool.shutdownNow();
        }
    }

    @Test
    void tensorLengthMismatchIsDetected() {
        Tensor ok = TensorCodec.ofFloats(new float[6], 2, 3);
        TensorCodec.requireConsistent(ok, "x");
        Tensor bad = Tensor.newBuilder(ok).setShape(List.of(3, 3)).build();
        InvalidRecordException e = assertThrows(InvalidRecordException.class, () -> TensorCodec.requireConsistent(bad, "activations"));
        assertEquals(RejectReason.TENSOR_LENGTH, e.reason());
        assertTrue(e.getMessage().contains("activations") && e.getMessage().contains("36") && e.getMessage().contains("24"), e.getMessage());
    }

    @Test
    void tensorCodecRoundTripsLittleEndian() {
        float[] values = {1.5f, -2f, 3.25f, Float.MIN_VALUE};
        Tensor t = TensorCodec.ofFloats(values, 2, 2);
        assertArrayEquals(values, TensorCodec.toFloatArray(t, "t"));
        ByteBuffer raw = t.getData().duplicate();
        assertEquals(0, raw.get(0)); // 1.5f = 0x3FC00000, little-endian first byte 00
        assertEquals((byte) 0xC0, raw.get(2));
        assertEquals((byte) 0x3F, raw.get(3));
        assertArrayEquals(new double[]{1.5, -2, 3.25, Float.MIN_VALUE}, TensorCodec.toDoubleArray(t, "t"));
    }

    private static Schema withExtraOptionalField(Schema schema, String name, String dflt) {
        List<Schema.Field> fields = new java.util.ArrayList<>();
        for (Schema.Field f : schema.getFields()) {
            fields.add(new Schema.Field(f, f.schema()));
        }
        fields.add(new Schema.Field(name, SchemaBuilder.builder().stringType(), "added later", dflt));
        return Schema.createRecord(schema.getName(), schema.getDoc(), schema.getNamespace(), false, fields);
    }

    private static byte[] encodeGeneric(Schema schema, GenericRecord rec) throws Exception {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        out.writeBytes(SingleObjectHeader.of(SchemaCatalog.fingerprint(schema)));
        BinaryEncoder enc = EncoderFactory.get().binaryEncoder(out, null);
        new GenericDatumWriter<GenericRecord>(schema).write(rec, enc);
        enc.flush();
        return out.toByteArray();
    }
}
