// The Java client's idempotent producer with every codec: keys, null values, repeated headers and
// timestamps come back from a consumer exactly as sent, in order, each once.
// Usage: java -cp 'jars/*' ProducerCodecs.java BOOTSTRAP
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.serialization.*;

public class ProducerCodecs {
    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        String[] codecs = {"none", "gzip", "snappy", "lz4", "zstd"};
        Properties ap = new Properties();
        ap.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (Admin admin = Admin.create(ap)) {
            List<NewTopic> topics = new ArrayList<>();
            for (String c : codecs) topics.add(new NewTopic("java-" + c, 2, (short) 1));
            admin.createTopics(topics).all().get();
        }
        for (String codec : codecs) {
            String topic = "java-" + codec;
            Properties pp = new Properties();
            pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            pp.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
            pp.put(ProducerConfig.ACKS_CONFIG, "all");
            pp.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec);
            pp.put(ProducerConfig.LINGER_MS_CONFIG, "5");
            List<ProducerRecord<byte[], byte[]>> sent = new ArrayList<>();
            // An hour ago: within retention (seven days), so the broker keeps the records.
            long t0 = System.currentTimeMillis() - 3_600_000;
            try (KafkaProducer<byte[], byte[]> producer =
                    new KafkaProducer<>(pp, new ByteArraySerializer(), new ByteArraySerializer())) {
                for (int i = 0; i < 2000; i++) {
                    byte[] key = i % 7 == 0 ? null : ("key-" + (i % 50)).getBytes(StandardCharsets.UTF_8);
                    byte[] value = i % 11 == 0 ? null : ("value " + i + " " + "x".repeat(i % 300)).getBytes(StandardCharsets.UTF_8);
                    List<Header> headers = new ArrayList<>();
                    if (i % 3 == 0) {
                        headers.add(new RecordHeader("h", ("a" + i).getBytes(StandardCharsets.UTF_8)));
                        headers.add(new RecordHeader("h", ("b" + i).getBytes(StandardCharsets.UTF_8)));
                        headers.add(new RecordHeader("empty", new byte[0]));
                        headers.add(new RecordHeader("null", null));
                    }
                    ProducerRecord<byte[], byte[]> r = new ProducerRecord<>(topic, i % 2, t0 + i, key, value, headers);
                    sent.add(r);
                    producer.send(r);
                }
                producer.flush();
            }
            Properties cp = new Properties();
            cp.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            cp.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
            cp.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
            List<ConsumerRecord<byte[], byte[]>> got = new ArrayList<>();
            try (KafkaConsumer<byte[], byte[]> consumer =
                    new KafkaConsumer<>(cp, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
                consumer.assign(List.of(new TopicPartition(topic, 0), new TopicPartition(topic, 1)));
                long deadline = System.currentTimeMillis() + 30_000;
                while (got.size() < sent.size() && System.currentTimeMillis() < deadline) {
                    for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(200))) got.add(r);
                }
            }
            check(got.size() == sent.size(), codec + ": " + got.size() + " of " + sent.size() + " records read");
            for (int p = 0; p < 2; p++) {
                final int part = p;
                List<ProducerRecord<byte[], byte[]>> s = sent.stream().filter(r -> r.partition() == part).toList();
                List<ConsumerRecord<byte[], byte[]>> g = got.stream().filter(r -> r.partition() == part).toList();
                check(s.size() == g.size(), codec + " partition " + p + " count");
                for (int i = 0; i < s.size(); i++) {
                    ProducerRecord<byte[], byte[]> a = s.get(i);
                    ConsumerRecord<byte[], byte[]> b = g.get(i);
                    String at = codec + " partition " + p + " record " + i;
                    check(b.offset() == i, at + ": offset " + b.offset());
                    check(Arrays.equals(a.key(), b.key()), at + ": key");
                    check(Arrays.equals(a.value(), b.value()), at + ": value");
                    check(a.timestamp() == b.timestamp(), at + ": timestamp " + b.timestamp());
                    Header[] ah = a.headers().toArray();
                    Header[] bh = b.headers().toArray();
                    check(ah.length == bh.length, at + ": " + bh.length + " headers");
                    for (int h = 0; h < ah.length; h++) {
                        check(ah[h].key().equals(bh[h].key()), at + ": header key " + h);
                        check(Arrays.equals(ah[h].value(), bh[h].value()), at + ": header value " + h);
                    }
                }
            }
            System.out.println(codec + ": " + got.size() + " records intact");
        }
        System.out.println("ok");
    }
}
