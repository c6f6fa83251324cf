#!/usr/bin/env bash
# Runs librdkafka's own regression tests (tests/0NNN-*.c of librdkafka 2.12.1, the version the
# rdkafka-sys crate in Cargo.lock bundles) against a Freshet broker.
#
#   tests/librdkafka/run.sh [FRESHET_BIN]
#
# FRESHET_BIN (argument or environment) is the `freshet` binary to serve the tests; default
# ~/.cache/freshet/target/debug/freshet. Environment:
#   SUITE           `all` (default): every test that passes, about 25 minutes; `quick`: those
#                   that take under half a minute each, about 7 minutes (what ./dev test runs)
#   TESTS           test numbers to run, space- or comma-separated (instead of a SUITE)
#   SCENARIO        librdkafka's test scenario: `default`, or `noautocreate` (the broker then runs
#                   with --no-auto-create-topics; run TESTS="0045 0107 0111" with it)
#   BROKER_ARGS     more `freshet broker` flags, e.g. "--config my.properties"
#   TEST_TIMEOUT_S  the most one test number may take (default 900: 0113 takes about 10 minutes)
#   LIBRDKAFKA_DIR  where librdkafka is built, once (default ~/.cache/freshet/librdkafka-2.12.1)
#   KAFKA_JARS      Kafka's jars, for the kafka-topics.sh some tests call (default
#                   ~/.cache/freshet/kafka-4.4.0/jars, which ./dev fetches)
# Exits non-zero when a test fails; the broker's log and each test's output are kept then.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
freshet_bin=${1:-${FRESHET_BIN:-$HOME/.cache/freshet/target/debug/freshet}}
build_dir=${LIBRDKAFKA_DIR:-$HOME/.cache/freshet/librdkafka-2.12.1}
kafka_jars=${KAFKA_JARS:-$HOME/.cache/freshet/kafka-4.4.0/jars}
scenario=${SCENARIO:-default}
test_timeout_s=${TEST_TIMEOUT_S:-900}

suite=${SUITE:-all}

# The tests that pass against Freshet (TEST_KAFKA_VERSION=4.0.0, default scenario). Tests of mock
# clusters only (flagged local, and 0068, 0139, 0150) are left out: they never reach the broker.
# `quick` are those that take under half a minute each here; `slow` the others.
quick="0001 0002 0003 0005 0007 0008 0011 0012 0013 0014 0015 0016 0017 0019 0020 0021 0022 0029
 0030 0031 0034 0035 0036 0038 0039 0040 0041 0042 0044 0045 0048 0049 0050 0051 0053 0054 0056
 0057 0059 0060 0061 0063 0064 0065 0067 0069 0070 0073 0075 0082 0083 0084 0085 0086 0090 0099
 0110 0112 0114 0118 0123 0125 0127 0129 0130 0132 0140"
slow="0018 0026 0033 0055 0076 0088 0089 0091 0093 0094 0102 0113 0122 0137"
# These call Kafka's command-line tools (kafka-topics.sh, kafka-acls.sh), so they
# need its jars.
quick_with_kafka_tools="0052 0115 0119"
slow_with_kafka_tools="0109"
case "$suite" in
    quick) passing=$quick passing_with_kafka_tools=$quick_with_kafka_tools ;;
    all) passing="$quick $slow" passing_with_kafka_tools="$quick_with_kafka_tools $slow_with_kafka_tools" ;;
    *) printf '==> SUITE=%s: expected quick or all\n' "$suite" >&2; exit 2 ;;
esac

say() { printf '==> %s\n' "$*" >&2; }

# 1. librdkafka and its test runner, built once into the cache. No TLS, SASL, zstd or curl: the
# broker speaks PLAINTEXT only. RapidJSON (Debian: rapidjson-dev) is used when installed; without
# it 0053 and 0110 skip themselves.
if [ ! -x "$build_dir/src/tests/test-runner" ]; then
    source_dir=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/rdkafka-sys-4.10.0+2.12.1/librdkafka 2>/dev/null | head -n1 || true)
    if [ -z "$source_dir" ]; then
        say "librdkafka's source is missing: run 'cargo fetch' in $repo (rdkafka-sys 4.10.0+2.12.1)"
        exit 1
    fi
    say "building librdkafka 2.12.1 and its test runner in $build_dir (about 2 minutes on 2 cores)"
    mkdir -p "$build_dir"
    rm -rf "$build_dir/src"
    cp -a "$source_dir" "$build_dir/src"
    (
        cd "$build_dir/src"
        ./configure --disable-ssl --disable-gssapi --disable-curl --disable-zstd --disable-lz4-ext --no-download
        make -j2 libs
        make -j2 -C tests build
    ) > "$build_dir/build.log" 2>&1 || { say "build failed, see $build_dir/build.log"; exit 1; }
fi

# 2. Kafka's kafka-topics.sh and kafka-run-class.sh, which some tests run, as small scripts over
# Kafka's jars; the tests find them through KAFKA_PATH.
if [ -d "$kafka_jars" ]; then
    kafka_cli="$build_dir/kafka-cli"
    mkdir -p "$kafka_cli/bin"
    ln -sfn "$kafka_jars" "$kafka_cli/libs"
    cat > "$kafka_cli/bin/kafka-run-class.sh" << 'EOF'
