package dev.curvewatch.trainer;

import dev.curvewatch.trainer.experiments.Metrics;
import dev.curvewatch.trainer.experiments.Mlp;
import dev.curvewatch.trainer.experiments.NoisyLabelData;
import dev.curvewatch.trainer.experiments.NoisyLabelsEvaluator;

import dev.curvewatch.avro.DType;
import dev.curvewatch.avro.EditCandidate;
import dev.curvewatch.avro.ExampleLosses;
import dev.curvewatch.avro.ProbeResult;
import dev.curvewatch.avro.Tensor;
import dev.curvewatch.curvature.FactorAccumulator;
import dev.curvewatch.curvature.Precision;
import dev.curvewatch.schemas.AvroSerializer;
import dev.curvewatch.schemas.EditCandidateParts;
import dev.curvewatch.schemas.TensorCodec;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.function.UnaryOperator;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The responder without a broker: records are offered as Kafka would deliver them (single-object
 * Avro bytes, key = run). Losses are checked against {@link Reference}, an fp64 forward pass and
 * edit written out as loops.
 */
class CandidateResponderTest {
    private static final String RUN = "unit-run";
    private static final int[] DIMS = {32, 16, 16, 10};
    private static final AvroSerializer<EditCandidate> ENCODER = new AvroSerializer<>(EditCandidate.class);

    private static NoisyLabelData data;
    private static Mlp mlp;
    private static Candidates.Bases fc1;
    private static Candidates.Bases fc2;

    private NoisyLabelsEvaluator evaluator;
    private final List<ProbeResult> published = new ArrayList<>();
    private final List<String> skipped = new ArrayList<>();
    private long skippedBasesBytes;
    private final Map<String, String> refusals = new LinkedHashMap<>();
    private final ByteArrayOutputStream logBytes = new ByteArrayOutputStream();
    private CandidateResponder responder;

    @BeforeAll
    static void trainAndFactor() {
        data = NoisyLabelData.generate(4, 32, 10, 1.0, 300, 50, 60, 0.1);
        mlp = new Mlp(5, DIMS);
        Random random = new Random(6);
        int n = data.train().n();
        for (int epoch = 0; epoch < 15; epoch++) {
            for (int start = 0; start < n; start += 100) {
                float[] x = new float[100 * 32];
                int[] y = new int[100];
                System.arraycopy(data.train().x(), start * 32, x, 0, x.length);
                System.arraycopy(data.trainLabels(), start, y, 0, 100);
                mlp.adam(mlp.forwardBackward(x, y, 100, Set.of()), 5e-3f);
            }
        }
        // sampled-label Fisher factors of both hidden layers, as the workers would accumulate them
        float[] logits = mlp.logits(data.train().x(), n);
        int[] sampled = new int[n];
        for (int i = 0; i < n; i++) {
            sampled[i] = Metrics.sampleFromLogits(logits, i * 10, 10, random);
        }
        List<LayerCapture> caps = mlp.forwardBackward(data.train().x(), sampled, n, Set.of(0, 1)).captures();
        Candidates.Bases[] bases = new Candidates.Bases[2];
        for (LayerCapture cap : caps) {
            FactorAccumulator a = FactorAccumulator.cumulative(cap.dIn(), Precision.FLOAT64);
            FactorAccumulator g = FactorAccumulator.cumulative(cap.dOut(), Precision.FLOAT64);
            a.add(0, cap.a(), cap.tokens());
            g.add(0, cap.g(), cap.tokens());
            bases[cap.layer()] = Candidates.bases(a, g);
        }
        fc1 = bases[0];
        fc2 = bases[1];
    }

    @AfterAll
    static void close() {
        mlp.close();
    }

    @BeforeEach
    void responder() {
        evaluator = new NoisyLabelsEvaluator(mlp, data, List.of(0, 1), data.trainLabels());
        int[] all = new int[data.train().n()];
        for (int i = 0; i < all.length; i++) {
            all[i] = i;
        }
        evaluator.trained(all);
        responder = new CandidateResponder(RUN, evaluator, published::add,
                new PrintStream(logBytes, true, StandardCharsets.UTF_8), new CandidateResponder.Events() {
                    @Override
                    public void candidateSkipped(EditCandidate candidate, String why) {
                        skipped.add(candidate.getCandidateId());
                        skippedBasesBytes += candidate.getBasisG().getData().remaining() + candidate.getBasisA().getData().remaining();
                    }

                    @Override
                    public void candidateRefused(String candidateId, String reason, String message) {
                        refusals.put(candidateId, reason + " | " + message);
                    }
                });
    }

