package dev.curvewatch.trainer.experiments;

import java.awt.image.BufferedImage;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import javax.imageio.ImageIO;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Checks a written experiment report: the JSON reads back, every image the markdown links is a decodable PNG. */
final class ReportCheck {
    private static final Pattern IMAGE = Pattern.compile("!\\[[^]]*]\\(([^)]+)\\)");

    private ReportCheck() {
    }

    /** @return the markdown text, for the caller's own content checks */
    static String check(Path json, Path md, List<String> expectedImages) throws IOException {
        assertTrue(ReportFiles.json().readTree(json.toFile()).isObject(), "json does not read back: " + json);
        assertEquals(json.resolveSibling(json.getFileName().toString().replace(".json", ".md")), md);
        String text = Files.readString(md);
        List<String> linked = new ArrayList<>();
        Matcher m = IMAGE.matcher(text);
        while (m.find()) {
            linked.add(m.group(1));
            BufferedImage img = ImageIO.read(md.resolveSibling(m.group(1)).toFile());
            assertNotNull(img, "not a readable image: " + m.group(1));
            assertTrue(img.getWidth() >= 200 && img.getHeight() >= 100, m.group(1) + " is " + img.getWidth() + "x" + img.getHeight());
        }
        assertEquals(expectedImages, linked, "images linked from " + md);
        return text;
    }
}
