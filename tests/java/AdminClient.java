// The Java Admin client: create, describe, alter configs (incremental, list configs too), create
// partitions, list offsets (earliest, latest, by time), delete records, describe, list and delete
// groups, delete topics; and the errors a wrong request gets.
// Usage: java -cp 'jars/*' AdminClient.java BOOTSTRAP
import java.time.Duration;
import java.util.*;
import java.util.concurrent.ExecutionException;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.*;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.*;
import org.apache.kafka.common.serialization.*;

public class AdminClient {
    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    static Class<?> failure(KafkaFuture<?> f) throws InterruptedException {
        try {
            f.get();
            return null;
        } catch (ExecutionException e) {
            return e.getCause().getClass();
        }
    }

    // The topic's config once `settled` holds, within 10 s: Kafka's KRaft broker applies an alter
    // from its metadata log a moment after answering it (Freshet before answering).
    static Config describeWhen(Admin admin, ConfigResource res, java.util.function.Predicate<Config> settled)
            throws Exception {
        long deadline = System.nanoTime() + 10_000_000_000L;
        while (true) {
            Config config = admin.describeConfigs(List.of(res)).all().get().get(res);
            if (settled.test(config) || System.nanoTime() > deadline) return config;
            Thread.sleep(100);
        }
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        String t = "admin-" + System.nanoTime();
        Properties ap = new Properties();
        ap.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (Admin admin = Admin.create(ap)) {
            // Cluster.
            DescribeClusterResult cluster = admin.describeCluster();
            check(cluster.nodes().get().size() == 1, "one broker: " + cluster.nodes().get());
            check(cluster.clusterId().get() != null, "a cluster id");
            check(cluster.controller().get() != null, "a controller");

            // Create, with configs; a second create fails with TopicExists; a bad config is refused.
            admin.createTopics(List.of(new NewTopic(t, 2, (short) 1)
                    .configs(Map.of("cleanup.policy", "compact", "retention.ms", "3600000")))).all().get();
            check(failure(admin.createTopics(List.of(new NewTopic(t, 1, (short) 1))).all()) == TopicExistsException.class,
                    "creating it again fails with TopicExists");
            check(failure(admin.createTopics(List.of(new NewTopic(t + "-bad", 1, (short) 1)
                    .configs(Map.of("retention.ms", "soon")))).all()) == InvalidConfigurationException.class,
                    "a bad config value is refused");
            check(!admin.listTopics().names().get().contains(t + "-bad"), "the refused topic was not created");
            check(admin.listTopics().names().get().contains(t), "listed");

            // Describe.
            TopicDescription d = admin.describeTopics(List.of(t)).allTopicNames().get().get(t);
            check(d.partitions().size() == 2, "two partitions");
            check(d.topicId() != null && !d.topicId().equals(Uuid.ZERO_UUID), "a topic id");
            check(failure(admin.describeTopics(List.of(t + "-none")).allTopicNames()) == UnknownTopicOrPartitionException.class,
                    "an unknown topic is UnknownTopicOrPartition");

            // Configs: describe, alter incrementally (SET, DELETE, APPEND and SUBTRACT on a list).
            ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, t);
            Config config = admin.describeConfigs(List.of(res)).all().get().get(res);
            check(config.get("cleanup.policy").value().equals("compact"), "cleanup.policy " + config.get("cleanup.policy"));
            check(config.get("retention.ms").value().equals("3600000"), "retention.ms");
            check(config.get("segment.bytes") != null, "defaults are described too");
            admin.incrementalAlterConfigs(Map.of(res, List.of(
                    new AlterConfigOp(new ConfigEntry("retention.ms", "7200000"), AlterConfigOp.OpType.SET),
                    new AlterConfigOp(new ConfigEntry("cleanup.policy", "delete"), AlterConfigOp.OpType.APPEND))))
                    .all().get();
            config = describeWhen(admin, res, c -> c.get("retention.ms").value().equals("7200000"));
            check(config.get("retention.ms").value().equals("7200000"), "SET: " + config.get("retention.ms"));
            check(config.get("cleanup.policy").value().equals("compact,delete"), "APPEND: " + config.get("cleanup.policy"));
            admin.incrementalAlterConfigs(Map.of(res, List.of(
                    new AlterConfigOp(new ConfigEntry("cleanup.policy", "compact"), AlterConfigOp.OpType.SUBTRACT),
                    new AlterConfigOp(new ConfigEntry("retention.ms", ""), AlterConfigOp.OpType.DELETE))))
                    .all().get();
            config = describeWhen(admin, res, c -> c.get("retention.ms").isDefault());
            check(config.get("cleanup.policy").value().equals("delete"), "SUBTRACT: " + config.get("cleanup.policy"));
            check(config.get("retention.ms").isDefault(), "DELETE: " + config.get("retention.ms"));
            check(failure(admin.incrementalAlterConfigs(Map.of(res, List.of(
                    new AlterConfigOp(new ConfigEntry("retention.ms", "never"), AlterConfigOp.OpType.SET)))).all())
                    == InvalidConfigurationException.class, "a bad value is refused");

            // Produce, then offsets: earliest, latest, by time; delete records. The records carry
            // timestamps of 1970, so retention is turned off first: a broker's retention pass
            // (Kafka's runs on its own schedule) would otherwise delete them under the checks.
            admin.incrementalAlterConfigs(Map.of(res, List.of(
                    new AlterConfigOp(new ConfigEntry("retention.ms", "-1"), AlterConfigOp.OpType.SET)))).all().get();
            describeWhen(admin, res, c -> c.get("retention.ms").value().equals("-1"));
            Properties pp = new Properties();
            pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            try (KafkaProducer<String, String> p = new KafkaProducer<>(pp, new StringSerializer(), new StringSerializer())) {
                for (int i = 0; i < 10; i++) p.send(new ProducerRecord<>(t, 0, 1_000_000L * (i + 1), "k" + i, "v" + i));
                p.flush();
            }
            TopicPartition tp0 = new TopicPartition(t, 0);
            check(admin.listOffsets(Map.of(tp0, OffsetSpec.earliest())).all().get().get(tp0).offset() == 0, "earliest");
            check(admin.listOffsets(Map.of(tp0, OffsetSpec.latest())).all().get().get(tp0).offset() == 10, "latest");
            ListOffsetsResult.ListOffsetsResultInfo byTime =
                    admin.listOffsets(Map.of(tp0, OffsetSpec.forTimestamp(4_500_000L))).all().get().get(tp0);
            check(byTime.offset() == 4 && byTime.timestamp() == 5_000_000L, "by time: " + byTime);
            ListOffsetsResult.ListOffsetsResultInfo maxTs =
                    admin.listOffsets(Map.of(tp0, OffsetSpec.maxTimestamp())).all().get().get(tp0);
            check(maxTs.offset() == 9 && maxTs.timestamp() == 10_000_000L, "max timestamp: " + maxTs);
            check(admin.listOffsets(Map.of(tp0, OffsetSpec.forTimestamp(99_000_000L))).all().get().get(tp0).offset() == -1,
                    "no record at or after a later time");
            DeletedRecords deleted =
                    admin.deleteRecords(Map.of(tp0, RecordsToDelete.beforeOffset(4))).lowWatermarks().get(tp0).get();
            check(deleted.lowWatermark() == 4, "low watermark " + deleted.lowWatermark());
            check(admin.listOffsets(Map.of(tp0, OffsetSpec.earliest())).all().get().get(tp0).offset() == 4, "earliest after delete");

            // Partitions grow; they never shrink.
            admin.createPartitions(Map.of(t, NewPartitions.increaseTo(4))).all().get();
            check(admin.describeTopics(List.of(t)).allTopicNames().get().get(t).partitions().size() == 4, "grown to 4");
            check(failure(admin.createPartitions(Map.of(t, NewPartitions.increaseTo(3))).all()) == InvalidPartitionsException.class,
                    "shrinking is refused");

            // Groups: a member commits, then describe, list offsets, list, delete.
            String group = t + "-group";
            Properties cp = new Properties();
            cp.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            cp.put(ConsumerConfig.GROUP_ID_CONFIG, group);
            cp.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
            cp.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
            try (KafkaConsumer<String, String> c = new KafkaConsumer<>(cp, new StringDeserializer(), new StringDeserializer())) {
                c.subscribe(List.of(t));
                int read = 0;
                // A first group join may take a while on a loaded machine (Kafka's broker too).
                long deadline = System.currentTimeMillis() + 60_000;
                while (read < 6 && System.currentTimeMillis() < deadline) read += c.poll(Duration.ofMillis(200)).count();
                check(read == 6, "read " + read + " in 60 s; assigned " + c.assignment());
                c.commitSync();
                ConsumerGroupDescription g = admin.describeConsumerGroups(List.of(group)).all().get().get(group);
                check(g.members().size() == 1 && g.groupState() == GroupState.STABLE, "described: " + g);
                check(g.members().iterator().next().assignment().topicPartitions().size() == 4, "the member owns 4 partitions: " + g);
                check(failure(admin.deleteConsumerGroups(List.of(group)).all()) == GroupNotEmptyException.class,
                        "a group with members is not deleted");
            }
            Map<TopicPartition, OffsetAndMetadata> committed =
                    admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
            check(committed.get(tp0).offset() == 10, "committed: " + committed);
            check(admin.listGroups().all().get().stream().anyMatch(l -> l.groupId().equals(group)), "listed");
            admin.deleteConsumerGroups(List.of(group)).all().get();
            check(admin.listGroups().all().get().stream().noneMatch(l -> l.groupId().equals(group)), "deleted");
            check(failure(admin.deleteConsumerGroups(List.of(group)).all()) == GroupIdNotFoundException.class,
                    "deleting it again: GroupIdNotFound");

            // Delete.
            admin.deleteTopics(List.of(t)).all().get();
            long deadline = System.currentTimeMillis() + 10_000;
            while (admin.listTopics().names().get().contains(t) && System.currentTimeMillis() < deadline) Thread.sleep(100);
            check(!admin.listTopics().names().get().contains(t), "deleted");
            check(failure(admin.deleteTopics(List.of(t)).all()) == UnknownTopicOrPartitionException.class,
                    "deleting it again: UnknownTopicOrPartition");
        }
        System.out.println("ok");
    }
}