    private void offer(EditCandidate c) {
        responder.offer(RUN, ENCODER.serialize("t", c));
    }

    @Test
    void lossesNowAndUnderEveryEditMatchAnIndependentReference() {
        double[] rhos = Candidates.standardRhos();
        EditCandidate c = Candidates.builder("c-fc2", RUN, "fc2", 3, fc2, rhos).build();
        offer(c);
        ProbeResult r = responder.answerNext(7).orElseThrow();
        assertEquals(List.of(r), published);
        assertEquals(RUN, r.getRunId());
        assertEquals("c-fc2", r.getCandidateId());
        assertEquals("fc2", r.getLayer());
        assertEquals(7L, r.getStep());
        assertEquals(c.getRhos(), r.getRhos());
        assertEquals(data.probes().n() + data.train().n(), r.getExamples().size(), "every probe and all 300 recent examples");
        long probes = r.getExamples().stream().filter(ExampleLosses::getProbe).count();
        assertEquals(data.probes().n(), probes);
        Set<String> ids = new HashSet<>();
        r.getExamples().forEach(e -> ids.add(e.getSampleId()));
        assertEquals(r.getExamples().size(), ids.size(), "each example once");

        float[][] w = mlp.copyWeights();
        float[][] b = {mlp.bias(0).clone(), mlp.bias(1).clone(), mlp.bias(2).clone()};
        int changed = ProbeResultCheck.check(r, w, b, DIMS, data, 1, fc2, Candidates.thresholds(fc2, rhos), evaluator.labels());
        assertTrue(changed > 0, "some edit changed some loss by more than 1e-3 nats, so the comparison means something");
        assertEquals(1, responder.answered());
        assertTrue(responder.answerNext(8).isEmpty(), "answered once");
    }

    @Test
    void pollScoresAFrozenCopyOnAWorkerThreadWhileTrainingChangesTheModel() throws Exception {
        double[] rhos = {0.6, 0.9, 0.99};
        offer(Candidates.builder("inline", RUN, "fc2", 1, fc2, rhos).build());
        ProbeResult inline = responder.answerNext(5).orElseThrow();
        offer(Candidates.builder("async", RUN, "fc2", 2, fc2, rhos).build());
        assertTrue(responder.poll(5).isEmpty(), "poll does not wait for the answer");
        assertTrue(responder.answering());
        float[] trained = mlp.weight(1).clone();
        try {
            java.util.Arrays.fill(mlp.weight(1), 0f); // "training" changes the live weights in place, as Adam does
            assertTrue(responder.awaitScored(java.time.Duration.ofSeconds(60)));
            ProbeResult async = responder.poll(6).orElseThrow();
            assertFalse(responder.answering());
            assertEquals(5L, async.getStep(), "measured when the model was frozen");
            assertTrue(inline.getExamples().equals(async.getExamples()), "the frozen model, not the one training changed");
            assertEquals(List.of(inline, async), published);
        } finally {
            mlp.setWeight(1, trained);
        }
    }

    @Test
    void rhoOneKeepsTheCurrentLosses() {
        offer(Candidates.builder("c-one", RUN, "fc1", 1, fc1, new double[] {1.0}).build());
        ProbeResult r = responder.answerNext(3).orElseThrow();
        for (ExampleLosses e : r.getExamples()) {
            assertEquals(e.getLossNow(), e.getLossEdited().get(0), e.getSampleId() + ": no edit, exactly loss_now");
            assertEquals(e.getCorrectNow(), e.getCorrectEdited().get(0), e.getSampleId());
        }
    }

    @Test
    void answersTheNewestPendingCandidateOfEachLayer() {
        double[] rhos = {0.9, 0.99};
        offer(Candidates.builder("fc2-v1", RUN, "fc2", 1, fc2, rhos).build());
        offer(Candidates.builder("fc2-v2", RUN, "fc2", 2, fc2, rhos).build());
        offer(Candidates.builder("fc1-v1", RUN, "fc1", 1, fc1, rhos).build());
        // a late, older one does not replace the pending newer one
        offer(Candidates.builder("fc2-v0", RUN, "fc2", 0, fc2, rhos).build());
        assertEquals(2, responder.pending());
        List<String> answered = new ArrayList<>();
        responder.answerNext(1).ifPresent(p -> answered.add(p.getCandidateId()));
        responder.answerNext(2).ifPresent(p -> answered.add(p.getCandidateId()));
        assertTrue(responder.answerNext(3).isEmpty());
        assertEquals(Set.of("fc2-v2", "fc1-v1"), new HashSet<>(answered));
        assertEquals(List.of("fc2-v1", "fc2-v0"), skipped);
        assertEquals(0, skippedBasesBytes, "a checked candidate waits without its bases (they are in its edit)");
        assertEquals(2, responder.skipped());
        assertEquals(2, responder.answered());
        // the same id again is not answered a second time
        offer(Candidates.builder("fc2-v2", RUN, "fc2", 2, fc2, rhos).build());
        assertTrue(responder.answerNext(4).isEmpty());
        assertEquals(1, responder.duplicates());
    }

