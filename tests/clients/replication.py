"""Replicated partitions under faults, checked in the manner of Jepsen's Kafka workload. Prints
"ok" when all held.

Usage:
  replication.py create BOOTSTRAP TOPIC PARTITIONS RF
      creates TOPIC with PARTITIONS partitions of RF replicas and min.insync.replicas=2
  replication.py produce BOOTSTRAP TOPIC STOPFILE ACKFILE
      an idempotent acks=all producer (confluent-kafka) writes numbered records until STOPFILE
      exists, paced a little; every acknowledged record's value, partition and offset goes to
      ACKFILE, one JSON object per line. Prints the acknowledged and failed counts and the
      longest time between two acknowledgements (the unavailability a fault caused)
  replication.py check BOOTSTRAP TOPIC ACKFILE
      reads TOPIC whole with confluent-kafka and with kafka-python: no acknowledged record
      missing, none stored twice, each acknowledged record at the offset it was acknowledged
      with, and the two clients read the same records at the same offsets
  replication.py group-stay BOOTSTRAP TOPIC GROUP DIR
      a member of GROUP reads TOPIC, commits, writes its coordinator's id to DIR/coordinator and
      DIR/ready, and once DIR/killed exists goes on reading and commits again: it must stay the
      same member, with no rebalance (its next coordinator loaded the group's membership)
  replication.py txn-produce BOOTSTRAP TOPIC STOPFILE OUTFILE
      a transactional producer (confluent-kafka) writes transactions of 2-12 records over the
      topic's partitions until STOPFILE exists, aborting one in four on purpose; each
      transaction's records and outcome (committed, aborted, or unknown when the producer
      failed not knowing) go to OUTFILE, one JSON object per line
  replication.py txn-check BOOTSTRAP TOPIC OUTFILE
      reads TOPIC whole at read_committed with confluent-kafka and with kafka-python: every
      committed transaction's records once, no aborted transaction's record, an unknown one's
      records all or none, and the two clients read the same records at the same offsets
"""

import json
import os
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer
from kafka import TopicPartition as KTopicPartition

mode, bootstrap, topic = sys.argv[1], sys.argv[2], sys.argv[3]


def create(partitions, rf):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = NewTopic(topic, num_partitions=partitions, replication_factor=rf, config={"min.insync.replicas": "2"})
    admin.create_topics([new])[topic].result(30)
    deadline = time.time() + 30
    while time.time() < deadline:
        md = admin.list_topics(topic, timeout=10).topics[topic]
        if len(md.partitions) == partitions and all(len(p.isrs) == rf for p in md.partitions.values()):
            return
        time.sleep(0.2)
    sys.exit(f"the partitions of {topic} never had {rf} in-sync replicas: {md.partitions}")


def produce(stopfile, ackfile):
    producer = Producer({
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": 120000,
        "request.timeout.ms": 10000,
        "retry.backoff.ms": 100,
        "topic.metadata.refresh.interval.ms": 1000,
    })
    acked, failed = [], []
    out = open(ackfile, "w")
    last_ack = [time.time()]
    longest = [0.0]

    def delivered(err, msg):
        if err is not None:
            failed.append(str(err))
            return
        now = time.time()
        longest[0] = max(longest[0], now - last_ack[0])
        last_ack[0] = now
        acked.append(msg.value())
        out.write(json.dumps({"v": msg.value().decode(), "p": msg.partition(), "o": msg.offset(), "t": now}) + "\n")

    i = 0
    while not os.path.exists(stopfile):
        try:
            producer.produce(topic, key=str(i % 97), value=f"r{i}", on_delivery=delivered)
            i += 1
        except BufferError:
            pass
        producer.poll(0.002)
    left = producer.flush(150)
    out.close()
    print(f"sent {i} acknowledged {len(acked)} failed {len(failed)} unflushed {left} "
          f"longest-gap-ms {int(longest[0] * 1000)}", file=sys.stderr)
    if failed:
        kinds = sorted(set(failed))
        print(f"failures: {kinds[:5]}", file=sys.stderr)
    if not acked:
        sys.exit("nothing was acknowledged")
    if left:
        sys.exit(f"{left} records never got an answer")


