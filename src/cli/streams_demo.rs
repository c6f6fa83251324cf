//! The quickstart's streams part: the events just produced, run through a topology on the same
//! embedded log: purchases joined with a table of users, grouped by the user's tier, summed per
//! minute of event time with emit-final, each window's result printed as it is emitted.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use freshet::prelude::*;
use serde::{Deserialize, Serialize};

use crate::say;

/// An event as the quickstart writes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Event {
    id: u64,
    user: String,
    action: String,
    amount_cents: i64,
}

/// A user of the `quickstart-users` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct User {
    name: String,
    tier: String,
}

const USERS: &str = "quickstart-users";
const OUTPUT: &str = "quickstart-revenue";
const APP_PREFIX: &str = "quickstart-revenue-app";
const WINDOW: Duration = Duration::from_secs(60);
/// Generous: tasks progress independently, so purchases reach the aggregation mixed from three
/// input partitions whose event times drift apart (each poll fetches a megabyte of each, and a
/// partition with fewer, larger records covers more time per megabyte): over a million events
/// they drift over two minutes apart.
const GRACE: Duration = Duration::from_secs(600);

/// The tier of user `i`: one in ten gold, a third of the rest silver.
pub(crate) fn tier(i: u64) -> &'static str {
    if i.is_multiple_of(10) {
        "gold"
    } else if i.is_multiple_of(3) {
        "silver"
    } else {
        "bronze"
    }
}

fn topology(events_topic: &str) -> anyhow::Result<Topology> {
    let builder = StreamsBuilder::new();
    let users =
        builder.table(USERS, Consumed::with(Serdes::string(), Serdes::json::<User>()), Materialized::named("users"));
    builder
        .stream(events_topic, Consumed::with(Serdes::string(), Serdes::json::<Event>()))
        .filter(|_, e| e.action == "purchase")
        .join_table(&users, |e: &Event, u: &User| (u.tier.clone(), e.amount_cents), Serdes::json())
        .group_by(
            |_, (tier, _): &(String, i64)| tier.clone(),
            Grouped::with(Serdes::string(), Serdes::json()).named("by-tier"),
        )
        .windowed_by(TimeWindows::of_size_and_grace(WINDOW, GRACE))
        .emit_strategy(EmitStrategy::OnWindowClose)
        .aggregate(
            || (0i64, 0i64),
            |_, (_, cents): &(String, i64), (n, sum): (i64, i64)| (n + 1, sum + cents),
            Serdes::json(),
            Materialized::named("revenue"),
        )
        .to_stream()
        .map(|w: &Windowed<String>, v: &Option<(i64, i64)>| {
            let (n, cents) = v.unwrap_or((0, 0));
            let minute = |ms: i64| format!("{:02}:{:02}", ms / 3_600_000 % 24, ms / 60_000 % 60);
            let line = format!(
                "[{}-{}) {:>6}: {n:>6} purchases, {:>12.2} in total",
                minute(w.start),
                minute(w.end),
                w.key,
                cents as f64 / 100.0
            );
            (w.key.clone(), line)
        })
        .to(OUTPUT, Produced::with(Serdes::string(), Serdes::string()));
    Ok(builder.build()?)
}

