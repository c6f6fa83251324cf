"""Freshet's broker with confluent-kafka's (librdkafka's) transactional producer: committed
records are visible to read_committed consumers, aborted and open ones are not (read_uncommitted
consumers see them all); offsets sent with a transaction are committed only if it commits; a second
producer with the same transactional id fences the first; a transaction left open past its
timeout is aborted by the broker. Usage: transactions.py BOOTSTRAP PREFIX [apart]. With "apart"
(a cluster), the consuming group is one whose coordinator is another broker than the
transactions' coordinator, so that markers and offsets cross brokers. Prints "ok"."""

import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

bootstrap, prefix = sys.argv[1], sys.argv[2]
apart = sys.argv[3:] == ["apart"]
out, source = prefix + "-out", prefix + "-in"

admin = AdminClient({"bootstrap.servers": bootstrap})
for f in admin.create_topics([NewTopic(out, 3, 1), NewTopic(source, 1, 1)]).values():
    f.result(30)


def producer(txn_id, **extra):
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id, **extra})
    p.init_transactions(30)
    return p


def read_all(topic, isolation, partitions, quiet_s=1.5):
    """Every value in the topic's partitions, read from the start until nothing new comes."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{time.monotonic_ns()}",
                  "isolation.level": isolation, "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got, last = [], time.monotonic()
    while time.monotonic() - last < quiet_s:
        m = c.poll(0.2)
        if m is None or m.error():
            continue
        got.append(m.value().decode())
        last = time.monotonic()
    c.close()
    return sorted(got)


def expect(got, want, what):
    if sorted(got) != sorted(want):
        sys.exit(f"{what}: got {sorted(got)!r}, wanted {sorted(want)!r}")


# Committed, aborted, and open transactions.
p1 = producer(prefix + "-t1")
p1.begin_transaction()
committed = [f"c{i}" for i in range(10)]
for v in committed:
    p1.produce(out, key=v, value=v)
p1.commit_transaction(30)
p1.begin_transaction()
for i in range(5):
    p1.produce(out, key=f"a{i}", value=f"a{i}")
p1.flush(30)
p1.abort_transaction(30)
p1.begin_transaction()
opened = [f"o{i}" for i in range(3)]
for v in opened:
    p1.produce(out, key=v, value=v)
p1.flush(30)
expect(read_all(out, "read_committed", 3), committed, "read_committed with a transaction open")
expect(read_all(out, "read_uncommitted", 3), committed + [f"a{i}" for i in range(5)] + opened, "read_uncommitted")
p1.commit_transaction(30)
expect(read_all(out, "read_committed", 3), committed + opened, "read_committed after the commit")

def java_hash(text):
    h = 0
    for unit in text.encode("utf-16-be").hex(" ", 2).split():
        h = (31 * h + int(unit, 16)) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def leaders(topic):
    md = admin.list_topics(topic=topic, timeout=30).topics[topic]
    if md.error is not None:
        sys.exit(f"no metadata for {topic}: {md.error}")
    return [md.partitions[p].leader for p in range(len(md.partitions))]


def group_apart_from_transactions():
    """A group whose coordinator (the leader of its __consumer_offsets partition, as Kafka places
    groups) is not the transactions' coordinator (the leader of __transaction_state)."""
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": prefix + "-probe"})
    probe.committed([TopicPartition(source, 0)], 30)  # FindCoordinator creates __consumer_offsets
    probe.close()
    txn_coordinator = leaders("__transaction_state")[0]
    groups = leaders("__consumer_offsets")
    for i in range(1000):
        group = f"{prefix}-eos-{i}"
        if groups[abs(java_hash(group)) % len(groups)] not in (txn_coordinator, -1):
            print(f"group {group} on broker {groups[abs(java_hash(group)) % len(groups)]}, "
                  f"transactions on broker {txn_coordinator}", file=sys.stderr)
            return group
    sys.exit(f"every group is coordinated by broker {txn_coordinator}: {groups}")


eos_group = group_apart_from_transactions() if apart else prefix + "-eos"

# Consume, transform, produce: the input offsets commit with the output.
feeder = Producer({"bootstrap.servers": bootstrap})
for i in range(20):
    feeder.produce(source, value=f"in{i}", partition=0)
feeder.flush(30)
consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": eos_group, "enable.auto.commit": False,
                     "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
consumer.assign([TopicPartition(source, 0, 0)])
p2 = producer(prefix + "-t2")


def transform(n, commit):
    p2.begin_transaction()
    seen = 0
    while seen < n:
        m = consumer.poll(5)
        if m is None:
            sys.exit("the input stopped short")
        if m.error():
            continue
        p2.produce(out, key=m.value(), value=b"t-" + m.value())
        seen += 1
    p2.send_offsets_to_transaction(consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), 30)
    if commit:
        p2.commit_transaction(30)
    else:
        p2.abort_transaction(30)


def committed_offset():
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": eos_group, "enable.auto.commit": False})
    offset = c.committed([TopicPartition(source, 0)], 30)[0].offset
    c.close()
    return offset


transform(10, commit=True)
if committed_offset() != 10:
    sys.exit(f"offsets sent with a committed transaction: {committed_offset()}, wanted 10")
transform(10, commit=False)
if committed_offset() != 10:
    sys.exit(f"offsets sent with an aborted transaction were committed: {committed_offset()}")

# A second producer with the same transactional id fences the first.
p3 = producer(prefix + "-t2")
try:
    p2.begin_transaction()
    p2.produce(out, value=b"zombie")
    p2.commit_transaction(10)
    sys.exit("a fenced producer committed")
except KafkaException as e:
    if not e.args[0].fatal():
        sys.exit(f"the fenced producer's error is not fatal: {e}")
p3.begin_transaction()
p3.produce(out, value=b"after-fence")
p3.commit_transaction(30)

# A transaction left open past its timeout is aborted; what follows becomes visible.
p4 = producer(prefix + "-t4", **{"transaction.timeout.ms": 2000})
p4.begin_transaction()
p4.produce(out, value=b"expired", partition=0)
p4.flush(30)
time.sleep(4)
feeder.produce(out, value=b"later", partition=0)
feeder.flush(30)
got = read_all(out, "read_committed", 3)
if "expired" in got or "zombie" in got or "later" not in got or "after-fence" not in got:
    sys.exit(f"after the timeout: {got!r}")
t = [v for v in got if v.startswith("t-")]
expect(t, [f"t-in{i}" for i in range(10)], "transformed records")
print("ok")
