package dev.curvewatch.schemas;

/**
 * Why a record was refused. The names are the {@code reason_code} of dead letters, so dashboards
 * and alert rules can group them; keep them stable.
 */
public enum RejectReason {
    /** Fewer bytes than the header or the encoded record needs. */
    TRUNCATED,
    /** Not Avro single-object encoding (wrong marker bytes). */
    BAD_HEADER,
    /** Header names a schema fingerprint that no known schema has. */
    UNKNOWN_SCHEMA,
    /** Known schema, but of another record type than the topic carries. */
    WRONG_TYPE,
    /** The payload does not parse under its schema (negative lengths, bad union or enum index). */
    MALFORMED,
    /** The record parsed but bytes were left over. */
    TRAILING_BYTES,
    /** A tensor's byte length disagrees with its shape and dtype. */
    TENSOR_LENGTH,
    /** Shapes disagree with each other or with the run's registered layer dimensions. */
    SHAPE_MISMATCH,
    /** NaN or infinity in a tensor. */
    NON_FINITE,
    /** The run id is not in the registry. */
    UNKNOWN_RUN,
    /** The layer is not one of the run's watched layers. */
    UNKNOWN_LAYER,
    /** Larger than the configured limit. */
    OVERSIZED,
    /** A field value outside its allowed range (bad id characters, negative step, ...). */
    INVALID_FIELD,
    /** The record's key disagrees with its value (e.g. key run/layer differs from the capture's). */
    KEY_MISMATCH,
    /** Well-formed, but what it needs does not exist yet (an edit of a layer without weights, eigenbasis or calibrated rho). */
    NOT_READY,
    /** Well-formed, but writing its result failed (an edited snapshot that could not be stored). */
    STORE_FAILED,
    /** Well-formed, but a downstream system did not take it after every retry (an alert webhook that kept failing). */
    DELIVERY_FAILED
}