/// Runs the topology over the `n_events` events of `events_topic` (the last stamped `last_ts`),
/// printing each minute's revenue per tier as the window closes.
pub(crate) async fn run(
    log: &Embedded,
    data_dir: &Path,
    events_topic: &str,
    partitions: u32,
    n_events: u64,
    last_ts: i64,
) -> anyhow::Result<()> {
    say("Running a streams application over them (join, windowed aggregation, emit-final)...");
    let admin = log.admin();
    // A fresh start: the previous run's output, table and application topics go.
    for t in admin.list_topics().await? {
        if t.name == USERS || t.name == OUTPUT || t.name.starts_with(APP_PREFIX) {
            admin.delete_topic(&t.name).await?;
        }
    }
    let state_dir = data_dir.join("streams-state");
    if state_dir.exists() {
        std::fs::remove_dir_all(&state_dir).with_context(|| format!("removing {}", state_dir.display()))?;
    }
    admin.create_topic(NewTopic { name: USERS.into(), n_partitions: partitions, configs: Default::default() }).await?;
    let users: Vec<ProducerRecord> = (0..1000u64)
        .map(|i| {
            let user = User { name: format!("User {i}"), tier: tier(i).into() };
            let mut r =
                ProducerRecord::new(USERS, Some(format!("user-{i:04}")), serde_json::to_vec(&user).expect("JSON"));
            r.timestamp = Some(0);
            r
        })
        .collect();
    log.producer().send(users).await?;
    say(&format!("  table \"{USERS}\": 1000 users in gold, silver and bronze tiers"));
    let topology = topology(events_topic)?;
    let mut config = StreamsConfig::new(&format!("{APP_PREFIX}-{}", std::process::id()))?;
    config.state_dir = state_dir;
    config.commit_interval = Duration::from_secs(1);
    let substrate = log.clone();
    let handle = tokio::runtime::Handle::current();
    let started = Instant::now();
    let app = tokio::task::spawn_blocking(move || -> anyhow::Result<StreamsApp> {
        let mut app = StreamsApp::new(topology, substrate, config, handle)?;
        app.start()?;
        Ok(app)
    })
    .await??;

    // Print the results as they come, until every input is read and nothing new came for a second;
    // then once more after the closing purchases.
    // One purchase of nothing per tier, a window and the grace period after the last event: it
    // moves each tier's event time on, so the last windows close and are emitted.
    let closing: Vec<ProducerRecord> = [0u64, 3, 1]
        .iter()
        .map(|&i| {
            let user = format!("user-{i:04}");
            let event = Event { id: u64::MAX, user: user.clone(), action: "purchase".into(), amount_cents: 0 };
            let mut r = ProducerRecord::new(events_topic, Some(user), serde_json::to_vec(&event).expect("JSON"));
            r.timestamp = Some(last_ts + (WINDOW + GRACE).as_millis() as i64 + 1_000);
            r
        })
        .collect();

    let mut consumer = log.consumer(ConsumerConfig::default());
    consumer.assign((0..partitions).map(|p| TopicPartition::new(OUTPUT, p)).collect()).await?;
    // What the application reads: every event, every user, and every purchase (a third of the
    // events) once more from the repartition topic; then the closing purchases, twice each.
    let before_closing = n_events + 1000 + n_events / 3;
    let mut quiet_since = Instant::now();
    let mut n_results = 0;
    let mut results_before_closing = 0;
    let mut closing = Some(closing);
    loop {
        let mut got = false;
        for batches in consumer.poll(Duration::from_millis(100)).await? {
            for r in batches.records()? {
                say(&format!("  {}", String::from_utf8_lossy(r.value.as_deref().unwrap_or_default())));
                n_results += 1;
                got = true;
            }
        }
        if got {
            quiet_since = Instant::now();
        }
        anyhow::ensure!(
            app.state() != StreamsState::Error,
            "the application failed: {}",
            app.error().unwrap_or_default()
        );
        let read = app.metrics().records_in;
        if closing.is_some() && read >= before_closing {
            // Sent only now: sent earlier, a closing purchase could overtake events of other
            // partitions and make them late.
            log.producer().send(closing.take().unwrap_or_default()).await?;
            results_before_closing = n_results;
        } else if closing.is_none() && read >= before_closing + 6 {
            // The closing purchases close the last windows: their results follow them (on a
            // loaded machine, a while after), so the wait for them is longer while none came.
            let quiet = quiet_since.elapsed();
            if quiet > Duration::from_millis(500)
                && (n_results > results_before_closing || quiet > Duration::from_secs(5))
            {
                break;
            }
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(600), "the application did not catch up in 10 minutes");
    }
    let metrics = app.metrics();
    tokio::task::spawn_blocking(move || app.close()).await??;
    let secs = started.elapsed().as_secs_f64();
    say(&format!(
        "  {n_results} window results in topic \"{OUTPUT}\"; {} records processed in {secs:.1} s ({:.0}/s), \
         {} late, mean {:.1} µs per record, {} commits",
        metrics.records_in,
        metrics.records_in as f64 / secs,
        metrics.late_records,
        metrics.process_latency.as_secs_f64() * 1e6,
        metrics.commits
    ));
    Ok(())
}