    /** Row parts of about four rows each (EditCandidate v2), as the service sends a candidate above its part size. */
    private static List<EditCandidate> inParts(EditCandidate whole) {
        int rowBytes = Math.max(whole.getBasisG().getData().remaining() / whole.getBasisG().getShape().get(0),
                whole.getBasisA().getData().remaining() / whole.getBasisA().getShape().get(0));
        int rest = ENCODER.serialize("t", whole).length - whole.getBasisG().getData().remaining()
                - whole.getBasisA().getData().remaining();
        return EditCandidateParts.split(whole, 4096 + rest + 4 * rowBytes + 256);
    }

    @Test
    void aCandidateInRowPartsIsAnsweredAsTheWholeOneAndALostPartIsRefused() {
        double[] rhos = Candidates.standardRhos();
        List<EditCandidate> parts = inParts(Candidates.builder("c-parts", RUN, "fc2", 3, fc2, rhos).build());
        assertTrue(parts.size() >= 3, parts.size() + " parts");
        for (EditCandidate part : parts.subList(0, parts.size() - 1)) {
            offer(part);
            assertEquals(0, responder.pending(), "not pending before its last part");
        }
        offer(parts.get(parts.size() - 1));
        ProbeResult r = responder.answerNext(7).orElseThrow();
        assertEquals("c-parts", r.getCandidateId());
        float[][] w = mlp.copyWeights();
        float[][] b = {mlp.bias(0).clone(), mlp.bias(1).clone(), mlp.bias(2).clone()};
        assertTrue(ProbeResultCheck.check(r, w, b, DIMS, data, 1, fc2, Candidates.thresholds(fc2, rhos), evaluator.labels()) > 0,
                "the reassembled candidate's answer matches the independent reference");

        List<EditCandidate> lost = inParts(Candidates.builder("c-lost", RUN, "fc2", 4, fc2, rhos).build());
        offer(lost.get(0));
        offer(lost.get(2));
        assertEquals(0, responder.pending());
        assertTrue(refusals.get("c-lost").startsWith("INVALID_FIELD | ") && refusals.get("c-lost").contains("expecting part 1"),
                refusals.toString());
        offer(Candidates.builder("c-parts-unknown", RUN, "fc9", 4, fc2, rhos).setParts(2).build());
        assertTrue(refusals.get("c-parts-unknown").startsWith("UNKNOWN_LAYER"), refusals.toString());
        assertEquals((long) parts.size() + 3, responder.summary().get("candidate_parts_received"));
        assertEquals(1, responder.answered());
    }

    /**
     * EditCandidate v4: a candidate with only the leading basis columns its masks use, then one
     * naming those bases instead of sending them, are answered exactly as the whole candidate;
     * a basis this trainer does not hold, or a mask keeping pairs beyond the columns, is refused.
     */
    @Test
    void compactCandidatesAreAnsweredAsWholeOnesAndUnknownBasesAreRefused() {
        double[] rhos = {0.6, 0.9};
        double[] taus = Candidates.thresholds(fc2, rhos);
        double tauMin = Math.min(taus[0], taus[1]);
        int kg = leading(fc2.lambda(), fc2.mu()[0], tauMin);
        int ka = leading(fc2.mu(), fc2.lambda()[0], tauMin);
        assertTrue(kg < 16 || ka < 16, "the masks leave columns out: " + kg + ", " + ka);
        EditCandidate whole = Candidates.builder("whole", RUN, "fc2", 1, fc2, rhos).build();
        offer(whole);
        ProbeResult byWhole = responder.answerNext(1).orElseThrow();
        offer(Candidates.builder("lead", RUN, "fc2", 2, fc2, rhos).setBasisG(leading(whole.getBasisG(), kg))
                .setBasisA(leading(whole.getBasisA(), ka)).build());
        ProbeResult byLead = responder.answerNext(1).orElseThrow();
        offer(Candidates.builder("named", RUN, "fc2", 3, fc2, rhos)
                .setBasisG(TensorCodec.ofFloats(new float[0], 0, kg)).setBasisGOf("lead").setBasisGOrder(identity(kg))
                .setBasisA(TensorCodec.ofFloats(new float[0], 0, ka)).setBasisAOf("lead").setBasisAOrder(identity(ka)).build());
        ProbeResult byName = responder.answerNext(1).orElseThrow();
        assertEquals(byWhole.getExamples(), byLead.getExamples(), "the same losses from the leading columns");
        assertEquals(byWhole.getExamples(), byName.getExamples(), "the same losses from the named bases");

        offer(Candidates.builder("stranger", RUN, "fc2", 4, fc2, rhos)
                .setBasisG(TensorCodec.ofFloats(new float[0], 0, kg)).setBasisGOf("whole").setBasisGOrder(identity(kg)).build());
        assertTrue(refusals.get("stranger").startsWith("BASES_NOT_HELD | ") && refusals.get("stranger").contains("holds lead's"),
                refusals.toString());
        offer(Candidates.builder("short", RUN, "fc2", 5, fc2, rhos).setBasisG(leading(whole.getBasisG(), kg - 1)).build());
        assertTrue(refusals.get("short").startsWith("COLUMNS_MISSING | "), refusals.toString());
        assertEquals(3, responder.answered());
    }

