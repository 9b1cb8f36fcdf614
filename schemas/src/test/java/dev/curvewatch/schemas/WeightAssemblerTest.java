package dev.curvewatch.schemas;

import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.avro.WeightSnapshot;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.message.BinaryMessageEncoder;
import org.junit.jupiter.api.Test;

import java.io.InputStream;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Weight snapshots split by rows (WeightSnapshot v2): checks, reassembly, and v1 records. */
class WeightAssemblerTest {
    private static final LayerInfo LAYER = new LayerInfo("fc1", 3, 10, false, true); // d_in 3, d_out 10
    private final Random rnd = new Random(5);
    private final float[] w = SampleRecords.randomFloats(rnd, 30);
    private final float[] bias = SampleRecords.randomFloats(rnd, 10);

    /** Parts of the given row counts, bias in part 0. */
    private List<WeightSnapshot> split(long step, int... rows) {
        List<WeightSnapshot> parts = new ArrayList<>();
        int offset = 0;
        for (int k = 0; k < rows.length; k++) {
            float[] slice = java.util.Arrays.copyOfRange(w, offset * 3, (offset + rows[k]) * 3);
            parts.add(WeightSnapshot.newBuilder().setRunId("run-1").setLayer("fc1").setStep(step)
                    .setWeight(TensorCodec.ofFloats(slice, rows[k], 3))
                    .setBias(k == 0 ? TensorCodec.ofFloats(bias, 10) : null)
                    .setPart(k).setParts(rows.length).setRowOffset(offset).setTimestampMs(1L).build());
            offset += rows[k];
        }
        return parts;
    }

    @Test
    void partsReassembleToTheWholeWeight() {
        WeightAssembler assembler = new WeightAssembler();
        List<WeightSnapshot> parts = split(7, 4, 4, 2);
        assertTrue(assembler.accept(parts.get(0), LAYER).isEmpty());
        assertTrue(assembler.accept(parts.get(1), LAYER).isEmpty());
        WeightAssembler.Assembled a = assembler.accept(parts.get(2), LAYER).orElseThrow();
        assertEquals(7, a.step());
        assertArrayEquals(w, a.weight());
        assertArrayEquals(bias, a.bias());
        Optional<WeightAssembler.Assembled> whole = assembler.accept(split(8, 10).get(0), LAYER);
        assertArrayEquals(w, whole.orElseThrow().weight());
        assertEquals(0, assembler.discardedSteps());
    }

    @Test
    void aMissingPartDiscardsTheStepWithAReasonAndTheNextStepStillAssembles() {
        WeightAssembler assembler = new WeightAssembler();
        List<WeightSnapshot> parts = split(7, 4, 4, 2);
        assembler.accept(parts.get(0), LAYER);
        InvalidRecordException e = assertThrows(InvalidRecordException.class, () -> assembler.accept(parts.get(2), LAYER));
        assertEquals(RejectReason.INVALID_FIELD, e.reason());
        assertTrue(e.getMessage().contains("expecting part 1 of 3 of step 7"), e.getMessage());
        assertEquals(1, assembler.discardedSteps());
        // a stray later part with nothing in progress is rejected too
        assertThrows(InvalidRecordException.class, () -> assembler.accept(parts.get(1), LAYER));
        List<WeightSnapshot> next = split(9, 5, 5);
        assembler.accept(next.get(0), LAYER);
        assertArrayEquals(w, assembler.accept(next.get(1), LAYER).orElseThrow().weight());
    }

