//! Requests from this broker to the others, in Kafka's protocol, on their client listeners (the
//! inter-broker listener is the client listener: every listener is PLAINTEXT): the transaction
//! coordinator's WriteTxnMarkers.
//!
//! One connection per broker, opened on first use and again after any failure; requests on it go
//! one at a time. A broker's address comes from the metadata image at each call, so a broker that
//! came back elsewhere is found there.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest response accepted from another broker.
const MAX_RESPONSE: usize = 64 << 20;

/// Connections from this broker to the others.
#[derive(Debug)]
pub(crate) struct Links {
    client_id: StrBytes,
    timeout: Duration,
    next_correlation: AtomicI32,
    connections: Mutex<HashMap<i32, Arc<tokio::sync::Mutex<Option<Connection>>>>>,
}

#[derive(Debug)]
struct Connection {
    address: (String, u16),
    stream: TcpStream,
}

impl Links {
    /// Links of broker `node_id`; every request is given up after `timeout`.
    pub(crate) fn new(node_id: i32, timeout: Duration) -> Self {
        Links {
            client_id: StrBytes::from_string(format!("freshet-broker-{node_id}")),
            timeout,
            next_correlation: AtomicI32::new(0),
            connections: Mutex::new(HashMap::new()),
        }
    }

    /// Sends `request` at `version` to broker `node` at `address`, and returns its response.
    /// The error names the broker and what failed.
    pub(crate) async fn send<R: Request>(
        &self,
        node: i32,
        address: (String, u16),
        version: i16,
        request: &R,
    ) -> Result<R::Response, String> {
        let slot = self.connections.lock().expect("links lock").entry(node).or_default().clone();
        let mut connection = slot.lock().await;
        // Taken out for the exchange and put back only after a whole response: a stream that may
        // hold half a request or a late response (a failure, a timeout, a caller that gave up)
        // is never reused.
        let taken = connection.take().filter(|c| c.address == address);
        let exchanged = tokio::time::timeout(self.timeout, async {
            let mut c = match taken {
                Some(c) => c,
                None => {
                    let stream = TcpStream::connect((address.0.as_str(), address.1))
                        .await
                        .map_err(|e| format!("connecting to {}:{}: {e}", address.0, address.1))?;
                    let _ = stream.set_nodelay(true);
                    Connection { address: address.clone(), stream }
                }
            };
            let response = self.exchange(&mut c.stream, version, request).await?;
            Ok::<_, String>((c, response))
        })
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} ms", self.timeout.as_millis())));
        match exchanged {
            Ok((c, response)) => {
                *connection = Some(c);
                Ok(response)
            }
            Err(e) => Err(format!("broker {node}: {e}")),
        }
    }

    async fn exchange<R: Request>(
        &self,
        stream: &mut TcpStream,
        version: i16,
        request: &R,
    ) -> Result<R::Response, String> {
        let correlation_id = self.next_correlation.fetch_add(1, Ordering::Relaxed);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let mut frame = BytesMut::new();
        frame.extend_from_slice(&[0; 4]);
        header.encode(&mut frame, R::header_version(version)).map_err(|e| format!("encoding a request header: {e}"))?;
        request.encode(&mut frame, version).map_err(|e| format!("encoding a request: {e}"))?;
        let size = (frame.len() - 4) as u32;
        frame[..4].copy_from_slice(&size.to_be_bytes());
        stream.write_all(&frame).await.map_err(|e| format!("sending a request: {e}"))?;
        let size = stream.read_u32().await.map_err(|e| format!("reading a response size: {e}"))? as usize;
        if size > MAX_RESPONSE {
            return Err(format!("a response of {size} bytes (the maximum is {MAX_RESPONSE})"));
        }
        let mut body = vec![0u8; size];
        stream.read_exact(&mut body).await.map_err(|e| format!("reading a response of {size} bytes: {e}"))?;
        let mut body = Bytes::from(body);
        let header = ResponseHeader::decode(&mut body, R::Response::header_version(version))
            .map_err(|e| format!("decoding a response header: {e}"))?;
        if header.correlation_id != correlation_id {
            return Err(format!("a response to request {} where {correlation_id} was awaited", header.correlation_id));
        }
        R::Response::decode(&mut body, version).map_err(|e| format!("decoding a response: {e}"))
    }
}
