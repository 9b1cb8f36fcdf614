"""The record limits of docs/SPEC-SHARED-RULES.md (Record limits), once for the whole client.

The shared file spec/limits.json holds the same numbers; tests/test_spec.py checks these against it,
and the Java side checks its own constants (CurvewatchTopics, TopicSpec, CandidateValidator,
CandidateResponder) against the same file.
"""
import re

# max.message.bytes of the small topics (probe-results, signals, snapshots, ...): TopicSpec.DEFAULT_MAX_MESSAGE_BYTES
DEFAULT_TOPIC_MAX_MESSAGE_BYTES = 1024 * 1024
# max.message.bytes of the tensor topics (captures, weights, factors, edit-candidates): CurvewatchTopics.TENSOR_MAX_MESSAGE_BYTES
TENSOR_TOPIC_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# ids, shapes, timestamps and Kafka framing around a record's tensors, generously: TopicSpec.RECORD_OVERHEAD_BYTES
RECORD_OVERHEAD_BYTES = 4096
# the largest ProbeResult the probe-results topic takes
PROBE_RESULT_MAX_BYTES = DEFAULT_TOPIC_MAX_MESSAGE_BYTES - RECORD_OVERHEAD_BYTES
# run ids, layer names, snapshot ids: ContractChecks.requireId
ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")
MAX_CANDIDATE_ID_CHARS = 256
MAX_RHOS = 64
MAX_TRAINING_EXAMPLES = 512  # the contract's "sample of up to 512 recent training examples"
ORTHONORMAL_TOLERANCE = 1e-3
TAU_RELATIVE_TOLERANCE = 1e-4
