// Two Kafka Streams applications (Kafka's own Java library) under exactly_once_v2: a word count,
// and clicks joined with a table of users, counted per region in one-minute windows. Each runs
// until its output holds every expected update; the program prints the final value per key of
// each output (as read by a read_committed consumer), sorted, then "ok", so runs against two
// brokers can be compared line for line. (A grace of an hour: the repartitioned clicks of one
// region come from three partitions, so no window closes before all of them are counted.)
// Usage: java -cp 'jars/*' StreamsApps.java BOOTSTRAP STATE_DIR
import java.time.Duration;
import java.util.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.*;
import org.apache.kafka.streams.*;
import org.apache.kafka.streams.kstream.*;

public class StreamsApps {
    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    static String bootstrap;
    static String stateDir;

    static Properties streamsConfig(String appId) {
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, "100");
        p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir);
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, "2");
        p.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.String().getClass());
        p.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.String().getClass());
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
        return p;
    }

    /** The last value per key of `topic` up to its end now, committed records only. */
    static TreeMap<String, Long> finalValues(String topic) {
        Properties c = new Properties();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        c.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        TreeMap<String, Long> last = new TreeMap<>();
        try (KafkaConsumer<String, Long> consumer =
                new KafkaConsumer<>(c, new StringDeserializer(), new LongDeserializer())) {
            List<TopicPartition> tps = new ArrayList<>();
            consumer.partitionsFor(topic).forEach(p -> tps.add(new TopicPartition(topic, p.partition())));
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            Map<TopicPartition, Long> ends = consumer.endOffsets(tps);
            long deadline = System.currentTimeMillis() + 30_000;
            while (tps.stream().anyMatch(tp -> consumer.position(tp) < ends.get(tp))) {
                check(System.currentTimeMillis() < deadline, topic + ": not read to its end " + ends);
                for (ConsumerRecord<String, Long> r : consumer.poll(Duration.ofMillis(200))) last.put(r.key(), r.value());
            }
        }
        return last;
    }

    /** The final values of `topic` once they sum to `total` (each input counted once). */
    static TreeMap<String, Long> awaitTotal(String topic, long total) throws InterruptedException {
        long deadline = System.currentTimeMillis() + 120_000;
        while (true) {
            TreeMap<String, Long> values = finalValues(topic);
            long sum = values.values().stream().mapToLong(Long::longValue).sum();
            if (sum == total) return values;
            check(sum < total && System.currentTimeMillis() < deadline, topic + ": " + values + " sum to " + sum);
            Thread.sleep(300);
        }
    }

    public static void main(String[] args) throws Exception {
        bootstrap = args[0];
        stateDir = args[1];
        Properties ap = new Properties();
        ap.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (Admin admin = Admin.create(ap)) {
            admin.createTopics(List.of(
                    new NewTopic("ks-lines", 3, (short) 1), new NewTopic("ks-counts", 3, (short) 1),
                    new NewTopic("ks-clicks", 3, (short) 1), new NewTopic("ks-users", 3, (short) 1),
                    new NewTopic("ks-region-counts", 3, (short) 1))).all().get();
        }
        Properties pp = new Properties();
        pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        // An hour ago on a whole minute: recent enough that retention (seven days) keeps the records,
        // and the same window boundaries relative to t0 on every run.
        long t0 = (System.currentTimeMillis() / 60_000 - 60) * 60_000;
        try (KafkaProducer<String, String> p = new KafkaProducer<>(pp, new StringSerializer(), new StringSerializer())) {
            String[] words = {"red", "green", "blue", "red", "amber", "green", "red"};
            for (int i = 0; i < 300; i++) {
                String line = words[i % words.length] + " " + words[(i * 3) % words.length];
                p.send(new ProducerRecord<>("ks-lines", null, t0 + i, "line-" + i, line));
            }
            // The table first (earlier timestamps), then clicks over three minutes.
            for (int u = 0; u < 10; u++) {
                p.send(new ProducerRecord<>("ks-users", null, t0, "user-" + u, u % 3 == 0 ? "eu" : u % 3 == 1 ? "us" : "apac"));
            }
            p.flush();
            for (int i = 0; i < 600; i++) {
                p.send(new ProducerRecord<>("ks-clicks", null, t0 + 1_000 + i * 300L, "user-" + (i % 10), "/page/" + (i % 4)));
            }
            p.flush();
        }

        StreamsBuilder wc = new StreamsBuilder();
        wc.<String, String>stream("ks-lines")
                .flatMapValues(line -> Arrays.asList(line.split(" ")))
                .groupBy((k, w) -> w)
                .count(Materialized.as("word-counts"))
                .toStream()
                .to("ks-counts", Produced.with(Serdes.String(), Serdes.Long()));

        StreamsBuilder clicks = new StreamsBuilder();
        KTable<String, String> users = clicks.table("ks-users");
        clicks.<String, String>stream("ks-clicks")
                .join(users, (page, region) -> region)
                .groupBy((user, region) -> region)
                .windowedBy(TimeWindows.ofSizeAndGrace(Duration.ofMinutes(1), Duration.ofHours(1)))
                .count(Materialized.as("region-window-counts"))
                .toStream((w, n) -> w.key() + "@" + (w.window().start() - t0))
                .to("ks-region-counts", Produced.with(Serdes.String(), Serdes.Long()));

        KafkaStreams a = new KafkaStreams(wc.build(), streamsConfig("ks-word-count"));
        KafkaStreams b = new KafkaStreams(clicks.build(), streamsConfig("ks-region-clicks"));
        a.start();
        b.start();
        try {
            // 600 words in, 600 clicks in: the last values sum to that, whatever the caching.
            TreeMap<String, Long> counts = awaitTotal("ks-counts", 600);
            TreeMap<String, Long> windows = awaitTotal("ks-region-counts", 600);
            counts.forEach((k, v) -> System.out.println("ks-counts " + k + " " + v));
            windows.forEach((k, v) -> System.out.println("ks-region-counts " + k + " " + v));
        } finally {
            a.close(Duration.ofSeconds(30));
            b.close(Duration.ofSeconds(30));
        }
        System.out.println("ok");
    }
}
