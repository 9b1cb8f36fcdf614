package dev.curvewatch.trainer;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.TreeMap;

/** What a {@link CandidateResponder} counted (training thread only), and the summary it reports. */
final class ResponderCounters {
    long answered;
    long skipped;
    long refused;
    long duplicates;
    long otherRuns;
    long notPublished;
    long failed;
    long publishFailures;
    long observerFailures;
    long nonFiniteLosses;
    long partsReceived;
    long answerNanos;
    private final Map<String, Long> refusalReasons = new TreeMap<>();

    void refusal(String reason) {
        refused++;
        refusalReasons.merge(reason, 1L, Long::sum);
    }

    Map<String, Long> refusalReasons() {
        return new TreeMap<>(refusalReasons);
    }

    Map<String, Object> summary(long pendingAtEnd) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("candidates_answered", answered);
        m.put("candidates_skipped", skipped);
        m.put("candidates_refused", refused);
        m.put("candidates_duplicate", duplicates);
        m.put("candidates_other_runs", otherRuns);
        m.put("candidates_pending_at_end", pendingAtEnd);
        m.put("candidate_failures", failed);
        m.put("probe_result_publish_failures", publishFailures);
        m.put("candidate_observer_failures", observerFailures);
        m.put("candidate_nonfinite_losses", nonFiniteLosses);
        m.put("candidate_refusal_reasons", refusalReasons());
        m.put("probe_results_not_published", notPublished);
        m.put("candidate_answer_ms", answerNanos / 1e6);
        m.put("candidate_parts_received", partsReceived);
        return m;
    }
}
