package dev.curvewatch.cli;

import picocli.CommandLine;

/** The version printed by {@code --version}, from the jar manifest when packaged. */
final class CodeVersion implements CommandLine.IVersionProvider {
    static String get() {
        String v = Curvewatch.class.getPackage().getImplementationVersion();
        return v != null ? v : "0.1.0-SNAPSHOT";
    }

    @Override
    public String[] getVersion() {
        return new String[]{"curvewatch " + get()};
    }
}
