package dev.curvewatch.it;

import dev.curvewatch.cli.Curvewatch;
import dev.curvewatch.schemas.KafkaClientSettings;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@code curvewatch broker} in its own process, used from this (second) process, then Ctrl-C. */
@Tag("integration")
class BrokerCommandIT {
    @Test
    void brokerCommandServesAnotherProcessAndStopsOnSigterm(@TempDir Path dir) throws Exception {
        Process broker = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-cp", System.getProperty("java.class.path"), Curvewatch.class.getName(),
                "broker", "--data-dir", dir.resolve("b").toString())
                .redirectErrorStream(true).start();
        try {
            BufferedReader out = new BufferedReader(new InputStreamReader(broker.getInputStream(), StandardCharsets.UTF_8));
            String bootstrap = null;
            for (String line; (line = out.readLine()) != null; ) {
                if (line.startsWith("bootstrap=")) {
                    bootstrap = line.substring("bootstrap=".length()).strip();
                    break;
                }
            }
            assertNotNull(bootstrap, "broker printed no bootstrap address");

            String topic = "curvewatch.runs";
            Properties pp = KafkaClientSettings.forBootstrap(bootstrap);
            pp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
            pp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
            try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp)) {
                producer.send(new ProducerRecord<>(topic, "k", "hello from another process")).get(30, TimeUnit.SECONDS);
            }
            Properties cp = KafkaClientSettings.forBootstrap(bootstrap);
            cp.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
            cp.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
            List<String> values = new ArrayList<>();
            try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(cp)) {
                TopicPartition tp = new TopicPartition(topic, 0);
                consumer.assign(List.of(tp));
                consumer.seekToBeginning(List.of(tp));
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
                while (values.isEmpty() && System.nanoTime() < deadline) {
                    consumer.poll(Duration.ofMillis(200)).forEach(r -> values.add(r.value()));
                }
            }
            assertEquals(List.of("hello from another process"), values);

            // the broker JVM is a child of the launcher, in a session of its own: a terminal's Ctrl-C
            // reaches only the launcher, which stops the broker last
            List<ProcessHandle> children = broker.descendants().toList();
            assertEquals(1, children.size(), "one broker child JVM: " + children);
            assertNotEquals(session(broker.pid()), session(children.get(0).pid()), "broker child in its own session");

            broker.destroy(); // SIGTERM, as Ctrl-C
            assertTrue(broker.waitFor(60, TimeUnit.SECONDS), "broker did not stop on SIGTERM");
            assertEquals(0, broker.exitValue() == 143 ? 0 : broker.exitValue(), "exit code " + broker.exitValue());
            children.get(0).onExit().get(30, TimeUnit.SECONDS); // no broker left behind
        } finally {
            broker.destroyForcibly();
        }
    }

    /** The session id of a process (field 6 of /proc/<pid>/stat, after the command name in parentheses). */
    private static long session(long pid) throws java.io.IOException {
        String stat = java.nio.file.Files.readString(Path.of("/proc", Long.toString(pid), "stat"));
        String[] f = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
        return Long.parseLong(f[3]); // state ppid pgrp session
    }
}
