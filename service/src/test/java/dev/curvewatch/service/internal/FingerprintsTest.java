package dev.curvewatch.service.internal;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;

class FingerprintsTest {
    @Test
    void alertFingerprintIsTheFirst32HexOfSha256OfRunLayerRule() {
        // python3 -c "import hashlib; print(hashlib.sha256(b'run-1|fc2|gap-jump').hexdigest()[:32])"
        assertEquals("9252052b710bde6f913a6e5bf67b5efe", Fingerprints.alert("run-1", "fc2", "gap-jump"));
        assertEquals("d7114e81cc5553e9179cdd8099a7d768", Fingerprints.alert("run-1", null, "gap-high"), "run-level: empty layer");
        assertEquals(Fingerprints.alert("run-1", "fc2", "gap-jump"), Fingerprints.alert("run-1", "fc2", "gap-jump"));
        assertNotEquals(Fingerprints.alert("run-1", "fc2", "gap-jump"), Fingerprints.alert("run-1", "fc1", "gap-jump"));
        assertNotEquals(Fingerprints.alert("run-1", "fc2", "gap-jump"), Fingerprints.alert("run-2", "fc2", "gap-jump"));
        assertNotEquals(Fingerprints.alert("run-1", "fc2", "gap-jump"), Fingerprints.alert("run-1", "fc2", "gap-high"));
    }

    @Test
    void snapshotIdDependsOnRunAndKeyOnly() {
        // python3 -c "import hashlib; print(hashlib.sha256(b'run-1|key-1').hexdigest()[:24])"
        assertEquals("snap-c8e788bab19413960bd9e3f7", Fingerprints.snapshot("run-1", "key-1"));
        assertNotEquals(Fingerprints.snapshot("run-1", "key-1"), Fingerprints.snapshot("run-1", "key-2"));
    }
}
