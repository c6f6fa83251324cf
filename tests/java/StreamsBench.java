// Kafka Streams in the shape of its SimpleBenchmark, for the side-by-side benchmark
// (benches/vs_kafka.rs): N records (8-byte keys over a million values, 100-byte values, 3
// partitions) are loaded, then one phase runs with one stream thread, at least once, until it has
// read every input record: passthrough (source to sink), count (a RocksDB store with Kafka
// Streams' default 10 MiB cache) or join (the stream joined with a table of every key, loaded
// first and counted in the input). Prints "PHASE RECORDS_PER_SEC CPU_SECONDS" (this JVM's CPU
// from the phase's start), then "ok".
// Usage: java -cp 'jars/*' StreamsBench.java BOOTSTRAP PHASE RECORDS STATE_DIR
import java.lang.management.ManagementFactory;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.*;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.serialization.*;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.*;
import org.apache.kafka.streams.kstream.*;

public class StreamsBench {
    static final long KEY_SPACE = 1_000_000;

    static byte[] key(long i) {
        return ByteBuffer.allocate(8).putLong(Long.remainderUnsigned(i * 0x9E3779B97F4A7C15L, KEY_SPACE)).array();
    }

    static byte[] value(long i) {
        byte[] v = new byte[100];
        Arrays.fill(v, (byte) 'x');
        ByteBuffer.wrap(v).putLong(i);
        return v;
    }

    static long cpuNanos() {
        return ((com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean()).getProcessCpuTime();
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], phase = args[1], stateDir = args[3];
        long n = Long.parseLong(args[2]);
        String in = phase + "-input", table = phase + "-table", out = phase + "-output";
        Properties ap = new Properties();
        ap.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (Admin admin = Admin.create(ap)) {
            List<NewTopic> topics = new ArrayList<>(List.of(new NewTopic(in, 3, (short) 1), new NewTopic(out, 3, (short) 1)));
            if (phase.equals("join")) topics.add(new NewTopic(table, 3, (short) 1));
            admin.createTopics(topics).all().get();
        }
        Properties pp = new Properties();
        pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        pp.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        pp.put(ProducerConfig.BATCH_SIZE_CONFIG, "262144");
        long base = System.currentTimeMillis() - 50_000_000L;
        long expected = n;
        try (KafkaProducer<byte[], byte[]> p = new KafkaProducer<>(pp, new ByteArraySerializer(), new ByteArraySerializer())) {
            if (phase.equals("join")) {
                for (long k = 0; k < KEY_SPACE; k++) p.send(new ProducerRecord<>(table, null, base, ByteBuffer.allocate(8).putLong(k).array(), value(k)));
                expected += KEY_SPACE;
            }
            for (long i = 0; i < n; i++) p.send(new ProducerRecord<>(in, null, base + i, key(i), value(i)));
            p.flush();
        }

        AtomicLong seen = new AtomicLong();
        StreamsBuilder b = new StreamsBuilder();
        Consumed<byte[], byte[]> bytes = Consumed.with(Serdes.ByteArray(), Serdes.ByteArray());
        KStream<byte[], byte[]> input = b.stream(in, bytes).peek((k, v) -> seen.incrementAndGet());
        switch (phase) {
            case "passthrough" -> input.to(out, Produced.with(Serdes.ByteArray(), Serdes.ByteArray()));
            case "count" -> input.groupByKey(Grouped.with(Serdes.ByteArray(), Serdes.ByteArray()))
                    .count(Materialized.<byte[], Long, org.apache.kafka.streams.state.KeyValueStore<Bytes, byte[]>>as("counts"))
                    .toStream()
                    .to(out, Produced.with(Serdes.ByteArray(), Serdes.Long()));
            case "join" -> {
                KTable<byte[], byte[]> t = b.table(table, bytes);
                // The table's records count as input too, as in Freshet's run.
                t.toStream().foreach((k, v) -> seen.incrementAndGet());
                input.join(t, (v, tv) -> {
                    byte[] joined = new byte[16];
                    System.arraycopy(v, 0, joined, 0, 8);
                    System.arraycopy(tv, 0, joined, 8, 8);
                    return joined;
                }, Joined.with(Serdes.ByteArray(), Serdes.ByteArray(), Serdes.ByteArray()))
                        .to(out, Produced.with(Serdes.ByteArray(), Serdes.ByteArray()));
            }
            default -> throw new IllegalArgumentException(phase);
        }
        Properties sp = new Properties();
        sp.put(StreamsConfig.APPLICATION_ID_CONFIG, "bench-" + phase);
        sp.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        sp.put(StreamsConfig.STATE_DIR_CONFIG, stateDir);
        sp.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, "1");
        sp.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, "10000");
        sp.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");
        KafkaStreams streams = new KafkaStreams(b.build(), sp);
        long cpu0 = cpuNanos();
        long t0 = System.nanoTime();
        streams.start();
        long last = 0, moved = System.nanoTime();
        while (seen.get() < expected) {
            Thread.sleep(2);
            long s = seen.get();
            if (s != last) {
                last = s;
                moved = System.nanoTime();
            }
            if (System.nanoTime() - moved > 60_000_000_000L) throw new AssertionError(phase + ": stuck at " + s + " of " + expected);
        }
        double secs = (System.nanoTime() - t0) / 1e9;
        double cpu = (cpuNanos() - cpu0) / 1e9;
        streams.close(Duration.ofSeconds(30));
        System.out.printf("%s %.0f %.3f%n", phase, expected / secs, cpu);
        System.out.println("ok");
    }
}
