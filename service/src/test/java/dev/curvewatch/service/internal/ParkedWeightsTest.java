package dev.curvewatch.service.internal;

import dev.curvewatch.schemas.RejectReason;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.junit.jupiter.api.Test;

import java.nio.charset.StandardCharsets;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ParkedWeightsTest {
    static ConsumerRecord<byte[], byte[]> record(String run, long offset, int valueBytes) {
        return new ConsumerRecord<>("w", 0, offset, (run + "/fc").getBytes(StandardCharsets.UTF_8), new byte[valueBytes]);
    }

    @Test
    void aGlobalByteBudgetBoundsEveryUnknownRunTogether() {
        // 1000 bytes for all unregistered runs: the old bound was 64 records per run id, for any number of run ids
        ParkedWeights p = new ParkedWeights(64, 1000);
        for (int i = 0; i < 4; i++) {
            assertTrue(p.park("ghost-" + i, record("ghost-" + i, i, 190), 0).isEmpty(), "record " + i + " fits");
        }
        assertEquals(800, p.bytes());
        ConsumerRecord<byte[], byte[]> over = record("ghost-9", 9, 300);
        List<ParkedWeights.Refused> refused = p.park("ghost-9", over, 0);
        assertEquals(1, refused.size());
        assertSame(over, refused.get(0).record(), "the record that does not fit is refused at once");
        assertEquals(RejectReason.UNKNOWN_RUN, refused.get(0).why().reason());
        assertTrue(refused.get(0).why().getMessage().contains("weights.parked.max.bytes=1000"), refused.get(0).why().getMessage());
        assertEquals(800, p.bytes());
        assertEquals(4, p.runs());
        // registration releases a run's records and their bytes
        assertEquals(1, p.release("ghost-1").size());
        assertEquals(600, p.bytes());
        assertTrue(p.park("ghost-9", over, 0).isEmpty(), "room again");
        assertEquals(910, p.bytes());
    }

    @Test
    void perRunCountAndExpiry() {
        ParkedWeights p = new ParkedWeights(2, 1 << 20);
        assertTrue(p.park("r", record("r", 0, 10), 0).isEmpty());
        assertTrue(p.park("r", record("r", 1, 10), 5).isEmpty());
        List<ParkedWeights.Refused> dropped = p.park("r", record("r", 2, 10), 6);
        assertEquals(1, dropped.size());
        assertEquals(0, dropped.get(0).record().offset(), "the oldest of the run goes");
        assertEquals(2 * 14, p.bytes());
        List<ParkedWeights.Refused> expired = p.expire(100, 94);
        assertEquals(1, expired.size(), "only the record parked at 5 waited more than 94 ms");
        assertTrue(expired.get(0).why().getMessage().contains("not registered within 94 ms"));
        assertEquals(List.of(2L), p.release("r").stream().map(x -> x.record().offset()).toList());
        assertEquals(0, p.bytes());
        assertEquals(0, p.runs());
        assertTrue(p.release("r").isEmpty());
    }
}