    private static int leading(double[] values, double top, double tauMin) {
        int k = 0;
        while (k < values.length && values[k] * top >= tauMin) {
            k++;
        }
        return k;
    }

    private static Tensor leading(Tensor square, int k) {
        int n = square.getShape().get(0);
        float[] v = TensorCodec.toFloatArray(square, "basis");
        float[] out = new float[n * k];
        for (int r = 0; r < n; r++) {
            System.arraycopy(v, r * n, out, r * k, k);
        }
        return TensorCodec.ofFloats(out, n, k);
    }

    private static List<Integer> identity(int k) {
        List<Integer> out = new ArrayList<>();
        for (int c = 0; c < k; c++) {
            out.add(c);
        }
        return out;
    }

    @Test
    void candidatesOfOtherRunsAreIgnored() {
        double[] rhos = {0.9};
        responder.offer("other-run", ENCODER.serialize("t", Candidates.builder("x", "other-run", "fc2", 1, fc2, rhos).build()));
        responder.offer(null, ENCODER.serialize("t", Candidates.builder("y", "other-run", "fc2", 1, fc2, rhos).build()));
        assertEquals(2, responder.otherRuns());
        assertEquals(0, responder.pending());
        assertEquals(0, responder.refused());
    }

    @Test
    void malformedCandidatesAreRefusedAndCountedWhileGoodOnesAreStillAnswered() {
        double[] rhos = {0.6, 0.9};
        List<Case> cases = new ArrayList<>();
        cases.add(new Case("SHAPE_MISMATCH", c -> c.setBasisG(TensorCodec.ofFloats(new float[15 * 16], 15, 16))));
        cases.add(new Case("SHAPE_MISMATCH", c -> c.setEigenvaluesA(TensorCodec.ofFloats(new float[15], 15))));
        cases.add(new Case("SHAPE_MISMATCH", c -> c.setBasisA(Tensor.newBuilder(c.getBasisA()).setDtype(DType.INT32).build())));
        cases.add(new Case("TENSOR_LENGTH", c -> c.setBasisA(Tensor.newBuilder(c.getBasisA())
                .setData(ByteBuffer.wrap(new byte[16 * 16 * 4 - 4])).build())));
        cases.add(new Case("NON_FINITE", c -> c.setBasisA(mutate(c.getBasisA(), v -> v[17] = Float.NaN))));
        cases.add(new Case("NON_FINITE", c -> c.setEigenvaluesG(mutate(c.getEigenvaluesG(), v -> v[0] = Float.POSITIVE_INFINITY))));
        cases.add(new Case("INVALID_FIELD", c -> c.setEigenvaluesG(mutate(c.getEigenvaluesG(), v -> v[5] = v[0] * 2))));
        cases.add(new Case("INVALID_FIELD", c -> c.setEigenvaluesA(mutate(c.getEigenvaluesA(), v -> v[15] = -1f))));
        cases.add(new Case("INVALID_FIELD", c -> c.setThresholds(List.of(1.0))));
        cases.add(new Case("INVALID_FIELD", c -> c.setRhos(List.of(1.5, 0.9))));
        cases.add(new Case("NOT_ORTHONORMAL", c -> c.setBasisG(mutate(c.getBasisG(), v -> {
            for (int i = 0; i < 16; i++) {
                v[i * 16 + 3] *= 2; // column 3 has norm 2
            }
        }))));
        cases.add(new Case("NOT_ORTHONORMAL", c -> c.setBasisA(mutate(c.getBasisA(), v -> {
            for (int i = 0; i < 16; i++) {
                v[i * 16 + 5] = v[i * 16 + 4]; // columns 4 and 5 equal
            }
        }))));
        cases.add(new Case("NOT_ORTHONORMAL", c -> c.setBasisA(mutate(c.getBasisA(), v -> {
            Random rnd = new Random(1); // unit columns, but not orthogonal
            for (int j = 0; j < 16; j++) {
                double norm = 0;
                for (int i = 0; i < 16; i++) {
                    v[i * 16 + j] = (float) rnd.nextGaussian();
                    norm += v[i * 16 + j] * v[i * 16 + j];
                }
                for (int i = 0; i < 16; i++) {
                    v[i * 16 + j] /= (float) Math.sqrt(norm);
                }
            }
        }))));
        cases.add(new Case("UNKNOWN_LAYER", c -> c.setLayer("fc3")));
        cases.add(new Case("KEY_MISMATCH", c -> c.setRunId("someone-else")));
        cases.add(new Case("THRESHOLD_MISMATCH", c -> c.setThresholds(List.of(c.getThresholds().get(0) * 1.01, c.getThresholds().get(1)))));
        int k = 0;
        for (Case e : cases) {
            String id = "bad-" + k++;
            EditCandidate.Builder b = Candidates.builder(id, RUN, "fc2", 1, fc2, rhos);
            offer(e.change().apply(b).build());
            String got = refusals.get(id);
            assertTrue(got != null && got.startsWith(e.reason() + " | "), id + " expected " + e.reason() + ", got " + got);
        }
        responder.offer(RUN, "this is not an Avro record".getBytes(StandardCharsets.UTF_8));
        assertTrue(refusals.get("?").startsWith("BAD_HEADER"), refusals.get("?"));
        assertEquals(cases.size() + 1, responder.refused());
        assertEquals(0, responder.pending());
        assertTrue(responder.answerNext(1).isEmpty(), "nothing refused is answered");
        assertEquals(3, responder.refusalReasons().get("NOT_ORTHONORMAL"));
        String log = logBytes.toString(StandardCharsets.UTF_8);
        // the doubled column's norm is 2 up to the float32 rounding of the basis (1.99999999... in some runs)
        java.util.regex.Matcher norm = java.util.regex.Pattern
                .compile("refused bad-10: NOT_ORTHONORMAL: basis_g is not orthonormal: column 3 has norm ([0-9.]+)").matcher(log);
        assertTrue(norm.find(), log);
        assertEquals(2.0, Double.parseDouble(norm.group(1)), 1e-6, log);
        assertTrue(log.contains("layer 'fc3' is not watched"), log);
        // the responder keeps working
        offer(Candidates.builder("good", RUN, "fc2", 2, fc2, rhos).build());
        assertEquals("good", responder.answerNext(2).orElseThrow().getCandidateId());
    }

