"""Freshet's broker with the Python Kafka clients: confluent-kafka (librdkafka) produces,
kafka-python consumes, and the other way round; keys, null values, repeated headers and
timestamps must come back intact, kafka-python's group consumer resumes from the group's
committed offset, and ListOffsets by time must find the first record at or after
a timestamp. Usage: roundtrip.py BOOTSTRAP TOPIC_PREFIX. Prints "ok" when everything matched."""

import sys
import time

from confluent_kafka import Consumer as CkConsumer, Producer as CkProducer, TopicPartition as CkTopicPartition
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

bootstrap, prefix = sys.argv[1], sys.argv[2]
# An hour ago: within retention (seven days), so the broker keeps the records.
base = int(time.time() * 1000) - 3_600_000
records = [
    (b"k0", b"v0", [("h", b"1"), ("h", b"2")], base),
    (b"k1", None, [], base + 1_000),
    (None, b"no key", [("empty", b"")], base + 2_000),
]


def check(got, where):
    want = [(k, v, h, t) for k, v, h, t in records]
    if got != want:
        sys.exit(f"{where}: got {got!r}, wanted {want!r}")


# confluent-kafka produces (zstd), kafka-python consumes.
topic = prefix + "-ck"
producer = CkProducer({"bootstrap.servers": bootstrap, "compression.type": "zstd", "acks": "all",
                       "enable.idempotence": True})
for k, v, h, t in records:
    producer.produce(topic, key=k, value=v, headers=h, timestamp=t, partition=0)
if producer.flush(30) != 0:
    sys.exit("confluent-kafka: records not acknowledged")
consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=5000,
                         enable_auto_commit=False)
consumer.assign([TopicPartition(topic, 0)])
consumer.seek_to_beginning()
got = [(m.key, m.value, list(m.headers), m.timestamp) for m in consumer]
check(got, "kafka-python reading confluent-kafka's records")
# ListOffsets by time: the first record at or after base + 500 is offset 1.
found = consumer.offsets_for_times({TopicPartition(topic, 0): base + 500})
if found[TopicPartition(topic, 0)].offset != 1:
    sys.exit(f"offsets_for_times: {found}")
consumer.close()

# kafka-python produces (gzip), confluent-kafka consumes in a group and commits.
topic = prefix + "-kp"
# kafka-python's default: an idempotent producer (InitProducerId, sequence numbers).
producer = KafkaProducer(bootstrap_servers=bootstrap, compression_type="gzip", acks="all")
for k, v, h, t in records:
    producer.send(topic, key=k, value=v, headers=h, timestamp_ms=t, partition=0).get(timeout=30)
producer.flush(30)
producer.close()
consumer = CkConsumer({"bootstrap.servers": bootstrap, "group.id": prefix + "-group", "auto.offset.reset": "earliest",
                       "enable.auto.commit": False})
consumer.subscribe([topic])
got = []
while len(got) < len(records):
    m = consumer.poll(10)
    if m is None:
        sys.exit(f"confluent-kafka: timed out after {len(got)} records")
    if m.error():
        sys.exit(f"confluent-kafka: {m.error()}")
    got.append((m.key(), m.value(), list(m.headers() or []), m.timestamp()[1]))
check([(k, v, [(hk, hv if hv is not None else b"") for hk, hv in h], t) for k, v, h, t in got],
      "confluent-kafka reading kafka-python's records")
consumer.commit(asynchronous=False)
committed = consumer.committed([CkTopicPartition(topic, 0)], timeout=10)
if committed[0].offset != len(records):
    sys.exit(f"committed: {committed}")
consumer.close()

# kafka-python consumes in a group (its leader assigns only once its metadata shows the topic,
# then rejoins, which must start a new generation) and resumes after confluent-kafka's commit.
consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=prefix + "-group",
                         auto_offset_reset="earliest", consumer_timeout_ms=15000)
producer = KafkaProducer(bootstrap_servers=bootstrap)
producer.send(topic, key=b"k3", value=b"after the commit", partition=0).get(timeout=30)
producer.close()
got = []
for m in consumer:
    got.append(m.value)
    break
if got != [b"after the commit"]:
    sys.exit(f"kafka-python in a group: got {got!r}")
consumer.commit()
consumer.close()
print("ok")
