//! The spool's own tests: order, recovery after a crash, a full spool.

use super::*;
use crate::protocol::{PluginFrame, parse_plugin_frame};

fn options(dir: &Path, memory: usize) -> SpoolOptions {
    SpoolOptions {
        dir: dir.to_owned(),
        max_bytes: 64 * 1024 * 1024,
        sync_interval: Duration::from_millis(5),
        memory,
        segment_bytes: 4096,
    }
}

fn telemetry(kills: i64) -> Event {
    let text = format!(
        r#"{{"type":"telemetry","character_name":"Ann","char_tag":"T","session_id":"s1",
            "timestamp":"2026-12-06T10:00:00.123456Z","ew":"1.5","ns":-2.25,"z":3,
            "kills":{kills},"kills_per_hour":"12.5","onlinetime":"00.01:00:00","deaths":1,
            "total_deaths":4,"rares_found":0,"prismatic_taper_count":"7","vt_state":"Combat",
            "mem_mb":120.5,"cpu_pct":3,"mem_handles":100,"latency_ms":12}}"#
    );
    let Ok(PluginFrame::Telemetry(row)) = parse_plugin_frame(&text) else {
        panic!("telemetry")
    };
    Event::Telemetry {
        row,
        kills_delta: 1,
        kills_baseline: kills,
    }
}

fn every_kind() -> Vec<Event> {
    let frame = |text: &str| parse_plugin_frame(text).expect("frame");
    let mut events = vec![telemetry(5)];
    if let PluginFrame::Spawn(s) = frame(
        r#"{"type":"spawn","character_name":"Ann","mob":"Drudge","ew":1,"ns":2,"z":0,"timestamp":"2026-12-06T10:00:00Z"}"#,
    ) {
        events.push(Event::Spawn(s));
    }
    if let PluginFrame::Rare(r) = frame(
        r#"{"type":"rare","character_name":"Ann","name":"Gem","ew":1,"ns":2,"z":0,"timestamp":"2026-12-06T10:00:00Z"}"#,
    ) {
        events.push(Event::Rare {
            rare: r,
            session_id: Some("s1".into()),
        });
    }
    if let PluginFrame::CharacterStats(sheet) = frame(
        r#"{"type":"character_stats","character_name":"Ann","level":"275","total_xp":123,"title":"Hero","attributes":{"strength":{"base":100,"creation":10}},"timestamp":"2026-12-06T10:00:00Z"}"#,
    ) {
        events.push(Event::Sheet(sheet));
    }
    if let PluginFrame::Portal(p) = frame(
        r#"{"type":"portal","character_name":"Ann","portal_name":"Town","ew":1,"ns":2,"z":0,"timestamp":"2026-12-06T10:00:00Z"}"#,
    ) {
        events.push(Event::Portal {
            portal: p,
            session_id: None,
        });
    }
    assert_eq!(events.len(), 5, "one of every kind");
    events
}

async fn read_all(reader: &mut SpoolReader, want: usize) -> Vec<(u64, Event)> {
    let mut out = Vec::new();
    while out.len() < want {
        let mut batch = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), reader.next_batch(&mut batch, 7))
            .await
            .expect("events arrive");
        out.extend(batch);
    }
    out
}

#[test]
fn every_event_kind_reads_back_as_it_was() {
    for event in every_kind() {
        let bytes = serde_json::to_vec(&event).expect("encode");
        let back: Event = serde_json::from_slice(&bytes).expect("decode");
        assert_eq!(back, event);
    }
}

#[tokio::test]
async fn events_come_back_in_order_through_memory_and_files() {
    let dir = tempfile::tempdir().expect("dir");
    // Room for 3 in memory: the rest go by the files (a database outage).
    let (spool, mut reader) = Spool::open(&options(dir.path(), 3)).expect("open");
    let mut seqs = Vec::new();
    for kills in 0..50 {
        seqs.push(spool.append(telemetry(kills)).await.expect("append"));
    }
    assert_eq!(seqs, (0..50).collect::<Vec<_>>());
    assert!(
        segment::list(dir.path()).expect("list").len() > 1,
        "rotated"
    );
    let got = read_all(&mut reader, 50).await;
    let kills: Vec<i64> = got
        .iter()
        .map(|(_, e)| match e {
            Event::Telemetry { kills_baseline, .. } => *kills_baseline,
            _ => -1,
        })
        .collect();
    assert_eq!(kills, (0..50).collect::<Vec<_>>());
    assert_eq!(spool.status().depth, 50);
    // Back in memory once caught up.
    spool.append(telemetry(50)).await.expect("append");
    assert_eq!(read_all(&mut reader, 1).await[0].0, 50);
    spool.committed(50);
    spool.sync().await;
    let status = spool.status();
    assert_eq!(status.depth, 0);
    assert_eq!(
        segment::list(dir.path()).expect("list").len(),
        1,
        "only the segment being written is left"
    );
}

