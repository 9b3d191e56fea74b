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
pub fn sign(key: &[u8], packet: &str) -> String {
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

/// The bus format this build writes. Additive changes (a new message kind, a new optional
/// field) keep it: older builds ignore what they do not know. A change an older build could
/// misread raises it, and the build that raises it still reads the previous version, so a
/// rolling upgrade (old and new instances on one bus for a while) keeps working.
pub const BUS_VERSION: u32 = 2;
/// The oldest bus format this build reads: 1 is the format before packets carried a version.
pub(crate) const OLDEST_READABLE: u32 = 1;

/// A packet as sent.
#[derive(Debug, Serialize)]
pub(super) struct PacketOut<'a> {
    /// [`BUS_VERSION`].
    pub v: u32,
    pub from: &'a str,
    /// Random per process: a restarted instance under the same name is a new peer.
    pub boot: u64,
    pub seq: u64,
    pub msgs: &'a [Box<RawValue>],
}

/// A packet as received.
#[derive(Debug, Deserialize)]
pub(super) struct PacketIn {
    /// Its bus format; packets of builds before versions were written are version 1.
    #[serde(default = "first_version")]
    pub v: u32,
    pub from: String,
    #[serde(default)]
    pub boot: u64,
    pub seq: u64,
    /// Each message is parsed on its own, so one this version does not know costs only itself.
    pub msgs: Vec<Box<RawValue>>,
}

fn first_version() -> u32 {
    1
}

impl PacketIn {
    /// Whether this build can read the packet's format.
    pub(super) fn readable(&self) -> bool {
        (OLDEST_READABLE..=BUS_VERSION).contains(&self.v)
    }
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

    /// A packet exactly as the build before bus versions sent it (recorded from its tests'
    /// bus): read as version 1, its messages understood.
    const RECORDED_V1: &str = r#"{"from":"bench-plugins","boot":5871936310785871711,"seq":42,"msgs":[{"t":"claimed","c":{"name":"Olthoi Slayer","at_ms":1764849600000}},{"t":"heartbeat","c":{"plugins":3,"browsers":0,"owned":3}},{"t":"hello","c":{"to":null}},{"t":"released","c":{"names":["Olthoi Slayer"]}},{"t":"bye"}]}"#;

    /// The packet as the build before bus versions read it (its `PacketIn`).
    #[derive(Debug, Deserialize)]
    struct PacketInV1 {
        from: String,
        #[serde(default)]
        boot: u64,
        seq: u64,
        msgs: Vec<Box<RawValue>>,
    }

    #[test]
    fn the_previous_bus_format_and_this_one_read_each_other() {
        let old: PacketIn = serde_json::from_str(RECORDED_V1).expect("a v1 packet");
        assert_eq!(old.v, 1);
        assert!(old.readable());
        assert_eq!((old.from.as_str(), old.seq), ("bench-plugins", 42));
        for raw in &old.msgs {
            serde_json::from_str::<super::super::message::Message>(raw.get())
                .unwrap_or_else(|e| panic!("{raw}: {e}"));
        }
        // What this build sends, the previous one reads (it ignores `v`).
        let msgs = old.msgs.clone();
        let text = serde_json::to_string(&PacketOut {
            v: BUS_VERSION,
            from: "new",
            boot: 9,
            seq: 1,
            msgs: &msgs,
        })
        .expect("json");
        let read_by_old: PacketInV1 = serde_json::from_str(&text).expect("old build reads it");
        assert_eq!(
            (read_by_old.from.as_str(), read_by_old.boot, read_by_old.seq),
            ("new", 9, 1)
        );
        assert_eq!(read_by_old.msgs.len(), 5);
        let again: PacketIn = serde_json::from_str(&text).expect("this build reads it");
        assert_eq!(again.v, BUS_VERSION);
        assert!(again.readable());
    }

    #[test]
    fn a_bus_format_this_build_cannot_read_is_refused() {
        let newer = RECORDED_V1.replacen('{', &format!(r#"{{"v":{},"#, BUS_VERSION + 1), 1);
        let packet: PacketIn = serde_json::from_str(&newer).expect("parses");
        assert!(!packet.readable());
        let ancient = RECORDED_V1.replacen('{', r#"{"v":0,"#, 1);
        let packet: PacketIn = serde_json::from_str(&ancient).expect("parses");
        assert!(!packet.readable());
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
