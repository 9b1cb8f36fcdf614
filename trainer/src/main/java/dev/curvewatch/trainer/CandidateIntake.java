package dev.curvewatch.trainer;

import dev.curvewatch.avro.EditCandidate;
import dev.curvewatch.schemas.AvroDeserializer;
import dev.curvewatch.schemas.EditCandidateParts;
import dev.curvewatch.schemas.InvalidRecordException;
import dev.curvewatch.schemas.RejectReason;

import java.io.PrintStream;
import java.util.Iterator;
import java.util.LinkedHashSet;
import java.util.Locale;
import java.util.Optional;
import java.util.function.Function;

/**
 * Turns records of topic edit-candidates into whole candidates of this run seen for the first
 * time: decodes them, ignores other runs' records (counted), refuses a candidate over the answer
 * budget at its first record and drops its later parts, reassembles candidates sent in row parts
 * ({@link EditCandidateParts.Assembler}, one in progress per layer) and drops repeated ids (the
 * last {@value #REMEMBERED_IDS} are remembered). Training thread only.
 */
final class CandidateIntake {
    static final int REMEMBERED_IDS = 10_000;

    /** Where a refusal goes (the responder logs, counts and tells its observer). */
    @FunctionalInterface
    interface Refusals {
        void refuse(String candidateId, String reason, String message);
    }

    private final String runId;
    private final Function<String, Optional<LayerShape>> layers;
    private final long answerBudgetBytes;
    private final ResponderCounters counters;
    private final PrintStream log;
    private final Refusals refusals;
    private final AvroDeserializer<EditCandidate> decoder = new AvroDeserializer<>(EditCandidate.class);
    /** Candidates larger than one record arrive in row parts (EditCandidate v2). */
    private final EditCandidateParts.Assembler parts = new EditCandidateParts.Assembler();
    /** Candidates refused over the budget at their first part: their later parts are dropped without another refusal. */
    private final LinkedHashSet<String> overBudget = new LinkedHashSet<>();
    private final LinkedHashSet<String> seenIds = new LinkedHashSet<>();

    CandidateIntake(String runId, Function<String, Optional<LayerShape>> layers, long answerBudgetBytes,
                    ResponderCounters counters, PrintStream log, Refusals refusals) {
        this.runId = runId;
        this.layers = layers;
        this.answerBudgetBytes = answerBudgetBytes;
        this.counters = counters;
        this.log = log;
        this.refusals = refusals;
    }

    /** One record (key = run id): the whole candidate when this record completes a new one of this run. */
    Optional<EditCandidate> accept(String key, byte[] value) {
        if (key != null && !key.equals(runId)) {
            counters.otherRuns++; // another run's candidate on the shared topic: not ours to judge
            return Optional.empty();
        }
        EditCandidate decoded;
        try {
            decoded = decoder.decode(value);
        } catch (InvalidRecordException e) {
            refusals.refuse("?", e.reason().name(), "undecodable edit candidate: " + e.getMessage());
            return Optional.empty();
        } catch (RuntimeException e) {
            refusals.refuse("?", RejectReason.MALFORMED.name(), "undecodable edit candidate: " + e);
            return Optional.empty();
        }
        if (key == null && !runId.equals(decoded.getRunId())) {
            counters.otherRuns++;
            return Optional.empty();
        }
        if (overBudget.contains(decoded.getCandidateId())) {
            return Optional.empty(); // a later part of a candidate refused at its first one
        }
        if (decoded.getPart() == 0 && overBudget(decoded)) {
            return Optional.empty();
        }
        EditCandidate c = decoded;
        if (c.getParts() != 1 || c.getPart() != 0) {
            Optional<EditCandidate> whole = assemble(decoded);
            if (whole.isEmpty()) {
                return whole; // more parts to come, or refused
            }
            c = whole.get();
        }
        String id = c.getCandidateId();
        if (seenIds.contains(id)) {
            counters.duplicates++;
            log.println("candidates: candidate " + id + " was already received; answered once only");
            return Optional.empty();
        }
        remember(seenIds, id);
        return Optional.of(c);
    }

    private Optional<EditCandidate> assemble(EditCandidate part) {
        counters.partsReceived++;
        try {
            LayerShape shape = layers.apply(part.getLayer()).orElseThrow(() -> new InvalidRecordException(
                    RejectReason.UNKNOWN_LAYER, "layer '" + part.getLayer() + "' is not watched by this trainer"));
            return parts.accept(part, shape.dOut(), shape.dIn());
        } catch (InvalidRecordException e) {
            refusals.refuse(part.getCandidateId(), e.reason().name(), e.getMessage());
            return Optional.empty();
        }
    }

    /** Refuses (once) a candidate whose answer would exceed the budget; true when refused. */
    private boolean overBudget(EditCandidate c) {
        Optional<LayerShape> shape = layers.apply(c.getLayer());
        if (shape.isEmpty()) {
            return false; // refused later with the reason that fits
        }
        long needed = CandidateResponder.answerBytes(shape.get().dOut(), shape.get().dIn());
        if (needed <= answerBudgetBytes) {
            return false;
        }
        remember(overBudget, c.getCandidateId());
        refusals.refuse(c.getCandidateId(), RejectReason.OVERSIZED.name(), String.format(Locale.ROOT,
                "answering candidate %s of layer %s (%d x %d) needs about %.2f GiB, over this trainer's answer budget of %.2f GiB",
                c.getCandidateId(), c.getLayer(), shape.get().dOut(), shape.get().dIn(), needed / (double) (1L << 30),
                answerBudgetBytes / (double) (1L << 30)));
        return true;
    }

    private static void remember(LinkedHashSet<String> ids, String id) {
        ids.add(id);
        if (ids.size() > REMEMBERED_IDS) {
            Iterator<String> it = ids.iterator();
            it.next();
            it.remove();
        }
    }
}
