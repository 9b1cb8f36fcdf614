package dev.curvewatch.schemas;

import dev.curvewatch.avro.EditCandidate;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.message.BinaryMessageEncoder;
import org.junit.jupiter.api.Test;

import java.io.InputStream;
import java.nio.ByteBuffer;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** EditCandidates split by rows (EditCandidate v2): split, reassembly through the serde, refusals, v1 records. */
class EditCandidatePartsTest {
    private static final int D_OUT = 24;
    private static final int D_IN = 10;
    private final Random rnd = new Random(3);
    private final float[] ug = SampleRecords.randomFloats(rnd, D_OUT * D_OUT);
    private final float[] ua = SampleRecords.randomFloats(rnd, D_IN * D_IN);
    private final AvroSerializer<EditCandidate> serializer = new AvroSerializer<>(EditCandidate.class);
    private final AvroDeserializer<EditCandidate> deserializer = new AvroDeserializer<>(EditCandidate.class);

    private EditCandidate whole(String id) {
        return EditCandidate.newBuilder().setCandidateId(id).setRunId("run-1").setLayer("fc1").setStep(7).setFactorVersion(3)
                .setBasisG(TensorCodec.ofFloats(ug, D_OUT, D_OUT)).setBasisA(TensorCodec.ofFloats(ua, D_IN, D_IN))
                .setEigenvaluesG(TensorCodec.ofFloats(SampleRecords.randomFloats(rnd, D_OUT), D_OUT))
                .setEigenvaluesA(TensorCodec.ofFloats(SampleRecords.randomFloats(rnd, D_IN), D_IN))
                .setRhos(List.of(0.6, 0.9)).setThresholds(List.of(0.1, 0.01)).setCreatedMs(4L).build();
    }

    /** Split small enough for several parts, each part through the serde as Kafka would carry it. */
    private List<EditCandidate> wire(EditCandidate c, int maxPartBytes) {
        return EditCandidateParts.split(c, maxPartBytes).stream()
                .map(p -> {
                    byte[] bytes = serializer.serialize("t", p);
                    assertTrue(bytes.length <= maxPartBytes, "part of " + bytes.length + " bytes > " + maxPartBytes);
                    return deserializer.decode(bytes);
                }).toList();
    }

    @Test
    void partsStayUnderTheLimitAndReassembleToTheWholeCandidate() {
        EditCandidate c = whole("c1");
        int limit = EditCandidateParts.OVERHEAD_BYTES + 4 * (D_OUT + D_IN) + 600; // ~6 rows of U_G per part
        List<EditCandidate> parts = wire(c, limit);
        assertTrue(parts.size() >= 4, parts.size() + " parts");
        assertEquals(List.of(0.6, 0.9), parts.get(0).getRhos());
        assertTrue(parts.get(1).getRhos().isEmpty() && parts.get(1).getEigenvaluesG().getShape().equals(List.of(0)));
        EditCandidateParts.Assembler assembler = new EditCandidateParts.Assembler();
        for (int k = 0; k < parts.size() - 1; k++) {
            assertTrue(assembler.accept(parts.get(k), D_OUT, D_IN).isEmpty(), "complete after part " + k);
        }
        EditCandidate back = assembler.accept(parts.get(parts.size() - 1), D_OUT, D_IN).orElseThrow();
        assertEquals(1, back.getParts());
        assertArrayEquals(ug, TensorCodec.toFloatArray(back.getBasisG(), "g"));
        assertArrayEquals(ua, TensorCodec.toFloatArray(back.getBasisA(), "a"));
        assertEquals(c.getEigenvaluesG(), back.getEigenvaluesG());
        assertEquals(c.getThresholds(), back.getThresholds());
        // and the reassembled candidate is the original, field for field
        assertEquals(c, back);
        assertEquals(0, assembler.inProgress());
        assertEquals(0, assembler.discarded());
    }

    @Test
    void aCandidateThatFitsIsOnePartAndPassesStraightThrough() {
        EditCandidate c = whole("c1");
        List<EditCandidate> parts = EditCandidateParts.split(c, CurvewatchTopics.TENSOR_MAX_MESSAGE_BYTES);
        assertEquals(1, parts.size());
        assertSame(c, parts.get(0));
        assertSame(c, new EditCandidateParts.Assembler().accept(c, D_OUT, D_IN).orElseThrow());
        assertThrows(IllegalArgumentException.class, () -> EditCandidateParts.split(c, 4096), "not even one row fits");
    }

