//! Kafka's consumer protocol: the subscription a member sends in JoinGroup and the assignment the
//! leader hands out in SyncGroup, as the Java client writes them. Members of one group exchange
//! these whoever they are (the embedded substrate's consumers, librdkafka, the Java client), so a
//! group may mix them.
//!
//! Subscription: version (i16), topics (array of strings), user data (nullable bytes); versions 1
//! and later append owned partitions, a generation and a rack, which are read past. Assignment:
//! version (i16), partitions (array of topic, array of i32), user data.

use bytes::{BufMut, Bytes, BytesMut};

use crate::group::TopicPartition;

/// The subscription of a member: the topics it reads (version 0, no user data).
pub fn encode_subscription(topics: &[String]) -> Bytes {
    let mut out = BytesMut::new();
    out.put_i16(0);
    out.put_i32(topics.len() as i32);
    for topic in topics {
        put_string(&mut out, topic);
    }
    out.put_i32(-1);
    out.freeze()
}

/// The topics of a subscription of any version; `None` when the bytes are not one.
pub fn decode_subscription(bytes: &[u8]) -> Option<Vec<String>> {
    let mut r = Reader(bytes);
    let _version = r.i16()?;
    let n = r.i32()?;
    let mut topics = Vec::new();
    for _ in 0..n.max(0) {
        topics.push(r.string()?);
    }
    Some(topics)
}

/// An assignment of `partitions` (version 0, no user data), by topic in order.
pub fn encode_assignment(partitions: &[TopicPartition]) -> Bytes {
    let mut by_topic: std::collections::BTreeMap<&str, Vec<i32>> = std::collections::BTreeMap::new();
    for tp in partitions {
        by_topic.entry(tp.topic.as_str()).or_default().push(tp.partition as i32);
    }
    let mut out = BytesMut::new();
    out.put_i16(0);
    out.put_i32(by_topic.len() as i32);
    for (topic, ps) in by_topic {
        put_string(&mut out, topic);
        out.put_i32(ps.len() as i32);
        for p in ps {
            out.put_i32(p);
        }
    }
    out.put_i32(-1);
    out.freeze()
}

/// The partitions of an assignment of any version (empty bytes: none); `None` when the bytes are
/// not one.
pub fn decode_assignment(bytes: &[u8]) -> Option<Vec<TopicPartition>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let mut r = Reader(bytes);
    let _version = r.i16()?;
    let mut out = Vec::new();
    for _ in 0..r.i32()?.max(0) {
        let topic = r.string()?;
        for _ in 0..r.i32()?.max(0) {
            out.push(TopicPartition::new(topic.as_str(), u32::try_from(r.i32()?).ok()?));
        }
    }
    Some(out)
}

fn put_string(out: &mut BytesMut, s: &str) {
    out.put_i16(s.len() as i16);
    out.put_slice(s.as_bytes());
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn string(&mut self) -> Option<String> {
        let n = usize::try_from(self.i16()?).ok()?;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_and_assignments_round_trip_and_newer_versions_are_read() {
        let topics = vec!["a".to_string(), "bb".to_string()];
        assert_eq!(decode_subscription(&encode_subscription(&topics)), Some(topics));
        // A version 1 subscription as the Java client writes it: owned partitions follow.
        let mut v1 = BytesMut::new();
        v1.put_i16(1);
        v1.put_i32(1);
        put_string(&mut v1, "t");
        v1.put_i32(-1);
        v1.put_i32(0);
        assert_eq!(decode_subscription(&v1), Some(vec!["t".to_string()]));
        let partitions = vec![TopicPartition::new("a", 0), TopicPartition::new("a", 2), TopicPartition::new("b", 1)];
        assert_eq!(decode_assignment(&encode_assignment(&partitions)), Some(partitions));
        assert_eq!(decode_assignment(&[]), Some(Vec::new()));
        assert_eq!(decode_assignment(&[0, 0, 0, 0, 0, 9]), None, "a topic count past the bytes");
    }
}