    @Test
    void malformedPartsAreRejected() {
        WeightSnapshot first = split(1, 4, 6).get(0);
        // a single part must hold every row
        WeightSnapshot shortWhole = WeightSnapshot.newBuilder(first).setParts(1).build();
        assertEquals(RejectReason.SHAPE_MISMATCH,
                assertThrows(InvalidRecordException.class, () -> ContractChecks.checkWeights(shortWhole, LAYER)).reason());
        WeightSnapshot pastEnd = WeightSnapshot.newBuilder(split(1, 4, 6).get(1)).setRowOffset(5).build();
        assertEquals(RejectReason.SHAPE_MISMATCH,
                assertThrows(InvalidRecordException.class, () -> ContractChecks.checkWeights(pastEnd, LAYER)).reason());
        WeightSnapshot biasLater = WeightSnapshot.newBuilder(split(1, 4, 6).get(1)).setBias(TensorCodec.ofFloats(bias, 10)).build();
        assertTrue(assertThrows(InvalidRecordException.class, () -> ContractChecks.checkWeights(biasLater, LAYER))
                .getMessage().contains("part 0 only"));
        WeightSnapshot badNumbering = WeightSnapshot.newBuilder(first).setPart(2).build();
        assertEquals(RejectReason.INVALID_FIELD,
                assertThrows(InvalidRecordException.class, () -> ContractChecks.checkWeights(badNumbering, LAYER)).reason());
        // parts whose rows do not add up to d_out never assemble
        WeightAssembler assembler = new WeightAssembler();
        List<WeightSnapshot> gap = split(2, 4, 4);
        assembler.accept(gap.get(0), LAYER);
        assertThrows(InvalidRecordException.class, () -> assembler.accept(gap.get(1), LAYER));
        assertEquals(1, assembler.discardedSteps());
    }

    @Test
    void rowsPerPartKeepsEveryPartUnderTheTopicLimit() {
        int limit = CurvewatchTopics.TENSOR_MAX_MESSAGE_BYTES;
        int rows = WeightAssembler.rowsPerPart(11008, 4096, limit);
        assertTrue(rows * 4096L * 4 + 11008L * 4 + 4096 <= limit, "rows " + rows);
        assertTrue((rows + 1) * 4096L * 4 + 11008L * 4 + 4096 > limit, "rows " + rows + " is not the most that fit");
        assertEquals(10, WeightAssembler.rowsPerPart(10, 3, limit));
        assertThrows(IllegalArgumentException.class, () -> WeightAssembler.rowsPerPart(1, 8 << 20, limit));
    }

    @Test
    void aVersion1RecordReadsAsOneWholePart() throws Exception {
        Schema v1;
        try (InputStream in = SchemaCatalog.class.getResourceAsStream("/curvewatch/avro/history/WeightSnapshot.v1.avsc")) {
            v1 = new Schema.Parser().parse(in);
        }
        assertNull(v1.getField("parts"));
        GenericRecord old = new GenericData.Record(v1);
        old.put("run_id", "run-1");
        old.put("layer", "fc1");
        old.put("step", 3L);
        GenericRecord tensor = new GenericData.Record(v1.getField("weight").schema());
        tensor.put("dtype", new GenericData.EnumSymbol(tensor.getSchema().getField("dtype").schema(), "FLOAT32"));
        tensor.put("shape", List.of(10, 3));
        tensor.put("data", TensorCodec.ofFloats(w, 10, 3).getData());
        old.put("weight", tensor);
        old.put("bias", null);
        old.put("timestamp_ms", 1L);
        byte[] bytes = new BinaryMessageEncoder<GenericRecord>(GenericData.get(), v1).encode(old).array();
        WeightSnapshot read = new AvroDeserializer<>(WeightSnapshot.class).decode(bytes);
        assertEquals(0, read.getPart());
        assertEquals(1, read.getParts());
        assertEquals(0, read.getRowOffset());
        assertArrayEquals(w, new WeightAssembler().accept(read, LAYER).orElseThrow().weight());
    }

    @Test
    void forgettingARunDropsItsStepsInProgressOnly() {
        WeightAssembler assembler = new WeightAssembler();
        List<WeightSnapshot> parts = split(7, 4, 6);
        assertTrue(assembler.accept(parts.get(0), LAYER).isEmpty());
        WeightSnapshot other = WeightSnapshot.newBuilder(parts.get(0)).setRunId("run-10").build();
        assertTrue(assembler.accept(other, LAYER).isEmpty());
        assertEquals(2, assembler.inProgress());
        assembler.forgetRun("run-1");
        assertEquals(1, assembler.inProgress(), "run-10 is not run-1");
        // the half-assembled step of run-1 is gone: its next part has nothing to continue
        assertThrows(InvalidRecordException.class, () -> assembler.accept(parts.get(1), LAYER));
        assertTrue(assembler.accept(WeightSnapshot.newBuilder(parts.get(1)).setRunId("run-10").build(), LAYER).isPresent());
    }
}
