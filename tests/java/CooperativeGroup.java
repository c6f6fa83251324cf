// A consumer group of the Java client with the cooperative-sticky assignor: three members join one
// by one and two leave, while records keep arriving; every record is read, partitions move only
// incrementally (a member keeps what it still owns across a rebalance), and a new member after
// everyone left resumes from the committed offsets.
// Usage: java -cp 'jars/*' CooperativeGroup.java BOOTSTRAP
import java.time.Duration;
import java.util.*;
import java.util.concurrent.*;
import java.util.concurrent.atomic.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.*;

public class CooperativeGroup {
    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    static String bootstrap;
    static final String TOPIC = "coop-" + System.nanoTime();
    static final String GROUP = TOPIC + "-group";
    static final Set<String> seen = ConcurrentHashMap.newKeySet();
    static final AtomicInteger reads = new AtomicInteger();
    static final List<String> problems = Collections.synchronizedList(new ArrayList<>());

    /** A member polling on its own thread until told to stop; it commits synchronously on revoke and every poll. */
    static class Member implements Runnable {
        final String name;
        final AtomicBoolean running = new AtomicBoolean(true);
        final Set<TopicPartition> owned = ConcurrentHashMap.newKeySet();
        final Thread thread;
        volatile int revokedWhileOwningOthers = 0;

        Member(String name) {
            this.name = name;
            this.thread = new Thread(this, name);
            thread.setDaemon(true);
            thread.start();
        }

        public void run() {
            Properties c = new Properties();
            c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            c.put(ConsumerConfig.GROUP_ID_CONFIG, GROUP);
            c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
            c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
            c.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, CooperativeStickyAssignor.class.getName());
            c.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "10000");
            c.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "500");
            try (KafkaConsumer<String, String> consumer =
                    new KafkaConsumer<>(c, new StringDeserializer(), new StringDeserializer())) {
                consumer.subscribe(List.of(TOPIC), new ConsumerRebalanceListener() {
                    public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
                        consumer.commitSync();
                        owned.removeAll(partitions);
                    }

                    public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
                        for (TopicPartition tp : partitions) {
                            if (owned.contains(tp)) problems.add(name + " assigned " + tp + " it owned");
                        }
                        owned.addAll(partitions);
                    }

                    public void onPartitionsLost(Collection<TopicPartition> partitions) {
                        problems.add(name + " lost " + partitions);
                        owned.removeAll(partitions);
                    }
                });
                while (running.get()) {
                    for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(100))) {
                        if (!seen.add(r.value())) problems.add(name + " read " + r.value() + " twice");
                        reads.incrementAndGet();
                    }
                    try {
                        consumer.commitSync();
                    } catch (org.apache.kafka.common.errors.RebalanceInProgressException e) {
                        // The next poll completes the rebalance; what was read is committed then.
                    }
                }
            } catch (Exception e) {
                problems.add(name + ": " + e);
            }
        }

        void leave() throws InterruptedException {
            running.set(false);
            thread.join(30_000);
        }
    }

    static void waitFor(String what, java.util.function.BooleanSupplier cond) throws InterruptedException {
        long deadline = System.currentTimeMillis() + 30_000;
        while (!cond.getAsBoolean()) {
            check(System.currentTimeMillis() < deadline, "timed out waiting for " + what + "; problems: " + problems);
            Thread.sleep(50);
        }
    }

    public static void main(String[] args) throws Exception {
        bootstrap = args[0];
        Properties ap = new Properties();
        ap.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        Admin admin = Admin.create(ap);
        admin.createTopics(List.of(new NewTopic(TOPIC, 6, (short) 1))).all().get();
        Properties pp = new Properties();
        pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        KafkaProducer<String, String> producer = new KafkaProducer<>(pp, new StringSerializer(), new StringSerializer());
        AtomicInteger produced = new AtomicInteger();
        Runnable produce = () -> {
            for (int i = 0; i < 60; i++) {
                int n = produced.getAndIncrement();
                producer.send(new ProducerRecord<>(TOPIC, n % 6, "k" + n, "v" + n));
            }
            producer.flush();
        };

        produce.run();
        Member a = new Member("a");
        waitFor("a owning all six partitions", () -> a.owned.size() == 6);
        produce.run();
        Member b = new Member("b");
        waitFor("a and b sharing six partitions", () -> a.owned.size() == 3 && b.owned.size() == 3);
        Set<TopicPartition> aKept = new HashSet<>(a.owned);
        produce.run();
        Member c = new Member("c");
        waitFor("three members with two partitions each",
                () -> a.owned.size() == 2 && b.owned.size() == 2 && c.owned.size() == 2);
        check(aKept.containsAll(a.owned), "sticky: a kept partitions it owned " + aKept + " -> " + a.owned);
        produce.run();
        waitFor("every record read", () -> seen.size() == produced.get());
        a.leave();
        waitFor("b and c sharing six partitions", () -> b.owned.size() + c.owned.size() == 6);
        produce.run();
        b.leave();
        waitFor("c owning all six", () -> c.owned.size() == 6);
        produce.run();
        waitFor("every record read", () -> seen.size() == produced.get());
        c.leave();
        check(problems.isEmpty(), "problems: " + problems);
        check(reads.get() == produced.get(), reads.get() + " reads of " + produced.get() + " records");

        // Everyone left with offsets committed: the group is empty, its committed offsets sum to
        // what was produced, and a new member reads only what is new.
        Map<TopicPartition, OffsetAndMetadata> committed =
                admin.listConsumerGroupOffsets(GROUP).partitionsToOffsetAndMetadata().get();
        long sum = committed.values().stream().mapToLong(OffsetAndMetadata::offset).sum();
        check(sum == produced.get(), "committed offsets sum to " + sum + ", produced " + produced.get());
        ConsumerGroupDescription group = admin.describeConsumerGroups(List.of(GROUP)).all().get().get(GROUP);
        check(group.members().isEmpty(), "the group is empty: " + group);
        int before = produced.get();
        produce.run();
        Member d = new Member("d");
        waitFor("the new records read", () -> seen.size() == produced.get());
        Thread.sleep(500);
        d.leave();
        check(reads.get() == produced.get(), "resumed: " + (reads.get() - before) + " new reads");
        check(problems.isEmpty(), "problems: " + problems);
        producer.close();
        admin.close();
        System.out.println("ok");
    }
}
