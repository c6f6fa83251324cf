//! `freshet sql`: tables declared over topics, queries printed as a table, JSON lines or CSV,
//! statements from standard input, errors naming what is wrong; on a data directory and through
//! a broker.

use crate::broker::BrokerProcess;
use crate::topic::{data_dir, freshet, freshet_stdin, Target};

fn sql_over_topics(target: &Target) {
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
    assert!(!ok && err.contains("Line: 1, Column"), "{err}");
    let (ok, _, err) = freshet(&["sql", "-e", "SELECT price FROM orders"], target);
    assert!(!ok && err.contains("No field named price"), "{err}");
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
