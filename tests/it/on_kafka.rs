//! Freshet on Apache Kafka's broker (4.4, started from its jars): the substrate contract, a
//! streams application at least once and exactly once with a restart in the middle, `freshet
//! sql --bootstrap` and the CLI's commands. This is the claim "runs on an existing Kafka cluster"
//! made a test.

use std::sync::Arc;

use freshet::prelude::ProcessingGuarantee;

use crate::peer::{Kind, Peer};

fn kafka() -> (tempfile::TempDir, Peer) {
    let dir = tempfile::tempdir().unwrap();
    let kafka = Peer::start(Kind::Kafka, dir.path());
    (dir, kafka)
}

#[test]
fn the_substrate_contract_holds_on_apache_kafka() {
    let (_dir, kafka) = kafka();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let remote: Arc<dyn freshet_core::Substrate> =
        Arc::new(freshet_core::remote::Remote::new(kafka.addr().to_string()));
    rt.block_on(freshet_core::testing::all(&*remote, "kafka"));
    kafka.stop();
}

#[test]
fn a_streams_application_runs_on_apache_kafka_at_least_once_and_resumes_after_a_restart() -> anyhow::Result<()> {
    let (dir, kafka) = kafka();
    crate::streams::word_count_resumes_after_a_restart(kafka.addr(), dir.path(), ProcessingGuarantee::AtLeastOnce)?;
    kafka.stop();
    Ok(())
}

#[test]
fn a_streams_application_runs_on_apache_kafka_exactly_once_and_resumes_after_a_restart() -> anyhow::Result<()> {
    let (dir, kafka) = kafka();
    crate::streams::word_count_resumes_after_a_restart(kafka.addr(), dir.path(), ProcessingGuarantee::ExactlyOnce)?;
    kafka.stop();
    Ok(())
}

#[test]
fn sql_runs_over_the_topics_of_apache_kafka() {
    let (_dir, kafka) = kafka();
    crate::sql::sql_over_topics(&["--bootstrap".into(), kafka.addr().to_string()]);
    kafka.stop();
}

#[test]
fn the_cli_manages_topics_and_moves_records_on_apache_kafka() {
    let (_dir, kafka) = kafka();
    let target = ["--bootstrap".into(), kafka.addr().to_string()];
    crate::topic::topics_are_created_listed_described_altered_and_deleted(&target);
    crate::topic::records_are_produced_from_lines_or_json_and_consumed_with_or_without_a_group(&target);
    kafka.stop();
}
