"""Record keys land in the partition Kafka's Java producer would choose (SERVICE-CONTRACT: captures
are partitioned by run/layer and the workers check it).

Java's default partitioner, which the workers expect (`CaptureValidator.partitionForKey`), puts a
key in toPositive(murmur2(UTF-8 bytes)) % partitions. librdkafka's default (`consistent_random`)
uses CRC32 instead, so a Python producer left at its defaults lands some run/layer keys in another
partition than the workers expect and every capture of that layer is dead-lettered (KEY_MISMATCH).
The client therefore computes the partition itself (`partition_for_key`, checked against Java's
values by the golden file integration-tests/src/test/resources/golden/partitions.json) and sets it
on every record, from the partition counts the broker reports at `watch()`; its producer is also
configured with librdkafka's Java-compatible `murmur2_random`, so nothing it sends depends on a
partitioner default.
"""

# librdkafka partitioners that place a non-null key as Java's default partitioner does
JAVA_COMPATIBLE = ("murmur2", "murmur2_random")
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2) as a signed 32-bit int."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    end = length - length % 4
    for i in range(0, end, 4):
        k = data[i] | data[i + 1] << 8 | data[i + 2] << 16 | data[i + 3] << 24
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = (h * _M) & _MASK
        h ^= k
    tail = length % 4
    if tail == 3:
        h ^= data[end + 2] << 16
    if tail >= 2:
        h ^= data[end + 1] << 8
    if tail >= 1:
        h ^= data[end]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for_key(key, partitions: int) -> int:
    """toPositive(murmur2(key)) % partitions: the Java producer's partition for a non-null key."""
    if partitions < 1:
        raise ValueError(f"a topic has at least one partition, got {partitions}")
    data = key.encode("utf-8") if isinstance(key, str) else bytes(key)
    return (murmur2(data) & 0x7FFFFFFF) % partitions


def check_partitioner(config):
    """Raises ValueError when a librdkafka `partitioner` setting would place keys unlike Java."""
    chosen = config.get("partitioner")
    if chosen is not None and chosen not in JAVA_COMPATIBLE:
        raise ValueError(f"kafka_config sets partitioner={chosen!r}: Curvewatch's workers expect each run/layer key "
                         f"in Java's default partition (murmur2), so only {JAVA_COMPATIBLE} agree with them; "
                         "remove the setting (the client sets the partition of every record itself)")
