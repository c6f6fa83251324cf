"""Freshet's broker with confluent-kafka's AdminClient:
topics created with configs, refused with the right errors, described, altered, grown, trimmed
and deleted; the cluster and groups described. Usage: admin.py BOOTSTRAP CLUSTER_ID. Prints "ok"."""

import sys

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions,
                                   NewTopic)

bootstrap = sys.argv[1]
admin = AdminClient({"bootstrap.servers": bootstrap})


def fail(what):
    sys.exit(what)


def result(futures, key):
    return futures[key].result(30)


def error_of(future):
    try:
        future.result(30)
    except KafkaException as e:
        return e.args[0].code()
    return None


# Create with configs; a second create and a bad name are refused with Kafka's codes.
result(admin.create_topics([NewTopic("orders", 3, 1, config={"retention.ms": "3600000"})]), "orders")
if error_of(admin.create_topics([NewTopic("orders", 3, 1)])["orders"]) != KafkaError.TOPIC_ALREADY_EXISTS:
    fail("a second create of orders is not TOPIC_ALREADY_EXISTS")
if error_of(admin.create_topics([NewTopic("bad name!", 1, 1)])["bad name!"]) != KafkaError.TOPIC_EXCEPTION:
    fail("a bad topic name is not TOPIC_EXCEPTION (17)")
if error_of(admin.create_topics([NewTopic("checked", 2, 1)], validate_only=True)["checked"]) is not None:
    fail("validate_only refused a good topic")
if "checked" in admin.list_topics(timeout=10).topics:
    fail("validate_only created the topic")

# Describe: the override and the defaults.
resource = ConfigResource(ConfigResource.Type.TOPIC, "orders")
configs = result(admin.describe_configs([resource]), resource)
if configs["retention.ms"].value != "3600000" or configs["retention.ms"].is_default:
    fail(f"retention.ms: {configs['retention.ms']}")
if "cleanup.policy" not in configs or not configs["cleanup.policy"].is_default:
    fail("defaults are described too")

# Alter incrementally: set one, delete the other (back to its default).
changes = ConfigResource(ConfigResource.Type.TOPIC, "orders", incremental_configs=[
    ConfigEntry("segment.ms", "600000", incremental_operation=AlterConfigOpType.SET),
    ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE),
])
result(admin.incremental_alter_configs([changes]), changes)
configs = result(admin.describe_configs([resource]), resource)
if configs["segment.ms"].value != "600000" or not configs["retention.ms"].is_default:
    fail(f"after the alter: {configs['segment.ms']}, {configs['retention.ms']}")

# Grow to 5 partitions; shrinking is refused.
result(admin.create_partitions([NewPartitions("orders", 5)]), "orders")
if len(admin.list_topics("orders", timeout=10).topics["orders"].partitions) != 5:
    fail("orders did not grow to 5 partitions")
if error_of(admin.create_partitions([NewPartitions("orders", 2)])["orders"]) != KafkaError.INVALID_PARTITIONS:
    fail("shrinking is not INVALID_PARTITIONS")

# Records, a group that commits, then DeleteRecords trims the partition.
producer = Producer({"bootstrap.servers": bootstrap})
for i in range(10):
    producer.produce("orders", value=str(i), partition=0)
producer.flush(30)
consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "auditors", "auto.offset.reset": "earliest",
                     "enable.auto.commit": False})
consumer.assign([TopicPartition("orders", 0, 0)])
read = 0
while read < 10:
    m = consumer.poll(10)
    if m is None or m.error():
        fail(f"reading orders: {m and m.error()}")
    read += 1
consumer.commit(asynchronous=False)
consumer.close()
trimmed = admin.delete_records([TopicPartition("orders", 0, 4)])
trimmed = {str(tp): f.result(30).low_watermark for tp, f in trimmed.items()}
low, _ = Consumer({"bootstrap.servers": bootstrap, "group.id": "x"}).get_watermark_offsets(TopicPartition("orders", 0), 10)
if low != 4:
    fail(f"after DeleteRecords the log starts at {low}: {trimmed}")

# The cluster, the groups.
cluster = admin.describe_cluster().result(30)
if cluster.cluster_id != sys.argv[2] or len(cluster.nodes) != 1:
    fail(f"cluster: {cluster}")
groups = [g.group_id for g in admin.list_consumer_groups().result(30).valid]
if "auditors" not in groups:
    fail(f"groups: {groups}")
result(admin.delete_consumer_groups(["auditors"]), "auditors")
if "auditors" in [g.group_id for g in admin.list_consumer_groups().result(30).valid]:
    fail("auditors still listed after DeleteGroups")

# Delete.
result(admin.delete_topics(["orders"]), "orders")
if "orders" in admin.list_topics(timeout=10).topics:
    fail("orders still listed after DeleteTopics")
print("ok")
