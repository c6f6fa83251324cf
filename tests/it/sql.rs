//! `freshet sql`: tables declared over topics, queries printed as a table, JSON lines or CSV,
//! statements from standard input, errors naming what is wrong; on a data directory and through
//! a broker.

use crate::broker::BrokerProcess;
use crate::topic::{data_dir, freshet, freshet_stdin, Target};

pub(crate) fn sql_over_topics(target: &Target) {
    let (ok, _, err) = freshet(&["topic", "create", "orders", "--partitions", "2"], target);
    assert!(ok, "{err}");
    let lines = "a\t{\"id\": 1, \"customer\": \"ann\", \"amount\": 10.5}\n\
                 b\t{\"id\": 2, \"customer\": \"bob\", \"amount\": 3}\n\
                 c\t{\"id\": 3, \"customer\": \"ann\", \"amount\": 7.25}\n";
    let (ok, _, err) = freshet_stdin(&["produce", "orders", "--key-separator", "\t"], target, lines);
    assert!(ok, "{err}");
    let declare = "CREATE EXTERNAL TABLE orders (id BIGINT, customer VARCHAR, amount DOUBLE) \
                   STORED AS TOPIC LOCATION 'orders' OPTIONS ('format' 'json')";
    let query = "SELECT customer, count(*) AS n, sum(amount) AS total FROM orders GROUP BY customer ORDER BY customer";
    let (ok, out, err) = freshet(&["sql", "-e", &format!("{declare}; {query}")], target);
    assert!(ok, "{err}");
    let expected = "\
+----------+---+-------+
| customer | n | total |
+----------+---+-------+
| ann      | 2 | 17.75 |
| bob      | 1 | 3.0   |
+----------+---+-------+
";
    assert_eq!(out, expected);
    // The declaration was kept: a later run queries the table, as JSON lines and as CSV.
    let (ok, out, err) = freshet(&["sql", "--format", "json", "-e", "SELECT _key, id FROM orders ORDER BY id"], target);
    assert!(ok, "{err}");
    assert_eq!(out, "{\"_key\":\"a\",\"id\":1}\n{\"_key\":\"b\",\"id\":2}\n{\"_key\":\"c\",\"id\":3}\n");
    let (ok, out, err) =
        freshet_stdin(&["sql", "--format", "csv"], target, "SELECT id, amount FROM orders WHERE id > 1 ORDER BY id;\n");
    assert!(ok, "{err}");
    assert_eq!(out, "id,amount\n2,3.0\n3,7.25\n");
    let (ok, _, err) = freshet(&["sql", "-e", "SELECT id FROM orders WHERE id = = 1"], target);
    assert!(!ok && err.contains("Expected: an expression, found: = (at line 1, column 34)"), "{err}");
    // The part in error is marked under the statement.
    let marked = "  in the statement: SELECT id FROM orders WHERE id = = 1\n                                                     ^\n";
    assert!(err.contains(marked), "{err}");
    let (ok, _, err) = freshet(&["sql", "-e", "SELECT price FROM orders"], target);
    assert!(!ok && err.contains("No field named price") && err.contains("(at line 1, column 8)"), "{err}");
}

#[test]
fn sql_runs_over_the_topics_of_a_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    sql_over_topics(&data_dir(&dir));
}

#[test]
fn sql_runs_over_the_topics_of_a_broker() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"));
    sql_over_topics(&["--bootstrap".into(), broker.addr.clone()]);
    broker.stop();
}

/// Runs `sql` until its CSV output has `rows` rows (60 s at most); the output.
fn csv_eventually(target: &Target, sql: &str, rows: usize) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (ok, out, err) = freshet(&["sql", "--format", "csv", "-e", sql], target);
        assert!(ok, "{err}");
        if out.lines().count() == rows + 1 || std::time::Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

#[test]
fn a_broker_runs_the_continuous_queries_created_through_it_and_resumes_them_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let broker = BrokerProcess::start(&data);
    let target: Target = ["--bootstrap".into(), broker.addr.clone()];
    let (ok, _, err) = freshet(&["topic", "create", "readings", "--partitions", "2"], &target);
    assert!(ok, "{err}");
    let create = "CREATE STREAM readings (sensor VARCHAR, celsius DOUBLE) WITH (topic = 'readings'); \
                  CREATE TABLE peaks AS SELECT sensor, max(celsius) AS peak, count(*) AS n FROM readings GROUP BY sensor";
    let (ok, _, err) = freshet(&["sql", "-e", create], &target);
    assert!(ok, "{err}");
    let (ok, out, err) = freshet(&["sql", "--format", "csv", "-e", "SHOW QUERIES"], &target);
    assert!(ok && out.contains("peaks,TABLE,readings,peaks"), "{out}{err}");
    let lines = "a\t{\"sensor\": \"a\", \"celsius\": 20}\nb\t{\"sensor\": \"b\", \"celsius\": 31}\na\t{\"sensor\": \"a\", \"celsius\": 25}\n";
    let (ok, _, err) = freshet_stdin(&["produce", "readings", "--key-separator", "\t"], &target, lines);
    assert!(ok, "{err}");
    let latest = "SELECT sensor, max(peak) AS peak, max(n) AS n FROM peaks GROUP BY sensor ORDER BY sensor";
    assert_eq!(csv_eventually(&target, latest, 2), "sensor,peak,n\na,25.0,2\nb,31.0,1\n");
    broker.stop();

    // A restarted broker resumes the query where it was: its counts go on from its store.
    let broker = BrokerProcess::start(&data);
    let target: Target = ["--bootstrap".into(), broker.addr.clone()];
    let (ok, _, err) = freshet_stdin(
        &["produce", "readings", "--key-separator", "\t"],
        &target,
        "a\t{\"sensor\": \"a\", \"celsius\": 40}\nc\t{\"sensor\": \"c\", \"celsius\": 1}\n",
    );
    assert!(ok, "{err}");
    assert_eq!(csv_eventually(&target, latest, 3), "sensor,peak,n\na,40.0,3\nb,31.0,1\nc,1.0,1\n");
    broker.stop();
}
