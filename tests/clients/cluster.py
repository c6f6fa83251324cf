"""A cluster of Freshet brokers with the Python clients. Prints "ok" when all held.

Usage:
  cluster.py spread BOOTSTRAP BROKERS  a topic created through one broker has its partitions led
                                       by every broker; an idempotent acks=all producer writes
                                       3,000 records across them; a confluent-kafka group and a
                                       kafka-python group each read them all; the cluster is
                                       described with BROKERS brokers and a controller
  cluster.py create BOOTSTRAP TOPIC    creates TOPIC (3 partitions), retrying while no controller
                                       is active (for up to 30 s)
  cluster.py count BOOTSTRAP TOPIC N   reads TOPIC from the start: exactly N records
"""

import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer

mode, bootstrap = sys.argv[1], sys.argv[2]


def read_all(topic, group, expected, within=60):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    consumer.subscribe([topic])
    seen = []
    deadline = time.time() + within
    while len(seen) < expected and time.time() < deadline:
        m = consumer.poll(1.0)
        if m is None:
            continue
        if m.error():
            continue
        seen.append(m.value())
    if seen:
        consumer.commit(asynchronous=False)
    consumer.close()
    return seen


if mode == "spread":
    brokers = int(sys.argv[3])
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic("spread", num_partitions=6, replication_factor=1)])["spread"].result(30)
    md = admin.list_topics(timeout=30)
    if len(md.brokers) != brokers:
        sys.exit(f"metadata lists {len(md.brokers)} brokers, not {brokers}: {md.brokers}")
    leaders = {p.id: p.leader for p in md.topics["spread"].partitions.values()}
    if sorted(set(leaders.values())) != sorted(md.brokers):
        sys.exit(f"the partitions' leaders {leaders} are not spread over every broker {sorted(md.brokers)}")
    cluster = admin.describe_cluster().result(30)
    if len(cluster.nodes) != brokers or cluster.controller is None:
        sys.exit(f"DescribeCluster: {cluster.nodes}, controller {cluster.controller}")
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
    failed = []
    for i in range(3000):
        producer.produce("spread", key=str(i), value=f"v{i}",
                         on_delivery=lambda err, msg: failed.append(err) if err else None)
        if i % 500 == 0:
            producer.poll(0)
    if producer.flush(60) != 0 or failed:
        sys.exit(f"not every record was acknowledged: {failed[:3]}")
    seen = read_all("spread", "spread-readers", 3000)
    if sorted(seen) != sorted(f"v{i}".encode() for i in range(3000)):
        sys.exit(f"the confluent-kafka group read {len(seen)} records, not the 3000 written")
    # The group's committed offsets, fetched from its coordinator: a second member resumes there.
    again = read_all("spread", "spread-readers", 1, within=5)
    if again:
        sys.exit(f"the group read {len(again)} records again after committing")
    other = KafkaConsumer("spread", bootstrap_servers=bootstrap, group_id="kafka-python-readers",
                          auto_offset_reset="earliest", consumer_timeout_ms=15000)
    count = 0
    for _ in other:
        count += 1
        if count == 3000:
            break
    other.close()
    if count != 3000:
        sys.exit(f"the kafka-python group read {count} records, not 3000")
    print("ok")
elif mode == "create":
    topic = sys.argv[3]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.time() + 30
    while True:
        try:
            admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[topic].result(30)
            break
        except KafkaException as e:
            if time.time() > deadline:
                sys.exit(f"could not create {topic}: {e}")
            time.sleep(0.5)
    print("ok")
elif mode == "count":
    topic, expected = sys.argv[3], int(sys.argv[4])
    seen = read_all(topic, f"count-{time.time()}", expected)
    extra = read_all(topic, f"count-extra-{time.time()}", expected + 1, within=3)
    if len(seen) != expected or len(extra) != expected:
        sys.exit(f"{topic} holds {len(seen)} / {len(extra)} records, not {expected}")
    print("ok")
else:
    sys.exit(f"unknown mode {mode}")