#!/usr/bin/env bash
# Kafka's bin/kafka-run-class.sh, reduced: a class from the jars in ../libs, $CLASSPATH first.
exec java -Xmx256m -cp "${CLASSPATH:+$CLASSPATH:}$(dirname "$0")/../libs/*" "$@"
EOF
    printf '#!/usr/bin/env bash\nexec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.TopicCommand "$@"\n' \
        > "$kafka_cli/bin/kafka-topics.sh"
    printf '#!/usr/bin/env bash\nexec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.AclCommand "$@"\n' \
        > "$kafka_cli/bin/kafka-acls.sh"
    chmod +x "$kafka_cli"/bin/*.sh
    export KAFKA_PATH="$kafka_cli"
    passing="$passing $passing_with_kafka_tools"
else
    say "no Kafka jars in $kafka_jars: tests that run Kafka's tools ($passing_with_kafka_tools) are left out"
fi
tests=$(echo "${TESTS:-$passing}" | tr ',' ' ')

# 3. A broker on a free port (port 0: it prints the one it took) over a fresh data directory.
# librdkafka's default scenario expects topics created on first use with 4 partitions.
[ -x "$freshet_bin" ] || { say "no freshet binary at $freshet_bin (argument or FRESHET_BIN)"; exit 1; }
work=$(mktemp -d -t librdkafka-tests.XXXXXX)
# As trivup runs Kafka for this suite: Kafka's default group.initial.rebalance.delay.ms (3 s), so
# consumers started together share the first generation (0118 relies on it); an authorizer, open
# where no ACL names a resource (0109, 0115 and 0119 deny topics with kafka-acls.sh).
cat > "$work/broker.properties" << 'EOF'
group.initial.rebalance.delay.ms=3000
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=true
EOF
broker_flags=(--listen 127.0.0.1:0 --data-dir "$work/data" --num-partitions 4 --config "$work/broker.properties")
[ "$scenario" = noautocreate ] && broker_flags+=(--no-auto-create-topics)
# shellcheck disable=SC2206 # BROKER_ARGS is a list of flags, split on spaces on purpose.
broker_flags+=(${BROKER_ARGS:-})
"$freshet_bin" broker "${broker_flags[@]}" > "$work/broker.log" 2>&1 &
broker_pid=$!
failed=()

stop_broker() {
    if kill -0 "$broker_pid" 2>/dev/null; then
        kill -TERM "$broker_pid"
        wait "$broker_pid" 2>/dev/null || true
    fi
    if [ ${#failed[@]} -eq 0 ]; then
        rm -rf "$work"
    else
        rm -rf "$work/data"
        say "logs kept in $work (broker.log, logs/NNNN.log)"
    fi
}
trap stop_broker EXIT

address=""
for _ in $(seq 1 300); do
    address=$(sed -n 's/.*listening on \([0-9.]*:[0-9]*\).*/\1/p' "$work/broker.log" | head -n1)
    [ -n "$address" ] && break
    kill -0 "$broker_pid" 2>/dev/null || { cat "$work/broker.log" >&2; exit 1; }
    sleep 0.1
done
[ -n "$address" ] || { say "the broker did not start in 30 s"; exit 1; }
say "broker at $address (log: $work/broker.log)"
printf 'bootstrap.servers=%s\n' "$address" > "$work/test.conf"

# 4. Each test number in its own test-runner process, so that one test's crash or hang is its
# own: -L leaves out the tests flagged local (mock clusters, no broker); TEST_KAFKA_VERSION says
# what the broker is like (features of Kafka 4.0: no message format v0/v1, KIP-848 era admin
# APIs). A test number runs all of its named tests (0045 runs five).
export RDKAFKA_TEST_CONF="$work/test.conf" BROKERS="$address" TEST_SCENARIO="$scenario"
export TEST_KAFKA_VERSION=${TEST_KAFKA_VERSION:-4.0.0}
export LD_LIBRARY_PATH="$build_dir/src/src:$build_dir/src/src-cpp"
mkdir -p "$work/logs"
cd "$build_dir/src/tests"
n_passed=0
n_skipped=0
for n in $tests; do
    start=$(date +%s)
    if TESTS=$n timeout -k 10 "$test_timeout_s" ./test-runner -L > "$work/logs/$n.log" 2>&1; then
        # A test that skips itself (no RapidJSON, say) exits 0 too: it is counted apart.
        if grep -aqE '[0-9]{4}_[^|]*\| +PASSED \|' "$work/logs/$n.log"; then
            n_passed=$((n_passed + 1))
            say "$n passed ($(($(date +%s) - start)) s)"
        else
            n_skipped=$((n_skipped + 1))
            say "$n skipped itself: $(sed 's/\x1b\[[0-9;]*m//g' "$work/logs/$n.log" | grep 'SKIPPING TEST' | grep -v 'negative test flags' | head -n1 | cut -c1-200)"
        fi
    else
        failed+=("$n")
        say "$n FAILED ($(($(date +%s) - start)) s): $(sed 's/\x1b\[[0-9;]*m//g' "$work/logs/$n.log" \
            | grep -m1 -A1 '^### Test "0' | tail -n1 | cut -c1-200)"
    fi
done

say "$n_passed passed, $n_skipped skipped, ${#failed[@]} failed${failed:+: ${failed[*]}}"
[ ${#failed[@]} -eq 0 ]
