package dev.curvewatch.service.internal;

import dev.curvewatch.avro.CalibrationSearch;
import dev.curvewatch.avro.LayerInfo;
import dev.curvewatch.avro.ProbeResult;
import dev.curvewatch.avro.RunInfo;
import dev.curvewatch.avro.Signal;
import dev.curvewatch.schemas.AvroDeserializer;
import dev.curvewatch.schemas.AvroSerializer;
import dev.curvewatch.schemas.CurvewatchTopics;
import dev.curvewatch.schemas.InvalidRecordException;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.MockProducer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Test;

import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Answers to candidates on the ingest thread, against MockProducer: declines, refused answers, invalid and valid calibrations. */
class ProbeResultsTest {
    static final CurvewatchTopics TOPICS = new CurvewatchTopics("t.");
    final Registry registry = new Registry(new SignalHistory(100), 10, 10, 10,
            new LayerState.Pacing(new CandidatePacer.Settings(20, 200, 0), 1));
    final MockProducer<String, byte[]> producer = new MockProducer<>(true, null, new StringSerializer(), new ByteArraySerializer());
    final ServiceMetrics metrics = new ServiceMetrics();
    final ProbeResults results = new ProbeResults(registry, new Outputs(producer, TOPICS, registry, new AlertEvaluator(List.of()), metrics,
            null, "service:test", 1 << 20), metrics, CalibrationTerms.DEFAULTS.withTolerances(0.01, 0.05), 60_000);
    long offset;

    /** The layer of CalibrationTest's candidate (run-1/fc2) with that candidate out. */
    LayerState withCandidateOut() {
        registry.register(RunInfo.newBuilder().setRunId("run-1").setModel("m").setSource("t").setCreatedMs(1)
                .setLayers(List.of(LayerInfo.newBuilder().setName("fc2").setDIn(32).setDOut(64).build())).build(), 1);
        LayerState l = registry.existing("run-1", "fc2").orElseThrow();
        l.sent(CalibrationTest.candidate(), new int[]{1, 1}, false);
        return l;
    }

    ConsumerRecord<byte[], byte[]> record(ProbeResult r) {
        return new ConsumerRecord<>(TOPICS.probeResults(), 0, offset++, r.getRunId().getBytes(StandardCharsets.UTF_8),
                new AvroSerializer<>(ProbeResult.class).serialize(null, r));
    }

    List<Signal> signals() {
        AvroDeserializer<Signal> d = new AvroDeserializer<>(Signal.class);
        return producer.history().stream().filter(r -> r.topic().equals(TOPICS.signals())).map(r -> d.decode(r.value())).toList();
    }

    @Test
    void aDeclinedCandidateEndsAtOnceAndTheLayerBacksOff() {
        LayerState l = withCandidateOut();
        ProbeResult declined = ProbeResult.newBuilder().setRunId("run-1").setCandidateId("c-1").setLayer("fc2").setStep(41)
                .setRhos(CalibrationTest.rhoList()).setExamples(List.of()).setTimestampMs(1)
                .setDeclined("answer-time budget spent: 11.2% of training time > 10%").build();
        results.accept(record(declined));
        assertFalse(l.awaitingAnswer(), "ended now, not after calibration.timeout.ms");
        assertTrue(l.expire(Long.MAX_VALUE, 0).isEmpty(), "nothing left to time out");
        assertEquals(1, l.status().candidateBackoff());
        assertTrue(l.status().status().contains("answer-time budget spent"), l.status().status());
        assertEquals(List.of("candidates_declined"), signals().stream().map(s -> s.getName().toString()).toList());
        assertEquals(1.0, metrics.counter("curvewatch_service_candidates_declined_total"));
        assertThrows(InvalidRecordException.class, () -> results.accept(record(declined)), "answered once");
    }

    @Test
    void aMalformedAnswerIsRefusedAndEndsItsCandidate() {
        LayerState l = withCandidateOut();
        ProbeResult bad = ProbeResult.newBuilder(CalibrationTest.result(3, 20, 30, true)).setSearch(CalibrationSearch.BISECT).setChosen(40).build();
        InvalidRecordException e = assertThrows(InvalidRecordException.class, () -> results.accept(record(bad)));
        assertTrue(e.getMessage().contains("chosen 40 is not a candidate index"), e.getMessage());
        assertFalse(l.awaitingAnswer(), "no other answer will come: not left to time out");
        assertTrue(l.status().status().startsWith("answer to v3 refused: INVALID_FIELD: chosen 40"), l.status().status());
    }

    @Test
    void anInvalidCalibrationPublishesOnlyItsVerdictAndAValidOneEverything() {
        LayerState l = withCandidateOut();
        results.accept(record(ProbeResult.newBuilder(DegenerateCalibrationTest.result(null, false)).setLayer("fc2").build()));
        assertEquals(List.of("calibration_valid"), signals().stream().map(s -> s.getName().toString()).toList());
        assertEquals(0.0, signals().get(0).getValue());
        assertEquals(1.0, signals().get(0).getAttributes().get("reason"), "1: constant loss");
        assertTrue(producer.history().stream().noneMatch(r -> r.topic().equals(TOPICS.scores())), "no scores from it");
        assertTrue(Double.isNaN(l.calibratedRho()));
        l.sent(CalibrationTest.candidate(), new int[]{1, 1}, false);
        results.accept(record(CalibrationTest.result(3, 20, 30, true)));
        Map<String, Double> byName = new java.util.HashMap<>();
        signals().forEach(s -> byName.put(s.getName().toString(), s.getValue()));
        assertEquals(1.0, byName.get("calibration_valid"));
        assertEquals(l.calibratedRho(), byName.get("calibrated_rho"));
        assertTrue(byName.containsKey("memorization_gap"));
        assertEquals(3, producer.history().stream().filter(r -> r.topic().equals(TOPICS.scores())).count(), "EXACT, LOSS and PEAK");
        assertTrue(byName.containsKey("memorization_outliers"));
        assertEquals(1.0, metrics.counter("curvewatch_service_probe_results_total", "invalid"));
        assertEquals(1.0, metrics.counter("curvewatch_service_probe_results_total", "calibrated"));
    }

    @Test
    void aLateAnswerToATimedOutCandidateIsStillUsedNotRefused() {
        // a loaded machine: the trainer's first answer came after calibration.timeout.ms (the demo, load average 21)
        LayerState l = withCandidateOut();
        results.expire(l, Long.MAX_VALUE);
        assertFalse(l.awaitingAnswer());
        assertEquals(1, l.calibrationTimeouts());
        assertEquals(1, l.status().candidateBackoff(), "the timeout backed the layer off");
        results.accept(record(CalibrationTest.result(3, 20, 30, true)));
        assertFalse(Double.isNaN(l.calibratedRho()), "calibrated from the late answer");
        assertEquals(0, l.status().candidateBackoff(), "and the answer eased the back-off again");
        assertThrows(InvalidRecordException.class, () -> results.accept(record(CalibrationTest.result(3, 20, 30, true))),
                "answered once");
    }
}