def read_confluent(partitions, ends, isolation="read_uncommitted"):
    """TOPIC's records from the start up to `ends`, with confluent-kafka at `isolation`: read
    until every partition's position reaches its end (control records move it without records)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "checker", "enable.auto.commit": False,
                         "isolation.level": isolation})
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    records = {}
    deadline = time.time() + 120
    while True:
        positions = {tp.partition: tp.offset for tp in consumer.position([TopicPartition(topic, p) for p in partitions])}
        if all(ends[p] == 0 or positions[p] >= ends[p] for p in partitions):
            break
        if time.time() > deadline:
            sys.exit(f"confluent-kafka at {isolation} never reached the end: positions {positions}, ends {ends}")
        m = consumer.poll(0.5)
        if m is None or m.error():
            continue
        records.setdefault(m.partition(), []).append((m.offset(), m.value().decode()))
    consumer.close()
    return records


def read_kafka_python(partitions, ends, isolation="read_uncommitted"):
    """The same with kafka-python."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level=isolation)
    tps = [KTopicPartition(topic, p) for p in partitions]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    records = {}
    deadline = time.time() + 120
    while any(consumer.position(KTopicPartition(topic, p)) < ends[p] for p in partitions):
        if time.time() > deadline:
            sys.exit(f"kafka-python at {isolation} never reached the end: {({p: len(records.get(p, [])) for p in partitions})} of {ends}")
        for tp, messages in consumer.poll(timeout_ms=500).items():
            for m in messages:
                records.setdefault(tp.partition, []).append((m.offset, m.value.decode()))
    consumer.close()
    return records


def partitions_of_topic():
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": "checker-probe"})
    partitions = sorted(probe.list_topics(topic, timeout=30).topics[topic].partitions)
    probe.close()
    return partitions


def compare(confluent, python, partitions, ends):
    """Where confluent-kafka's and kafka-python's reads (below `ends`) differ, and each value's
    (partition, offset) in confluent-kafka's, a value read twice being a problem too."""
    problems = []
    for p in partitions:
        a = [r for r in confluent.get(p, []) if r[0] < ends[p]]
        b = [r for r in python.get(p, []) if r[0] < ends[p]]
        if a != b:
            problems.append(f"partition {p}: confluent-kafka and kafka-python read different records "
                            f"({len(a)} and {len(b)})")
    index = {}
    for p, records in confluent.items():
        for offset, value in records:
            if value in index:
                problems.append(f"{value} stored twice: at {index[value]} and {(p, offset)}")
            index[value] = (p, offset)
    return problems, index


def check(ackfile):
    acks = [json.loads(line) for line in open(ackfile)]
    partitions = partitions_of_topic()
    ends = ends_of(partitions)
    confluent = read_confluent(partitions, ends)
    python = read_kafka_python(partitions, ends)
    problems, stored = compare(confluent, python, partitions, ends)
    lost = [a for a in acks if a["v"] not in stored]
    # An acknowledgement without an offset (a retry the broker recognized as stored but older
    # than the batches it remembers, DUPLICATE_SEQUENCE_NUMBER, which clients count as
    # delivered) is checked for its partition only.
    moved = [a for a in acks if a["v"] in stored
             and stored[a["v"]] != (a["p"], a["o"] if a["o"] is not None else stored[a["v"]][1])]
    if lost:
        problems.append(f"{len(lost)} acknowledged records lost, such as {lost[:5]}")
    if moved:
        problems.append(f"{len(moved)} acknowledged records not where they were acknowledged, such as "
                        f"{[(m, stored[m['v']]) for m in moved[:5]]}")
    print(f"acknowledged {len(acks)} stored {len(stored)} ends {ends}", file=sys.stderr)
    if problems:
        sys.exit("\n".join(problems[:20]))


def group_commit(group, n, outfile):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    consumer.subscribe([topic])
    read = 0
    deadline = time.time() + 60
    while read < n and time.time() < deadline:
        m = consumer.poll(1.0)
        if m is None or m.error():
            continue
        read += 1
    if read < n:
        sys.exit(f"read {read} of {n}")
    consumer.commit(asynchronous=False)
    consumer.close()
    admin = AdminClient({"bootstrap.servers": bootstrap})
    described = admin.describe_consumer_groups([group])[group].result(30)
    with open(outfile, "w") as f:
        f.write(str(described.coordinator.id))


def group_resume(group, n):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    md = consumer.list_topics(topic, timeout=30).topics[topic]
    partitions = [TopicPartition(topic, p) for p in md.partitions]
    deadline = time.time() + 60
    while True:
        try:
            committed = consumer.committed(partitions, timeout=10)
            break
        except KafkaException as e:
            if time.time() > deadline:
                raise
            print(f"committed offsets not read yet: {e}", file=sys.stderr)
            time.sleep(0.5)
    total = sum(max(tp.offset, 0) for tp in committed)
    if total != n:
        sys.exit(f"the group's committed offsets add up to {total}, not {n}: {committed}")
    at = {tp.partition: tp.offset for tp in committed}
    consumer.subscribe([topic])
    while time.time() < deadline:
        m = consumer.poll(1.0)
        if m is None or m.error():
            continue
        if m.offset() < at[m.partition()]:
            sys.exit(f"read offset {m.offset()} of partition {m.partition()}, below its committed {at[m.partition()]}")
        break
    else:
        sys.exit("nothing more was read after the committed offsets")
    consumer.close()


