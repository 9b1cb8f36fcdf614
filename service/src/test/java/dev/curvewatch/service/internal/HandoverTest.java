package dev.curvewatch.service.internal;

import dev.curvewatch.avro.ServiceLayerState;
import dev.curvewatch.schemas.AvroSerializer;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.junit.jupiter.api.Test;

import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

class HandoverTest {
    private static ConsumerRecord<byte[], byte[]> record(ServiceLayerState s) {
        return new ConsumerRecord<>("service-state", 0, 0, (s.getRunId() + "/" + s.getLayer()).getBytes(StandardCharsets.UTF_8),
                new AvroSerializer<>(ServiceLayerState.class).serialize(null, s));
    }

    @Test
    void whatAnOwnerWritesIsWhatATakerRestores() {
        Handover owner = new Handover();
        LayerState l = new LayerState("run-1", "fc");
        PendingCandidate c = new PendingCandidate("c-7", "run-1", "fc", 40, 3, new double[] {0.6, 0.9}, new double[] {2.0, 0.5},
                new long[] {10, 30}, 64, 1234);
        owner.weightPart("run-1/fc", 0, 2, 40, false);
        owner.weightPart("run-1/fc", 1, 2, 41, true);
        l.restoreOutstanding(c);
        ServiceLayerState written = owner.toWrite(l, 5).orElseThrow();
        assertEquals(2, written.getWeightsPartition());
        assertEquals(40, written.getWeightsOffset(), "the offset of the weight's first part");
        assertTrue(owner.toWrite(l, 6).isEmpty(), "nothing changed: nothing written");

        Handover taker = new Handover();
        taker.onState(record(written));
        PendingCandidate back = taker.outstandingOf("run-1", "fc");
        assertEquals("c-7", back.id());
        assertEquals(3, back.factorVersion());
        assertArrayEquals(c.rhos(), back.rhos());
        assertArrayEquals(c.thresholds(), back.thresholds());
        assertArrayEquals(c.keptPairs(), back.keptPairs());
        assertEquals(1234, back.sentMs());
        assertNull(taker.outstandingOf("run-1", "other"));
    }

    @Test
    void aStartUpSeeksEachWeightsPartitionOnlyWhenEveryLayerThereHasARecord() {
        Handover h = new Handover();
        h.onState(record(state("a", 0, 100)));
        h.onState(record(state("b", 0, 70)));
        h.onState(record(state("c", 1, 50)));
        h.onState(record(state("e", 1, 9))); // e's key goes to partition 3, its record says 1: both read from the start
        Map<Integer, Long> seeks = h.weightSeeks(Map.of(0, List.of("a/fc", "b/fc"), 1, List.of("c/fc"), 2, List.of("d/fc"),
                3, List.of("e/fc"), 4, List.of()));
        assertEquals(70L, seeks.get(0), "the earliest latest weight there");
        assertEquals(-1L, seeks.get(1), "a layer's record names it but its key does not go there");
        assertEquals(-1L, seeks.get(2), "d has no record");
        assertEquals(-1L, seeks.get(3));
        assertEquals(-1L, seeks.get(4));
    }

    private static ServiceLayerState state(String run, int partition, long offset) {
        return ServiceLayerState.newBuilder().setRunId(run).setLayer("fc").setWeightsPartition(partition).setWeightsOffset(offset)
                .setCandidate(null).setUpdatedMs(1).build();
    }
}