    @Test
    void lostForeignAndMisplacedPartsAreRefusedWithAReasonAndTheNextCandidateAssembles() {
        int limit = EditCandidateParts.OVERHEAD_BYTES + 4 * (D_OUT + D_IN) + 600;
        List<EditCandidate> first = wire(whole("c1"), limit);
        List<EditCandidate> second = wire(whole("c2"), limit);
        EditCandidateParts.Assembler assembler = new EditCandidateParts.Assembler();
        assembler.accept(first.get(0), D_OUT, D_IN);
        InvalidRecordException lost = assertThrows(InvalidRecordException.class, () -> assembler.accept(first.get(2), D_OUT, D_IN));
        assertTrue(lost.getMessage().contains("expecting part 1 of " + first.size() + " of candidate c1"), lost.getMessage());
        assertEquals(1, assembler.discarded());
        assertThrows(InvalidRecordException.class, () -> assembler.accept(first.get(1), D_OUT, D_IN), "nothing in progress");
        // a part of another candidate in the middle of one
        assembler.accept(second.get(0), D_OUT, D_IN);
        assertThrows(InvalidRecordException.class, () -> assembler.accept(first.get(1), D_OUT, D_IN));
        // a shifted offset
        assembler.accept(second.get(0), D_OUT, D_IN);
        EditCandidate shifted = EditCandidate.newBuilder(second.get(1)).setGRowOffset(second.get(1).getGRowOffset() + 1).build();
        InvalidRecordException e = assertThrows(InvalidRecordException.class, () -> assembler.accept(shifted, D_OUT, D_IN));
        assertEquals(RejectReason.SHAPE_MISMATCH, e.reason());
        assertTrue(e.getMessage().contains("starts at row"), e.getMessage());
        // spectra repeated in a later part
        assembler.accept(second.get(0), D_OUT, D_IN);
        EditCandidate repeated = EditCandidate.newBuilder(second.get(1)).setRhos(List.of(0.5)).setThresholds(List.of(0.2)).build();
        assertTrue(assertThrows(InvalidRecordException.class, () -> assembler.accept(repeated, D_OUT, D_IN)).getMessage()
                .contains("only part 0"));
        // rows that do not add up to the layer's sides: the last part one row of U_A short
        EditCandidate last = second.get(second.size() - 1);
        int aRows = last.getBasisA().getShape().get(0);
        assertTrue(aRows >= 1, "the last part holds rows of U_A");
        ByteBuffer fewer = last.getBasisA().getData().duplicate().limit(4 * D_IN * (aRows - 1)).slice();
        EditCandidate shortLast = EditCandidate.newBuilder(last)
                .setBasisA(TensorCodec.ofBytes(last.getBasisA().getDtype(), fewer, aRows - 1, D_IN)).build();
        EditCandidateParts.Assembler gap = new EditCandidateParts.Assembler();
        for (int k = 0; k < second.size() - 1; k++) {
            gap.accept(second.get(k), D_OUT, D_IN);
        }
        InvalidRecordException shortBy = assertThrows(InvalidRecordException.class, () -> gap.accept(shortLast, D_OUT, D_IN));
        assertEquals(RejectReason.SHAPE_MISMATCH, shortBy.reason());
        assertTrue(shortBy.getMessage().contains((D_IN - 1) + " of U_A"), shortBy.getMessage());
        // bad numbering
        EditCandidate numbering = EditCandidate.newBuilder(second.get(0)).setPart(second.size()).build();
        assertEquals(RejectReason.INVALID_FIELD, assertThrows(InvalidRecordException.class,
                () -> assembler.accept(numbering, D_OUT, D_IN)).reason());
        // after all that, a clean candidate still assembles
        EditCandidateParts.Assembler clean = new EditCandidateParts.Assembler();
        EditCandidate done = null;
        for (EditCandidate p : second) {
            done = clean.accept(p, D_OUT, D_IN).orElse(done);
        }
        assertArrayEquals(ug, TensorCodec.toFloatArray(done.getBasisG(), "g"));
    }

    @Test
    void aNewPartZeroReplacesAnUnfinishedCandidateOfItsLayerAndForgetRunDropsIt() {
        int limit = EditCandidateParts.OVERHEAD_BYTES + 4 * (D_OUT + D_IN) + 600;
        List<EditCandidate> first = wire(whole("c1"), limit);
        List<EditCandidate> second = wire(whole("c2"), limit);
        EditCandidateParts.Assembler assembler = new EditCandidateParts.Assembler();
        assembler.accept(first.get(0), D_OUT, D_IN);
        assembler.accept(first.get(1), D_OUT, D_IN);
        EditCandidate done = null;
        for (EditCandidate p : second) {
            done = assembler.accept(p, D_OUT, D_IN).orElse(done);
        }
        assertEquals("c2", done.getCandidateId());
        assertEquals(1, assembler.discarded());
        assembler.accept(first.get(0), D_OUT, D_IN);
        assertEquals(1, assembler.inProgress());
        assembler.forgetRun("run-1");
        assertEquals(0, assembler.inProgress());
    }

