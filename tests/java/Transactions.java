// The Java client's transactions: a consume-transform-produce loop commits its input offsets with
// sendOffsetsToTransaction; an aborted transaction is never seen by a read_committed consumer (a
// read_uncommitted one sees it); a second producer with the same transactional.id fences the
// first; the group resumes from the offsets the transactions committed.
// Usage: java -cp 'jars/*' Transactions.java BOOTSTRAP
import java.time.Duration;
import java.util.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.common.serialization.*;

public class Transactions {
    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    static String bootstrap;

    static KafkaProducer<String, String> producer(String txnId) {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, txnId);
        p.put(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, "30000");
        return new KafkaProducer<>(p, new StringSerializer(), new StringSerializer());
    }

    static KafkaConsumer<String, String> consumer(String group, String isolation) {
        Properties c = new Properties();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        if (group != null) c.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        c.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation);
        return new KafkaConsumer<>(c, new StringDeserializer(), new StringDeserializer());
    }

    static List<String> readAll(String topic, String isolation, int partitions, int expect) {
        List<String> out = new ArrayList<>();
        try (KafkaConsumer<String, String> c = consumer(null, isolation)) {
            List<TopicPartition> tps = new ArrayList<>();
            for (int p = 0; p < partitions; p++) tps.add(new TopicPartition(topic, p));
            c.assign(tps);
            c.seekToBeginning(tps);
            long deadline = System.currentTimeMillis() + 20_000;
            // Read to the end offsets (the last stable offset for read_committed).
            while (System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) out.add(r.value());
                boolean atEnd = true;
                Map<TopicPartition, Long> ends = c.endOffsets(tps);
                for (TopicPartition tp : tps) if (c.position(tp) < ends.get(tp)) atEnd = false;
                if (atEnd && out.size() >= expect) break;
            }
        }
        Collections.sort(out);
        return out;
    }

    public static void main(String[] args) throws Exception {
        bootstrap = args[0];
        Properties ap = new Properties();
        ap.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (Admin admin = Admin.create(ap)) {
            admin.createTopics(List.of(new NewTopic("txn-in", 2, (short) 1), new NewTopic("txn-out", 2, (short) 1)))
                    .all().get();
        }
        try (KafkaProducer<String, String> p = producer("txn-loader")) {
            p.initTransactions();
            p.beginTransaction();
            for (int i = 0; i < 100; i++) p.send(new ProducerRecord<>("txn-in", i % 2, "k" + i, "in-" + i));
            p.commitTransaction();
        }
        // Consume-transform-produce: the first half committed, then one transaction aborted.
        int copied = 0;
        try (KafkaProducer<String, String> p = producer("txn-copier");
                KafkaConsumer<String, String> c = consumer("copiers", "read_committed")) {
            p.initTransactions();
            c.subscribe(List.of("txn-in"));
            long deadline = System.currentTimeMillis() + 30_000;
            while (copied < 50 && System.currentTimeMillis() < deadline) {
                ConsumerRecords<String, String> records = c.poll(Duration.ofMillis(200));
                if (records.isEmpty()) continue;
                p.beginTransaction();
                Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
                for (ConsumerRecord<String, String> r : records) {
                    if (copied == 50) break;
                    p.send(new ProducerRecord<>("txn-out", r.partition(), r.key(), r.value().replace("in-", "out-")));
                    offsets.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
                    copied++;
                }
                p.sendOffsetsToTransaction(offsets, c.groupMetadata());
                p.commitTransaction();
            }
            check(copied == 50, "copied " + copied);
            p.beginTransaction();
            for (int i = 0; i < 10; i++) p.send(new ProducerRecord<>("txn-out", i % 2, "aborted", "aborted-" + i));
            p.flush();
            p.abortTransaction();
        }
        List<String> committed = readAll("txn-out", "read_committed", 2, 50);
        List<String> all = readAll("txn-out", "read_uncommitted", 2, 60);
        check(committed.size() == 50 && committed.stream().allMatch(v -> v.startsWith("out-")),
                "read_committed sees the 50 committed records only: " + committed.size());
        check(all.size() == 60, "read_uncommitted sees the aborted records too: " + all.size());

        // The group resumes from the offsets its transactions committed: the second copier
        // copies the other 50, and no record twice.
        try (KafkaProducer<String, String> p = producer("txn-copier");
                KafkaConsumer<String, String> c = consumer("copiers", "read_committed")) {
            p.initTransactions();
            c.subscribe(List.of("txn-in"));
            int more = 0;
            long deadline = System.currentTimeMillis() + 30_000;
            while (more < 50 && System.currentTimeMillis() < deadline) {
                ConsumerRecords<String, String> records = c.poll(Duration.ofMillis(200));
                if (records.isEmpty()) continue;
                p.beginTransaction();
                Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
                for (ConsumerRecord<String, String> r : records) {
                    p.send(new ProducerRecord<>("txn-out", r.partition(), r.key(), r.value().replace("in-", "out-")));
                    offsets.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
                    more++;
                }
                p.sendOffsetsToTransaction(offsets, c.groupMetadata());
                p.commitTransaction();
            }
            check(more == 50, "the second copier copied " + more);
        }
        committed = readAll("txn-out", "read_committed", 2, 100);
        check(committed.size() == 100 && new HashSet<>(committed).size() == 100,
                "every input copied once: " + committed.size());

        // Fencing: a new producer with the same id fences the old one.
        KafkaProducer<String, String> old = producer("txn-fenced");
        old.initTransactions();
        old.beginTransaction();
        old.send(new ProducerRecord<>("txn-out", 0, "f", "fenced")).get();
        try (KafkaProducer<String, String> fresh = producer("txn-fenced")) {
            fresh.initTransactions();
            fresh.beginTransaction();
            fresh.send(new ProducerRecord<>("txn-out", 1, "f", "out-fresh"));
            fresh.commitTransaction();
        }
        boolean fenced = false;
        try {
            old.send(new ProducerRecord<>("txn-out", 0, "f", "late")).get();
            old.commitTransaction();
        } catch (Exception e) {
            Throwable t = e;
            while (t != null) {
                if (t instanceof ProducerFencedException || t.getClass().getSimpleName().contains("Fenced")
                        || t.getClass().getSimpleName().contains("InvalidProducerEpoch")) fenced = true;
                t = t.getCause();
            }
            if (!fenced) throw e;
        } finally {
            old.close(Duration.ZERO);
        }
        check(fenced, "the old producer was fenced");
        committed = readAll("txn-out", "read_committed", 2, 101);
        check(committed.size() == 101 && !committed.contains("fenced") && !committed.contains("late"),
                "the fenced producer's records are never committed: " + committed);
        System.out.println("ok");
    }
}
