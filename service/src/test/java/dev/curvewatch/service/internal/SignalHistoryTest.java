package dev.curvewatch.service.internal;

import dev.curvewatch.avro.Signal;
import dev.curvewatch.service.SignalPoint;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;

class SignalHistoryTest {
    static Signal s(String layer, String name, long step) {
        return Signal.newBuilder().setRunId("r").setLayer(layer).setName(name).setStep(step).setValue(step * 0.5).setTimestampMs(step).build();
    }

    @Test
    void ringsAreBoundedAndQueriesFilter() {
        SignalHistory h = new SignalHistory(5);
        for (long i = 0; i < 12; i++) {
            h.add(s("fc1", "gap", i));
            h.add(s("fc2", "gap", i));
            h.add(s("fc1", "rho", i));
        }
        List<SignalPoint> pts = h.points("r", "fc1", "gap");
        assertEquals(List.of(7L, 8L, 9L, 10L, 11L), pts.stream().map(SignalPoint::step).toList(), "the newest 5, oldest first");
        assertEquals(5.5, h.latest("r", "fc1", "gap").getAsDouble());
        Map<SignalHistory.Series, List<SignalPoint>> q = h.query("r", "fc1", null, 9, 2);
        assertEquals(2, q.size(), "gap and rho of fc1");
        q.values().forEach(p -> assertEquals(List.of(10L, 11L), p.stream().map(SignalPoint::step).toList()));
        assertEquals(3, h.query("r", null, null, Long.MIN_VALUE, 100).size());
        assertEquals(0, h.query("other", null, null, Long.MIN_VALUE, 100).size());
        h.forgetRun("r");
        assertEquals(0, h.points("r", "fc1", "gap").size());
    }
}