    @Test
    void orthonormalCheckAcceptsRealBasesAndRefusesAScaledOne() {
        CandidateValidator.requireOrthonormal(fc2.ug(), 16, "u");
        CandidateValidator.requireOrthonormal(fc1.ua(), 32, "u");
        double[] scaled = fc2.ug();
        for (int i = 0; i < scaled.length; i++) {
            scaled[i] *= 1.01;
        }
        CandidateValidator.Refusal r = org.junit.jupiter.api.Assertions.assertThrows(CandidateValidator.Refusal.class,
                () -> CandidateValidator.requireOrthonormal(scaled, 16, "u"));
        assertEquals("NOT_ORTHONORMAL", r.reason());
    }

    @Test
    void thresholdAgreementIsRelative() {
        assertTrue(CandidateValidator.tauAgrees(1.0, 1.0 + 1e-6, 10));
        assertFalse(CandidateValidator.tauAgrees(1.0, 1.001, 10));
        assertTrue(CandidateValidator.tauAgrees(0.0, 0.0, 10));
        assertFalse(CandidateValidator.tauAgrees(0.0, 1e-6, 10));
    }

    private record Case(String reason, UnaryOperator<EditCandidate.Builder> change) {
    }

    private interface FloatEdit {
        void apply(float[] v);
    }

    private static Tensor mutate(Tensor t, FloatEdit edit) {
        float[] v = TensorCodec.toFloatArray(t, "t");
        edit.apply(v);
        int[] shape = t.getShape().stream().mapToInt(Integer::intValue).toArray();
        return TensorCodec.ofFloats(v, shape);
    }
}
