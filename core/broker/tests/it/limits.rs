//! Connection limits, as Kafka's `max.connections` and `max.connections.per.ip`: over the
//! per-address limit a new connection is closed at once; at the broker-wide limit the next
//! connection waits, unserved, until one closes.

use std::time::Duration;

use freshet_broker::{Broker, BrokerConfig};
use freshet_core::config::LogConfig;
use freshet_core::Embedded;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An ApiVersions v0 request (header v1: key, version, correlation id, no client id).
fn api_versions_frame(correlation_id: i32) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&18i16.to_be_bytes());
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&correlation_id.to_be_bytes());
    body.extend_from_slice(&(-1i16).to_be_bytes());
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// Sends ApiVersions and reads the answer's correlation id; `None` when the connection is
/// closed, or nothing comes within `wait`.
async fn ask(stream: &mut TcpStream, correlation_id: i32, wait: Duration) -> Option<i32> {
    stream.write_all(&api_versions_frame(correlation_id)).await.ok()?;
    let answer = async {
        let size = stream.read_i32().await.ok()?;
        let mut response = vec![0u8; usize::try_from(size).ok()?];
        stream.read_exact(&mut response).await.ok()?;
        Some(i32::from_be_bytes(response[..4].try_into().ok()?))
    };
    tokio::time::timeout(wait, answer).await.ok().flatten()
}

async fn broker(dir: &std::path::Path, config: BrokerConfig) -> (Embedded, Broker) {
    let embedded = Embedded::open(dir, LogConfig::default()).await.unwrap();
    let config = BrokerConfig { listen: "127.0.0.1:0".parse().unwrap(), ..config };
    let broker = Broker::start(embedded.log().clone(), embedded.group_offsets().clone(), config).await.unwrap();
    (embedded, broker)
}

#[tokio::test]
async fn a_connection_over_the_per_address_limit_is_closed_and_the_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let (embedded, broker) = broker(dir.path(), BrokerConfig { max_connections_per_ip: 2, ..Default::default() }).await;
    let addr = broker.local_addr();
    let mut first = TcpStream::connect(addr).await.unwrap();
    let mut second = TcpStream::connect(addr).await.unwrap();
    assert_eq!(ask(&mut first, 1, Duration::from_secs(10)).await, Some(1));
    assert_eq!(ask(&mut second, 2, Duration::from_secs(10)).await, Some(2));
    let mut third = TcpStream::connect(addr).await.unwrap();
    assert_eq!(ask(&mut third, 3, Duration::from_secs(10)).await, None, "a third from one address is closed");
    assert_eq!(ask(&mut first, 4, Duration::from_secs(10)).await, Some(4), "the first two go on");
    // Once one closes, the address may connect again.
    drop(second);
    let mut again = None;
    for attempt in 0..50 {
        let mut fourth = TcpStream::connect(addr).await.unwrap();
        again = ask(&mut fourth, 5, Duration::from_secs(10)).await;
        if again.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
    }
    assert_eq!(again, Some(5));
    broker.stop().await;
    embedded.close().await.unwrap();
}

#[tokio::test]
async fn at_the_connection_limit_the_next_connection_waits_until_one_closes() {
    let dir = tempfile::tempdir().unwrap();
    let (embedded, broker) = broker(dir.path(), BrokerConfig { max_connections: 1, ..Default::default() }).await;
    let addr = broker.local_addr();
    let mut first = TcpStream::connect(addr).await.unwrap();
    assert_eq!(ask(&mut first, 1, Duration::from_secs(10)).await, Some(1));
    // The kernel completes the handshake; the broker does not take the connection up.
    let mut second = TcpStream::connect(addr).await.unwrap();
    assert_eq!(ask(&mut second, 2, Duration::from_millis(500)).await, None, "served over the limit");
    drop(first);
    // Its request was sent already: the answer comes once the broker takes the connection.
    let answer = async {
        let size = second.read_i32().await.ok()?;
        let mut response = vec![0u8; usize::try_from(size).ok()?];
        second.read_exact(&mut response).await.ok()?;
        Some(i32::from_be_bytes(response[..4].try_into().ok()?))
    };
    assert_eq!(tokio::time::timeout(Duration::from_secs(10), answer).await.ok().flatten(), Some(2));
    broker.stop().await;
    embedded.close().await.unwrap();
}

#[tokio::test]
async fn a_limit_of_zero_is_refused_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = Embedded::open(dir.path(), LogConfig::default()).await.unwrap();
    for (config, key) in [
        (BrokerConfig { max_connections: 0, ..Default::default() }, "max.connections"),
        (BrokerConfig { max_connections_per_ip: 0, ..Default::default() }, "max.connections.per.ip"),
    ] {
        let config = BrokerConfig { listen: "127.0.0.1:0".parse().unwrap(), ..config };
        let e = Broker::start(embedded.log().clone(), embedded.group_offsets().clone(), config).await.unwrap_err();
        assert!(e.to_string().contains(key), "{e}");
    }
    embedded.close().await.unwrap();
}
