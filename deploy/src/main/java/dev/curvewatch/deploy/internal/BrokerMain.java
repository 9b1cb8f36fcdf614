package dev.curvewatch.deploy.internal;

/**
 * Entry point of the broker child JVM. It runs Kafka's own main, and exits when its parent's end
 * of stdin closes, so a broker never outlives a killed launcher or test JVM.
 */
public final class BrokerMain {
    private BrokerMain() {
    }

    public static void main(String[] args) throws Exception {
        Thread watchdog = new Thread(() -> {
            try {
                while (System.in.read() >= 0) {
                    // the parent never writes; EOF means it is gone
                }
            } catch (java.io.IOException ignored) {
                // same as EOF
            }
            System.err.println("curvewatch broker: parent process gone, shutting down");
            System.exit(0); // runs Kafka's shutdown hook: a clean stop
        }, "parent-watchdog");
        watchdog.setDaemon(true);
        watchdog.start();
        kafka.Kafka.main(args);
    }
}
