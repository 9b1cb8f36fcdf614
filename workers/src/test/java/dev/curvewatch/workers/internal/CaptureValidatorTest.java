package dev.curvewatch.workers.internal;

import dev.curvewatch.avro.Capture;
import dev.curvewatch.avro.DType;
import dev.curvewatch.avro.FactorMode;
import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.avro.Tensor;
import dev.curvewatch.schemas.AvroSerializer;
import dev.curvewatch.schemas.InvalidRecordException;
import dev.curvewatch.schemas.RejectReason;
import dev.curvewatch.schemas.TensorCodec;
import dev.curvewatch.workers.TestCaptures;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class CaptureValidatorTest {
    static final int PARTITIONS = 4;
    static final LayerInfo L = TestCaptures.layer("fc1", 6, 4);
    static final RunInfo RUN = TestCaptures.run("r1", FactorMode.CUMULATIVE, 1.0, L);
    final CaptureValidator validator = new CaptureValidator(64 * 1024);

    static byte[] key(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    static int partition(String key) {
        return CaptureValidator.partitionForKey(key, PARTITIONS);
    }

    RejectReason reason(byte[] key, byte[] value) {
        return reason(key, value, partition(new String(key, StandardCharsets.UTF_8)));
    }

    RejectReason reason(byte[] key, byte[] value, int partition) {
        InvalidRecordException e = assertThrows(InvalidRecordException.class,
                () -> validator.check(key, value, partition, PARTITIONS, Map.of("r1", RUN)::get));
        return e.reason();
    }

    Capture good() {
        return TestCaptures.capture(1, "r1", L, 0, 3, 5);
    }

    @Test
    void acceptsAGoodCapture() {
        var ok = validator.check(key("r1/fc1"), TestCaptures.bytes(good()), partition("r1/fc1"), PARTITIONS, Map.of("r1", RUN)::get);
        assertEquals("r1/fc1", ok.key());
        assertEquals(6, ok.layer().getDIn());
    }

    @Test
    void everyBadClassHasItsReason() {
        byte[] good = TestCaptures.bytes(good());
        byte[] k = key("r1/fc1");
        assertEquals(RejectReason.OVERSIZED, reason(k, new byte[64 * 1024 + 1]));
        assertEquals(RejectReason.TRUNCATED, reason(k, Arrays.copyOf(good, good.length / 2)));
        assertEquals(RejectReason.TRUNCATED, reason(k, new byte[3]));
        byte[] header = good.clone();
        header[0] = 0x7b;
        assertEquals(RejectReason.BAD_HEADER, reason(k, header));
        byte[] fingerprint = good.clone();
        fingerprint[5] ^= 0x55;
        assertEquals(RejectReason.UNKNOWN_SCHEMA, reason(k, fingerprint));
        assertEquals(RejectReason.WRONG_TYPE, reason(k, TestCaptures.RUNS.serialize(null, RUN)));
        byte[] trailing = Arrays.copyOf(good, good.length + 3);
        assertEquals(RejectReason.TRAILING_BYTES, reason(k, trailing));
        byte[] malformed = good.clone();
        malformed[10] = 0x01; // run_id string length -1 (zig-zag)
        assertEquals(RejectReason.MALFORMED, reason(k, malformed));

        Capture shortData = good();
        shortData.setActivations(Tensor.newBuilder(shortData.getActivations())
                .setData(ByteBuffer.allocate(4 * 5)).build());
        assertEquals(RejectReason.TENSOR_LENGTH, reason(k, TestCaptures.bytes(shortData)));

        Capture dims = TestCaptures.capture(1, "r1", TestCaptures.layer("fc1", 5, 4), 0, 3, 5);
        assertEquals(RejectReason.SHAPE_MISMATCH, reason(k, TestCaptures.bytes(dims)));

        Capture tokens = good();
        tokens.setGradients(TensorCodec.ofFloats(new float[2 * 4], 2, 4));
        tokens.setSampleIds(List.of());
        assertEquals(RejectReason.SHAPE_MISMATCH, reason(k, TestCaptures.bytes(tokens)));

        Capture nan = good();
        float[] a = TensorCodec.toFloatArray(nan.getActivations(), "a");
        a[7] = Float.NaN;
        nan.setActivations(TensorCodec.ofFloats(a, 3, 6));
        assertEquals(RejectReason.NON_FINITE, reason(k, TestCaptures.bytes(nan)));

        Capture unknownRun = TestCaptures.capture(1, "nobody", L, 0, 3, 5);
        assertEquals(RejectReason.UNKNOWN_RUN, reason(key("nobody/fc1"), TestCaptures.bytes(unknownRun)));

        Capture unknownLayer = TestCaptures.capture(1, "r1", TestCaptures.layer("fc9", 6, 4), 0, 3, 5);
        assertEquals(RejectReason.UNKNOWN_LAYER, reason(key("r1/fc9"), TestCaptures.bytes(unknownLayer)));

        Capture negative = good();
        negative.setStep(-1);
        assertEquals(RejectReason.INVALID_FIELD, reason(k, TestCaptures.bytes(negative)));

        assertEquals(RejectReason.KEY_MISMATCH, reason(key("r1/fc2"), good));
        int wrong = (partition("r1/fc1") + 1) % PARTITIONS;
        assertEquals(RejectReason.KEY_MISMATCH, reason(k, good, wrong));
        assertEquals(RejectReason.TRUNCATED, reason(k, null));
    }

    @Test
    void float64TensorsAreRefused() {
        Capture c = good();
        double[] d = new double[3 * 6];
        c.setActivations(TensorCodec.ofDoubles(d, 3, 6));
        assertEquals(RejectReason.SHAPE_MISMATCH, reason(key("r1/fc1"), TestCaptures.bytes(c)));
        assertTrue(c.getActivations().getDtype() == DType.FLOAT64);
        assertTrue(ByteOrder.nativeOrder() != null);
    }

    @Test
    void partitionMatchesTheJavaProducer() {
        // Kafka's BuiltInPartitioner.partitionForKey: toPositive(murmur2(key)) % n
        byte[] k = key("run-7/model.layers.3.mlp.up_proj");
        assertEquals(org.apache.kafka.common.utils.Utils.toPositive(org.apache.kafka.common.utils.Utils.murmur2(k)) % 12,
                CaptureValidator.partitionForKey(k, 12));
        // and the producer's own partitioner on many keys and partition counts (integration-tests' PartitioningGoldenTest
        // holds that one to the golden partitions the Python client is checked against)
        for (int i = 0; i < 500; i++) {
            byte[] any = key("run-" + i + "/blocks." + (i % 7) + ".mlp.fc");
            for (int n : new int[] {1, 4, 12, 20}) {
                assertEquals(org.apache.kafka.clients.producer.internals.BuiltInPartitioner.partitionForKey(any, n),
                        CaptureValidator.partitionForKey(any, n));
            }
        }
        new AvroSerializer<>(Capture.class);
    }
}
