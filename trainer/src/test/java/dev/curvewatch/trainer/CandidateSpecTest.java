package dev.curvewatch.trainer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.curvewatch.avro.CalibrationSearch;
import dev.curvewatch.avro.DType;
import dev.curvewatch.avro.EditCandidate;
import dev.curvewatch.avro.Tensor;
import dev.curvewatch.schemas.InvalidRecordException;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The shared golden vectors of docs/SPEC-SHARED-RULES.md (candidate validation), read from
 * {@code spec/candidates.json} at the repository root; the Python client's test_spec.py reads the
 * same file and must reach the same verdict on every vector.
 */
class CandidateSpecTest {
    static final Path SPEC = Path.of("..", "spec");

    @TestFactory
    Stream<DynamicTest> everyGoldenCandidateGetsTheVerdictTheSpecGives() throws IOException {
        JsonNode doc = new ObjectMapper().readTree(SPEC.resolve("candidates.json").toFile());
        String run = doc.get("run_id").asText();
        Map<String, LayerShape> layers = new java.util.HashMap<>();
        doc.get("layers").fields().forEachRemaining(e -> layers.put(e.getKey(), new LayerShape(e.getKey(),
                e.getValue().get("d_out").asInt(), e.getValue().get("d_in").asInt(), true)));
        List<DynamicTest> tests = new ArrayList<>();
        for (JsonNode v : doc.get("vectors")) {
            String expect = v.get("expect").asText();
            tests.add(DynamicTest.dynamicTest(v.get("name").asText() + " -> " + expect, () -> assertEquals(expect,
                    verdict(candidate(v.get("candidate")), run, name -> Optional.ofNullable(layers.get(name))),
                    v.get("name").asText())));
        }
        return tests.stream();
    }

    @Test
    void theVectorsCoverEveryRefusalReasonTheSpecNames() throws IOException {
        JsonNode doc = new ObjectMapper().readTree(SPEC.resolve("candidates.json").toFile());
        java.util.Set<String> seen = new java.util.TreeSet<>();
        doc.get("vectors").forEach(v -> seen.add(v.get("expect").asText()));
        assertTrue(seen.containsAll(List.of("ACCEPT", "KEY_MISMATCH", "UNKNOWN_LAYER", "INVALID_FIELD", "NON_FINITE",
                "SHAPE_MISMATCH", "TENSOR_LENGTH", "NOT_ORTHONORMAL", "THRESHOLD_MISMATCH", "COLUMNS_MISSING")), seen.toString());
    }

    @Test
    void theLimitsTheSpecNamesAreTheValidatorsAndTheResponders() throws IOException {
        JsonNode limits = new ObjectMapper().readTree(SPEC.resolve("limits.json").toFile());
        assertEquals(limits.get("max_rhos").asInt(), CandidateValidator.MAX_RHOS);
        assertEquals(limits.get("max_candidate_id_chars").asInt(), CandidateValidator.MAX_CANDIDATE_ID);
        assertEquals(limits.get("orthonormal_tolerance").asDouble(), CandidateValidator.ORTHONORMAL_TOLERANCE);
        assertEquals(limits.get("tau_relative_tolerance").asDouble(), CandidateValidator.TAU_RELATIVE_TOLERANCE);
        assertEquals(limits.get("max_training_examples").asInt(), CandidateResponder.MAX_TRAINING_EXAMPLES);
    }

    private static String verdict(EditCandidate c, String run, java.util.function.Function<String, Optional<LayerShape>> layers) {
        try {
            CandidateValidator.prepare(c, run, layers);
            return "ACCEPT";
        } catch (InvalidRecordException e) {
            return e.reason().name();
        } catch (CandidateValidator.Refusal e) {
            return e.reason();
        }
    }

    static EditCandidate candidate(JsonNode j) {
        EditCandidate.Builder b = EditCandidate.newBuilder().setCandidateId(j.get("candidate_id").asText())
                .setRunId(j.get("run_id").asText()).setLayer(j.get("layer").asText()).setStep(j.get("step").asLong())
                .setFactorVersion(j.get("factor_version").asLong())
                .setBasisG(tensor(j.get("basis_g"))).setBasisA(tensor(j.get("basis_a")))
                .setEigenvaluesG(tensor(j.get("eigenvalues_g"))).setEigenvaluesA(tensor(j.get("eigenvalues_a")))
                .setRhos(doubles(j.get("rhos"))).setThresholds(doubles(j.get("thresholds"))).setCreatedMs(0)
                .setSearch(CalibrationSearch.valueOf(j.get("search").asText()))
                .setAccuracyTolerance(number(j.get("accuracy_tolerance")))
                .setLossTolerance(number(j.get("loss_tolerance"))).setPeakTokens(j.get("peak_tokens").asInt());
        List<Integer> train = new ArrayList<>();
        j.get("train_candidates").forEach(k -> train.add(k.asInt()));
        return b.setTrainCandidates(train).build();
    }

    /** Values as the dtype's little-endian bytes (4-byte floats for FLOAT32 and the 4-byte integer types), shape as given. */
    static Tensor tensor(JsonNode t) {
        DType dtype = DType.valueOf(t.get("dtype").asText());
        boolean wide = dtype == DType.FLOAT64 || dtype == DType.INT64;
        JsonNode values = t.get("values");
        ByteBuffer data = ByteBuffer.allocate(values.size() * (wide ? 8 : 4)).order(ByteOrder.LITTLE_ENDIAN);
        for (JsonNode v : values) {
            if (wide) {
                data.putDouble(number(v));
            } else {
                data.putFloat((float) number(v));
            }
        }
        data.flip();
        List<Integer> shape = new ArrayList<>();
        t.get("shape").forEach(d -> shape.add(d.asInt()));
        return Tensor.newBuilder().setDtype(dtype).setShape(shape).setData(data).build();
    }

    private static List<Double> doubles(JsonNode a) {
        List<Double> out = new ArrayList<>();
        a.forEach(v -> out.add(number(v)));
        return out;
    }

    /** A number, or NaN / Infinity / -Infinity written as a string (JSON has no literal for them). */
    static double number(JsonNode v) {
        return v.isTextual() ? Double.parseDouble(v.asText()) : v.asDouble();
    }
}
