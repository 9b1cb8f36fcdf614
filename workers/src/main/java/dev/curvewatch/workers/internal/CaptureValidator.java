package dev.curvewatch.workers.internal;

import dev.curvewatch.avro.Capture;
import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.schemas.AvroDeserializer;
import dev.curvewatch.schemas.ContractChecks;
import dev.curvewatch.schemas.CurvewatchTopics;
import dev.curvewatch.schemas.InvalidRecordException;
import dev.curvewatch.schemas.RejectReason;
import org.apache.kafka.common.utils.Utils;

import java.nio.charset.StandardCharsets;
import java.util.function.Function;

/**
 * Every check a capture passes before it may touch a factor, in order of cost: size, decoding,
 * structure, key against value, partition against key, run and layer registered, shapes against
 * the registry, finite values. A failure is an {@link InvalidRecordException} whose reason is the
 * dead letter's reason code.
 */
public final class CaptureValidator {
    /** A capture that passed every check, with the registry entries it was checked against. */
    public record Accepted(Capture capture, RunInfo run, LayerInfo layer, String key) {
    }

    private final AvroDeserializer<Capture> decoder = new AvroDeserializer<>(Capture.class);
    private final int maxRecordBytes;

    public CaptureValidator(int maxRecordBytes) {
        this.maxRecordBytes = maxRecordBytes;
    }

    /**
     * @param runs            registry lookup by run id (null when unknown)
     * @param partitions      partition count of the captures topic (to check the key's partition)
     */
    public Accepted check(byte[] key, byte[] value, int partition, int partitions, Function<String, RunInfo> runs) {
        if (value == null) {
            throw new InvalidRecordException(RejectReason.TRUNCATED, "record has no value (null)");
        }
        if (value.length > maxRecordBytes) {
            throw new InvalidRecordException(RejectReason.OVERSIZED,
                    "value has " + value.length + " bytes, the limit (max.record.bytes) is " + maxRecordBytes);
        }
        Capture c = decoder.decode(value);
        ContractChecks.checkStructure(c);
        String expectedKey = CurvewatchTopics.runLayerKey(c.getRunId(), c.getLayer());
        String actualKey = key == null ? null : new String(key, StandardCharsets.UTF_8);
        if (!expectedKey.equals(actualKey)) {
            throw new InvalidRecordException(RejectReason.KEY_MISMATCH,
                    "key '" + abbreviate(actualKey) + "' does not match the capture's run/layer '" + expectedKey + "'");
        }
        int expectedPartition = partitionForKey(key, partitions);
        if (partition != expectedPartition) {
            // one layer must live in one partition, or two workers would each own half of it
            throw new InvalidRecordException(RejectReason.KEY_MISMATCH, "key '" + expectedKey + "' belongs to partition "
                    + expectedPartition + " of " + partitions + " (default partitioner), found in partition " + partition);
        }
        RunInfo run = runs.apply(c.getRunId());
        if (run == null) {
            throw new InvalidRecordException(RejectReason.UNKNOWN_RUN,
                    "run '" + c.getRunId() + "' is not registered on the runs topic");
        }
        LayerInfo layer = null;
        for (LayerInfo l : run.getLayers()) {
            if (l.getName().equals(c.getLayer())) {
                layer = l;
                break;
            }
        }
        if (layer == null) {
            throw new InvalidRecordException(RejectReason.UNKNOWN_LAYER,
                    "layer '" + c.getLayer() + "' is not a watched layer of run '" + c.getRunId() + "'");
        }
        ContractChecks.checkAgainstLayer(c, layer);
        ContractChecks.requireFinite(c);
        return new Accepted(c, run, layer, expectedKey);
    }

    /** The Java producer's default partition for a key: murmur2 of its bytes. */
    public static int partitionForKey(byte[] key, int partitions) {
        return Utils.toPositive(Utils.murmur2(key)) % partitions;
    }

    public static int partitionForKey(String key, int partitions) {
        return partitionForKey(key.getBytes(StandardCharsets.UTF_8), partitions);
    }

    private static String abbreviate(String s) {
        if (s == null) {
            return "null";
        }
        return s.length() > 60 ? s.substring(0, 60) + "..." : s;
    }
}