#[tokio::test]
async fn a_restarted_spool_hands_out_what_was_not_committed() {
    let dir = tempfile::tempdir().expect("dir");
    {
        let (spool, _reader) = Spool::open(&options(dir.path(), 100)).expect("open");
        for kills in 0..20 {
            spool.append(telemetry(kills)).await.expect("append");
        }
        spool.committed(9);
        spool.sync().await;
    }
    // The thread ends when the last handle goes; give it the moment to let go of the lock.
    let (spool, mut reader) = loop {
        match Spool::open(&options(dir.path(), 100)) {
            Ok(opened) => break opened,
            Err(OpenError::Locked(_)) => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(err) => panic!("{err}"),
        }
    };
    assert!(spool.status().replayed_at_start >= 10);
    // The database says 0..=9 are stored.
    reader.skip_to(10);
    let got = read_all(&mut reader, 10).await;
    assert_eq!(
        got.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        (10..20).collect::<Vec<_>>()
    );
    // New events continue the numbering.
    assert_eq!(spool.append(telemetry(99)).await.expect("append"), 20);
}

#[tokio::test]
async fn a_torn_last_record_is_cut_away_and_a_second_tracker_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let (spool, _reader) = Spool::open(&options(dir.path(), 100)).expect("open");
    assert!(matches!(
        Spool::open(&options(dir.path(), 100)),
        Err(OpenError::Locked(_))
    ));
    for kills in 0..3 {
        spool.append(telemetry(kills)).await.expect("append");
    }
    spool.sync().await;
    drop(spool);
    drop(_reader);
    let last = *segment::list(dir.path())
        .expect("list")
        .last()
        .expect("a segment");
    let path = segment::path(dir.path(), last);
    let len = std::fs::metadata(&path).expect("meta").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open")
        .set_len(len - 5)
        .expect("cut");
    let (spool, mut reader) = loop {
        match Spool::open(&options(dir.path(), 100)) {
            Ok(opened) => break opened,
            Err(OpenError::Locked(_)) => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(err) => panic!("{err}"),
        }
    };
    let got = read_all(&mut reader, 2).await;
    assert_eq!(got.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![0, 1]);
    // The torn third event's number is used again by the next append.
    assert_eq!(spool.append(telemetry(7)).await.expect("append"), 2);
}

#[tokio::test]
async fn a_full_spool_refuses_and_counts() {
    let dir = tempfile::tempdir().expect("dir");
    let mut small = options(dir.path(), 100);
    small.max_bytes = 3_000;
    let (spool, _reader) = Spool::open(&small).expect("open");
    let mut refused = 0;
    for kills in 0..20 {
        match spool.append(telemetry(kills)).await {
            Ok(_) => {}
            Err(SpoolError::Full(_)) => refused += 1,
            Err(other) => panic!("{other}"),
        }
    }
    assert!(refused > 0);
    assert!(spool.has_room().is_err());
    assert_eq!(spool.status().refused, refused + 1);

    // Once the database has stored all of it, its space is free again although it sat in
    // the segment being written (a small disk holds one segment).
    let last = spool.head() - 1;
    spool.committed(last);
    let deadline = Instant::now() + Duration::from_secs(5);
    while spool.status().bytes > 0 || spool.has_room().is_err() {
        assert!(
            Instant::now() < deadline,
            "space not freed: {:?}",
            spool.status()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        spool.append(telemetry(99)).await.expect("room again"),
        last + 1
    );
    assert_eq!(segment::list(dir.path()).expect("list"), vec![last + 1]);
}
