//! How messages travel on a bus: packets (a sender, its packet number, a few messages), and the
//! chunks a packet is cut into when it is larger than the bus carries (PostgreSQL's NOTIFY takes
//! under 8,000 bytes).

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::Sha256;

/// Bytes a signature adds to a bus message: 64 hex digits and a newline.
pub(crate) const SIGNATURE_LEN: usize = 65;

/// Signs a packet for the bus: the hex HMAC-SHA256 of the packet with the cluster's key, a
/// newline, then the packet.
pub(crate) fn sign(key: &[u8], packet: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(packet.as_bytes());
    let tag: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{tag}\n{packet}")
}

/// The packet of a signed bus message, when its HMAC is right (compared in constant time).
pub(crate) fn verify<'a>(key: &[u8], signed: &'a str) -> Option<&'a str> {
    let (tag, packet) = signed.split_once('\n')?;
    let tag: Vec<u8> = (0..tag.len() / 2)
        .map(|i| u8::from_str_radix(tag.get(2 * i..2 * i + 2)?, 16).ok())
        .collect::<Option<_>>()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
    mac.update(packet.as_bytes());
    mac.verify_slice(&tag).ok()?;
    Some(packet)
}

/// A packet as sent.
#[derive(Debug, Serialize)]
pub(super) struct PacketOut<'a> {
    pub from: &'a str,
    /// Random per process: a restarted instance under the same name is a new peer.
    pub boot: u64,
    pub seq: u64,
    pub msgs: &'a [Box<RawValue>],
}

/// A packet as received.
#[derive(Debug, Deserialize)]
pub(super) struct PacketIn {
    pub from: String,
    #[serde(default)]
    pub boot: u64,
    pub seq: u64,
    /// Each message is parsed on its own, so one this version does not know costs only itself.
    pub msgs: Vec<Box<RawValue>>,
}

/// Marks a chunk of a packet too large for one bus message.
const CHUNK_MARK: char = '~';

/// Splits `packet` into bus messages of at most `max` bytes (at character boundaries). A
/// packet that fits goes as it is; otherwise each piece is `~<sender> <packet> <i> <n> ` and
/// the text.
pub(super) fn chunks(packet: String, from: &str, seq: u64, max: usize) -> Vec<String> {
    if packet.len() <= max {
        return vec![packet];
    }
    let room = max.saturating_sub(from.len() + 64).max(256);
    let mut pieces = Vec::new();
    let mut rest = packet.as_str();
    while !rest.is_empty() {
        let mut end = room.min(rest.len());
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        pieces.push(&rest[..end]);
        rest = &rest[end..];
    }
    let n = pieces.len();
    pieces
        .into_iter()
        .enumerate()
        .map(|(i, piece)| format!("{CHUNK_MARK}{from} {seq} {i} {n} {piece}"))
        .collect()
}

/// Most chunks one packet may have (a state answer of thousands of characters fits).
const MAX_CHUNKS: usize = 4096;
/// Most senders with a packet in progress; more (a bus someone floods with forged senders)
/// drops them all, and the real senders' packets are asked for again.
const MAX_IN_PROGRESS: usize = 64;

/// Puts chunked packets back together; keeps at most one packet in progress per sender.
#[derive(Debug, Default)]
pub(super) struct Reassembly {
    partial: std::collections::HashMap<String, Partial>,
}

#[derive(Debug)]
struct Partial {
    seq: u64,
    expected: usize,
    text: String,
}

impl Reassembly {
    /// Takes one bus message; returns a whole packet when one is complete. A chunk out of order
    /// (one was lost) drops the packet in progress: the receiver then notices the gap in packet
    /// numbers and asks for the sender's state.
    pub(super) fn accept(&mut self, message: String) -> Option<String> {
        let Some(chunk) = message.strip_prefix(CHUNK_MARK) else {
            return Some(message);
        };
        let mut fields = chunk.splitn(5, ' ');
        let from = fields.next()?;
        let seq: u64 = fields.next()?.parse().ok()?;
        let i: usize = fields.next()?.parse().ok()?;
        let n: usize = fields.next()?.parse().ok()?;
        let piece = fields.next().unwrap_or("");
        if n == 0 || n > MAX_CHUNKS || i >= n {
            return None;
        }
        if i == 0 {
            if self.partial.len() >= MAX_IN_PROGRESS && !self.partial.contains_key(from) {
                self.partial.clear();
            }
            let partial = Partial {
                seq,
                expected: 0,
                text: String::new(),
            };
            self.partial.insert(from.to_owned(), partial);
        }
        let partial = self.partial.get_mut(from)?;
        if partial.seq != seq || partial.expected != i {
            self.partial.remove(from);
            return None;
        }
        partial.text.push_str(piece);
        partial.expected += 1;
        if partial.expected < n {
            return None;
        }
        self.partial.remove(from).map(|p| p.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_packet_is_chunked_and_put_back_together() {
        let packet = format!("{{\"x\":\"{}\"}}", "é".repeat(20_000));
        let parts = chunks(packet.clone(), "node-a", 7, 7_800);
        assert!(parts.len() > 5);
        assert!(parts.iter().all(|p| p.len() <= 7_800));
        let mut r = Reassembly::default();
        let mut whole = None;
        for p in parts {
            assert!(whole.is_none());
            whole = r.accept(p);
        }
        assert_eq!(whole.as_deref(), Some(packet.as_str()));
    }

    #[test]
    fn only_packets_signed_with_the_key_are_read() {
        let signed = sign(b"cluster-key", r#"{"from":"a","seq":1,"msgs":[]}"#);
        assert_eq!(
            verify(b"cluster-key", &signed),
            Some(r#"{"from":"a","seq":1,"msgs":[]}"#)
        );
        assert_eq!(verify(b"another-key", &signed), None);
        let forged = signed.replace("\"seq\":1", "\"seq\":2");
        assert_eq!(verify(b"cluster-key", &forged), None, "tampered");
        assert_eq!(verify(b"cluster-key", r#"{"from":"a"}"#), None, "unsigned");
        assert_eq!(verify(b"cluster-key", "zz\n{}"), None, "not hex");
    }

    #[test]
    fn a_missing_chunk_drops_the_packet() {
        let packet = "y".repeat(30_000);
        let mut parts = chunks(packet, "node-a", 1, 7_800);
        parts.remove(1);
        let mut r = Reassembly::default();
        assert!(parts.into_iter().all(|p| r.accept(p).is_none()));
        // A small packet afterwards still gets through.
        assert_eq!(r.accept("{}".into()).as_deref(), Some("{}"));
    }

    #[test]
    fn packets_in_progress_are_bounded() {
        let mut r = Reassembly::default();
        for sender in 0..1_000 {
            let _ = r.accept(format!("~s{sender} 1 0 2 x"));
        }
        assert!(r.partial.len() <= MAX_IN_PROGRESS);
    }

    #[test]
    fn forged_chunk_headers_are_ignored() {
        let mut r = Reassembly::default();
        for bad in [
            "~a",
            "~a x 0 1 z",
            "~a 1 5 2 z",
            "~a 1 0 99999999 z",
            "~a 1 0 0 z",
        ] {
            assert_eq!(r.accept(bad.into()), None, "{bad}");
        }
    }
}