    @Test
    void aVersion1RecordReadsAsOneWholePart() throws Exception {
        EditCandidate c = whole("c1");
        EditCandidate read = deserializer.decode(encodedWith("EditCandidate.v1.avsc", c));
        assertEquals(0, read.getPart());
        assertEquals(1, read.getParts());
        assertEquals(c, read);
    }

    /** A v3 record (square bases, no names) reads as a v4 candidate that sends both whole bases. */
    @Test
    void aVersion3RecordReadsWithBothBasesSent() throws Exception {
        EditCandidate c = EditCandidate.newBuilder(whole("c3")).setSearch(dev.curvewatch.avro.CalibrationSearch.BISECT)
                .setTrainCandidates(List.of(1)).setPeakTokens(8).build();
        EditCandidate read = deserializer.decode(encodedWith("EditCandidate.v3.avsc", c));
        assertEquals(c, read);
        assertEquals(null, read.getBasisGOf());
        assertEquals(null, read.getBasisAOf());
        assertTrue(read.getBasisGOrder().isEmpty() && read.getBasisAOrder().isEmpty());
        assertEquals(List.of(D_OUT, D_OUT), read.getBasisG().getShape());
    }

    /**
     * v4: U_G sent as its leading 5 columns, U_A named (an earlier candidate's, reordered), split
     * into row parts and reassembled to the same candidate; a part of another width is refused.
     */
    @Test
    void leadingColumnsAndNamedBasesSplitAndReassemble() {
        int k = 5;
        float[] lead = new float[D_OUT * k];
        for (int r = 0; r < D_OUT; r++) {
            System.arraycopy(ug, r * D_OUT, lead, r * k, k);
        }
        EditCandidate c = EditCandidate.newBuilder(whole("c4")).setBasisG(TensorCodec.ofFloats(lead, D_OUT, k))
                .setBasisA(TensorCodec.ofFloats(new float[0], 0, 4)).setBasisAOf("c2").setBasisAOrder(List.of(3, 1, 0, 2)).build();
        int limit = EditCandidateParts.OVERHEAD_BYTES + 4 * (D_OUT + D_IN) + 260; // a few rows of 5 columns per part
        List<EditCandidate> parts = wire(c, limit);
        assertTrue(parts.size() >= 3, parts.size() + " parts");
        assertTrue(parts.get(1).getBasisAOrder().isEmpty(), "orders ride with part 0 only");
        EditCandidateParts.Assembler assembler = new EditCandidateParts.Assembler();
        EditCandidate back = null;
        for (EditCandidate part : parts) {
            back = assembler.accept(part, D_OUT, D_IN).orElse(null);
        }
        assertEquals(c, back);
        assertEquals(List.of(D_OUT, k), back.getBasisG().getShape());
        assertEquals(List.of(0, 4), back.getBasisA().getShape());

        List<EditCandidate> again = wire(c, limit);
        assertTrue(assembler.accept(again.get(0), D_OUT, D_IN).isEmpty());
        EditCandidate wide = EditCandidate.newBuilder(again.get(1)).setBasisG(TensorCodec.ofFloats(new float[5 * 6], 5, 6)).build();
        InvalidRecordException e = assertThrows(InvalidRecordException.class, () -> assembler.accept(wide, D_OUT, D_IN));
        assertTrue(e.getMessage().contains("expected rows x 5"), e.getMessage());
        EditCandidate tooWide = EditCandidate.newBuilder(again.get(0)).setBasisG(TensorCodec.ofFloats(new float[0], 0, D_OUT + 1)).build();
        e = assertThrows(InvalidRecordException.class, () -> assembler.accept(tooWide, D_OUT, D_IN));
        assertTrue(e.getMessage().contains("k <= the layer's 24"), e.getMessage());
    }

    /** {@code c} written with a historical schema, as an old writer would. */
    private static byte[] encodedWith(String historyFile, EditCandidate c) throws Exception {
        Schema old;
        try (InputStream in = SchemaCatalog.class.getResourceAsStream("/curvewatch/avro/history/" + historyFile)) {
            old = new Schema.Parser().parse(in);
        }
        GenericRecord rec = new GenericData.Record(old);
        for (Schema.Field f : old.getFields()) {
            Object value = c.get(f.name());
            if (value instanceof dev.curvewatch.avro.Tensor t) {
                GenericRecord tensor = new GenericData.Record(f.schema());
                tensor.put("dtype", new GenericData.EnumSymbol(f.schema().getField("dtype").schema(), t.getDtype().name()));
                tensor.put("shape", t.getShape());
                tensor.put("data", t.getData().duplicate());
                value = tensor;
            } else if (value instanceof Enum<?> e) {
                value = new GenericData.EnumSymbol(f.schema(), e.name());
            }
            rec.put(f.name(), value);
        }
        return new BinaryMessageEncoder<GenericRecord>(GenericData.get(), old).encode(rec).array();
    }
}
