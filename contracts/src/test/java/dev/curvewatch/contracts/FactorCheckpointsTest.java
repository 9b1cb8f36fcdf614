package dev.curvewatch.contracts;

import dev.curvewatch.curvature.FactorAccumulator;
import dev.curvewatch.curvature.Precision;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.MockConsumer;
import org.apache.kafka.common.TopicPartition;
import org.junit.jupiter.api.Test;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

class FactorCheckpointsTest {
    private static final TopicPartition TP = new TopicPartition("t.factors", 0);

    private static FactorAccumulator filled(int dim, int captures) {
        FactorAccumulator acc = FactorAccumulator.cumulative(dim, Precision.FLOAT64);
        for (int i = 0; i < captures; i++) {
            acc.add(i, TestRows.of(7, "x", i, 5, dim), 5);
        }
        return acc;
    }

    private static void checkpoint(long version, FactorAccumulator a, FactorAccumulator g, List<ConsumerRecord<byte[], byte[]>> out) {
        new CheckpointCodec(1024).write(new CheckpointCodec.Provenance("r", "fc", version, 1, "w", "t"), a, g,
                (k, v) -> out.add(new ConsumerRecord<>(TP.topic(), TP.partition(), out.size(), k.getBytes(StandardCharsets.UTF_8), v)));
    }

    /** A worker commits version 2 while the scan runs: the poll returns part of it, past the end offset read at the start. */
    @Test
    void aCheckpointCommittedDuringTheScanIsNotHalfRead() {
        FactorAccumulator a1 = filled(20, 2);
        FactorAccumulator g1 = filled(9, 2);
        List<ConsumerRecord<byte[], byte[]>> records = new ArrayList<>();
        checkpoint(1, a1, g1, records);
        long end = records.size();
        List<ConsumerRecord<byte[], byte[]>> v2 = new ArrayList<>(records);
        checkpoint(2, filled(20, 5), filled(9, 5), v2);
        records.addAll(v2.subList((int) end, (int) end + (v2.size() - (int) end) / 2)); // v2's first chunks, not its manifest

        MockConsumer<byte[], byte[]> consumer = new MockConsumer<>("earliest");
        consumer.updateBeginningOffsets(Map.of(TP, 0L));
        consumer.updateEndOffsets(Map.of(TP, end));
        consumer.schedulePollTask(() -> records.forEach(consumer::addRecord));
        Map<String, FactorCheckpoint> got = FactorCheckpoints.scan(consumer, List.of(TP), k -> true, Duration.ofSeconds(5));
        FactorCheckpoint cp = got.get("r/fc");
        assertEquals(1, cp.version());
        assertArrayEquals(a1.sum(), cp.a().sum64());
        assertArrayEquals(g1.sum(), cp.g().sum64());
    }
}