def txn_failover(directory):
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": "failover-txn",
                         "transaction.timeout.ms": 120000})
    producer.init_transactions(60)
    producer.begin_transaction()
    for i in range(100):
        producer.produce(topic, key=str(i), value=f"t{i}")
    producer.flush(60)
    open(os.path.join(directory, "ready"), "w").close()
    deadline = time.time() + 120
    while not os.path.exists(os.path.join(directory, "killed")):
        if time.time() > deadline:
            sys.exit("the coordinator was never killed")
        time.sleep(0.1)
    # Committed through the coordinator elected in the dead one's place.
    for attempt in range(60):
        try:
            producer.commit_transaction(60)
            break
        except KafkaException as e:
            if not e.args[0].retriable():
                raise
            print(f"commit retried: {e}", file=sys.stderr)
            time.sleep(1)
    # And a transaction after it, aborted: never seen.
    producer.begin_transaction()
    producer.produce(topic, key="x", value="aborted")
    producer.flush(60)
    producer.abort_transaction(60)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "failover-reader",
                         "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
    consumer.subscribe([topic])
    seen = []
    deadline = time.time() + 60
    while len(seen) < 100 and time.time() < deadline:
        m = consumer.poll(1.0)
        if m is None or m.error():
            continue
        seen.append(m.value().decode())
    end = time.time() + 3
    while time.time() < end:
        m = consumer.poll(0.5)
        if m is not None and not m.error():
            seen.append(m.value().decode())
    consumer.close()
    if sorted(seen) != sorted(f"t{i}" for i in range(100)):
        sys.exit(f"read_committed read {len(seen)} records: {sorted(seen)[:10]}...")


def group_stay(group, directory):
    events = []
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "session.timeout.ms": 45000,
                         "heartbeat.interval.ms": 500})
    consumer.subscribe([topic], on_assign=lambda c, ps: events.append(("assigned", len(ps))),
                       on_revoke=lambda c, ps: events.append(("revoked", len(ps))))

    def commit():
        positions = [tp for tp in consumer.position(consumer.assignment()) if tp.offset >= 0]
        consumer.commit(offsets=positions, asynchronous=False)

    read = 0
    deadline = time.time() + 60
    while read < 10:
        if time.time() > deadline:
            sys.exit(f"read {read} records before the coordinator moved")
        m = consumer.poll(0.5)
        if m is not None and not m.error():
            read += 1
    commit()
    admin = AdminClient({"bootstrap.servers": bootstrap})
    described = admin.describe_consumer_groups([group])[group].result(30)
    with open(os.path.join(directory, "coordinator"), "w") as f:
        f.write(str(described.coordinator.id))
    open(os.path.join(directory, "ready"), "w").close()
    deadline = time.time() + 120
    while not os.path.exists(os.path.join(directory, "killed")):
        if time.time() > deadline:
            sys.exit("the coordinator was never killed")
        consumer.poll(0.2)
    # Through the failover: reads and a commit go on as the same member of the same generation.
    committed = False
    end = time.time() + 40
    while time.time() < end:
        m = consumer.poll(0.5)
        if m is not None and not m.error():
            read += 1
        if not committed:
            try:
                commit()
                committed = True
            except KafkaException as e:
                print(f"commit retried: {e}", file=sys.stderr)
    seen = list(events)
    consumer.close()
    print(f"read {read}, rebalance events {seen}", file=sys.stderr)
    if [e for e in seen if e[0] == "revoked"] or len(seen) != 1:
        sys.exit(f"the member was rebalanced when its coordinator moved: {seen}")
    if not committed:
        sys.exit("no commit went through after the coordinator moved")


def txn_producer():
    producer = Producer({
        "bootstrap.servers": bootstrap,
        "transactional.id": "jepsen-txn",
        "transaction.timeout.ms": 60000,
        "message.timeout.ms": 60000,
        "request.timeout.ms": 10000,
        "retry.backoff.ms": 100,
        "topic.metadata.refresh.interval.ms": 1000,
    })
    deadline = time.time() + 120
    while True:
        try:
            producer.init_transactions(30)
            return producer
        except KafkaException as e:
            if time.time() > deadline or not e.args[0].retriable():
                raise
            print(f"init_transactions retried: {e}", file=sys.stderr)
            time.sleep(0.5)


def txn_produce(stopfile, outfile):
    producer = txn_producer()
    out = open(outfile, "w")
    counts = {}
    t = 0
    while not os.path.exists(stopfile):
        values = [f"x{t}-{j}" for j in range(2 + t % 11)]
        intent = "abort" if t % 4 == 3 else "commit"
        outcome = None
        try:
            producer.begin_transaction()
            for j, v in enumerate(values):
                while True:
                    try:
                        producer.produce(topic, key=str(j), value=v)
                        break
                    except BufferError:
                        producer.poll(0.01)
            if intent == "abort":
                producer.abort_transaction(60)
                outcome = "aborted"
            else:
                for attempt in range(20):
                    try:
                        producer.commit_transaction(60)
                        outcome = "committed"
                        break
                    except KafkaException as e:
                        if not e.args[0].retriable():
                            raise
                        print(f"commit retried: {e}", file=sys.stderr)
                        time.sleep(0.5)
                else:
                    print(f"transaction {t} never committed: a new producer fences it", file=sys.stderr)
                    outcome = "unknown"
                    producer = txn_producer()
        except KafkaException as e:
            error = e.args[0]
            print(f"transaction {t} ({intent}): {e}", file=sys.stderr)
            aborted = False
            if hasattr(error, "txn_requires_abort") and error.txn_requires_abort():
                try:
                    producer.abort_transaction(60)
                    aborted = True
                except KafkaException as e2:
                    print(f"abort of transaction {t} failed: {e2}", file=sys.stderr)
            outcome = "aborted" if aborted else "unknown"
            if not aborted:
                # Not knowing what became of it: a new producer fences the old one (its
                # transaction, if still open, is aborted) and writes on.
                producer = txn_producer()
        counts[outcome] = counts.get(outcome, 0) + 1
        out.write(json.dumps({"t": t, "values": values, "outcome": outcome}) + "\n")
        out.flush()
        t += 1
        time.sleep(0.005)
    out.close()
    print(f"transactions {counts}", file=sys.stderr)
    if not counts.get("committed") or not counts.get("aborted"):
        sys.exit(f"the transactions did not both commit and abort: {counts}")


def ends_of(partitions):
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": "checker-probe"})
    ends = {}
    deadline = time.time() + 60
    for p in partitions:
        while p not in ends:
            try:
                ends[p] = probe.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
            except KafkaException:
                if time.time() > deadline:
                    raise
                time.sleep(0.5)
    probe.close()
    return ends


def txn_check(outfile):
    txns = [json.loads(line) for line in open(outfile)]
    partitions = partitions_of_topic()
    ends = ends_of(partitions)
    confluent = read_confluent(partitions, ends, "read_committed")
    python = read_kafka_python(partitions, ends, "read_committed")
    problems, seen = compare(confluent, python, partitions, ends)
    counts = {}
    for txn in txns:
        present = [v for v in txn["values"] if v in seen]
        outcome = txn["outcome"]
        counts[outcome] = counts.get(outcome, 0) + 1
        if outcome == "committed" and len(present) != len(txn["values"]):
            problems.append(f"committed transaction {txn['t']} lost {len(txn['values']) - len(present)} records")
        elif outcome == "aborted" and present:
            problems.append(f"aborted transaction {txn['t']}'s records were read at read_committed: {present}")
        elif outcome == "unknown" and present and len(present) != len(txn["values"]):
            problems.append(f"transaction {txn['t']} was read in part: {present} of {txn['values']}")
    print(f"transactions {counts}, committed records read {len(seen)}, ends {ends}", file=sys.stderr)
    if problems:
        sys.exit("\n".join(problems[:20]))


if mode == "create":
    create(int(sys.argv[4]), int(sys.argv[5]))
elif mode == "produce":
    produce(sys.argv[4], sys.argv[5])
elif mode == "check":
    check(sys.argv[4])
elif mode == "group-commit":
    group_commit(sys.argv[4], int(sys.argv[5]), sys.argv[6])
elif mode == "group-resume":
    group_resume(sys.argv[4], int(sys.argv[5]))
elif mode == "group-stay":
    group_stay(sys.argv[4], sys.argv[5])
elif mode == "txn-produce":
    txn_produce(sys.argv[4], sys.argv[5])
elif mode == "txn-check":
    txn_check(sys.argv[4])
elif mode == "txn-failover":
    txn_failover(sys.argv[4])
else:
    sys.exit(f"unknown mode {mode}")
print("ok")
