//! `EVENT_FORMATS.json` is the wire contract: every example in it must be exactly what the real
//! parser accepts and what the real serializer produces.

use std::time::Duration;

use dereth_tracker::protocol::{
    BroadcastOutcome, BrowserFrame, BrowserOut, CommandStatus, FrameType, PluginCommand,
    PluginErrorOut, PluginFrame, parse_browser_frame, parse_plugin_frame, to_json,
};
use dereth_tracker::testing::{Live, apply_plugin_frame};
use serde_json::Value;

fn contract() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/EVENT_FORMATS.json"))
        .expect("EVENT_FORMATS.json is readable");
    serde_json::from_str(&text).expect("EVENT_FORMATS.json is JSON")
}

fn example<'a>(c: &'a Value, direction: &str, frame: &str) -> &'a Value {
    let v = &c[direction]["frames"][frame]["example"];
    assert!(v.is_object(), "{direction}.{frame} has an example");
    v
}

fn frames(c: &Value, direction: &str) -> Vec<String> {
    c[direction]["frames"]
        .as_object()
        .expect("frames object")
        .keys()
        .cloned()
        .collect()
}

/// Server time stamps (`last_seen`) differ run to run; everything else must match exactly.
fn without_last_seen(mut v: Value) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.remove("last_seen");
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).expect("server output is JSON")
}

#[test]
fn every_direction_documents_the_frames_the_code_knows() {
    let c = contract();
    let mut plugin = frames(&c, "plugin_to_server");
    plugin.sort();
    // Every type the tracker interprets has its frame documented, and nothing else.
    let mut interpreted: Vec<&str> = FrameType::ALL
        .into_iter()
        .filter(|t| !t.is_relayed())
        .map(FrameType::name)
        .collect();
    interpreted.sort_unstable();
    assert_eq!(plugin, interpreted);
    // Every relayed type the code knows is listed, and nothing else.
    let relayed: Vec<String> = c["plugin_to_server"]["relayed"]["types"]
        .as_array()
        .expect("relayed types")
        .iter()
        .filter_map(|t| t.as_str()?.split(' ').next().map(str::to_owned))
        .collect();
    let known: Vec<String> = FrameType::ALL
        .into_iter()
        .filter(|t| t.is_relayed())
        .map(|t| match t {
            FrameType::Share => "share_*".to_owned(),
            t => t.name().to_owned(),
        })
        .collect();
    assert_eq!(relayed, known);
    let mut browser_in = frames(&c, "browser_to_server");
    browser_in.sort();
    assert_eq!(
        browser_in,
        ["broadcast", "command", "subscribe", "viewport"]
    );
    // Every interpreted type but `register` is pushed to browsers, beside the server's own.
    let mut browser_out = frames(&c, "server_to_browser");
    browser_out.sort();
    let mut pushed: Vec<&str> = interpreted
        .into_iter()
        .filter(|t| *t != "register")
        .chain([
            "batch",
            "broadcast_result",
            "command_result",
            "encoding",
            "error",
            "offline",
            "snapshot",
            "subscribed",
        ])
        .collect();
    pushed.sort_unstable();
    assert_eq!(browser_out, pushed);
}

#[test]
fn plugin_examples_parse_as_their_type() {
    let c = contract();
    for name in frames(&c, "plugin_to_server") {
        let ex = example(&c, "plugin_to_server", &name);
        let frame = parse_plugin_frame(&ex.to_string())
            .unwrap_or_else(|e| panic!("example `{name}` is rejected: {e}"));
        assert_eq!(frame.kind().map(FrameType::name), Some(name.as_str()));
        assert_eq!(frame.character_name(), Some("Olthoi Slayer"));
    }
}

/// Instances of a cluster pass accepted frames on in their wire form: it must read back as the
/// very same frame (defaults such as a missing timestamp filled in once, by the owner).
#[test]
fn plugin_frames_read_back_from_their_wire_form() {
    let c = contract();
    for name in frames(&c, "plugin_to_server") {
        let mut ex = example(&c, "plugin_to_server", &name).clone();
        let frame = parse_plugin_frame(&ex.to_string()).expect("example parses");
        let wire = frame
            .to_wire()
            .unwrap_or_else(|| panic!("`{name}` has a wire form"));
        let back = parse_plugin_frame(&wire)
            .unwrap_or_else(|e| panic!("`{name}` wire form {wire} is rejected: {e}"));
        assert_eq!(back, frame, "{name}: {wire}");
        // Without a timestamp the owner's clock fills it in, and the wire form keeps it.
        if let Some(obj) = ex.as_object_mut()
            && obj.remove("timestamp").is_some()
        {
            let stamped = parse_plugin_frame(&ex.to_string()).expect("parses");
            let again = parse_plugin_frame(&stamped.to_wire().expect("wire")).expect("parses");
            assert_eq!(again, stamped, "{name} without a timestamp");
        }
    }
}

#[test]
fn browser_examples_parse_as_their_type() {
    let c = contract();
    let sub = parse_browser_frame(&example(&c, "browser_to_server", "subscribe").to_string())
        .expect("subscribe example");
    assert!(matches!(sub, BrowserFrame::Subscribe { ref types } if types.len() == 3));
    let view = parse_browser_frame(&example(&c, "browser_to_server", "viewport").to_string())
        .expect("viewport example");
    assert!(matches!(view, BrowserFrame::Viewport(Some(v)) if v.contains(-20.5, 30.25)));
    let cmd = parse_browser_frame(&example(&c, "browser_to_server", "command").to_string())
        .expect("command example");
    assert_eq!(
        cmd,
        BrowserFrame::Command {
            player_name: "Olthoi Slayer".into(),
            command: "/vt start".into(),
            token: Some("the-command-token".into()),
        }
    );
}

#[test]
fn server_to_plugin_examples_match_the_serializer() {
    let c = contract();
    let command = to_json(&PluginCommand {
        player_name: "Olthoi Slayer".into(),
        command: "/vt stop".into(),
    });
    assert_eq!(&json(&command), example(&c, "server_to_plugin", "command"));

    let mut bad = example(&c, "plugin_to_server", "telemetry").clone();
    bad["ew"] = "east".into();
    let err = parse_plugin_frame(&bad.to_string()).expect_err("rejected");
    let reply = to_json(&PluginErrorOut {
        kind: "error",
        error: &err.to_string(),
    });
    assert_eq!(&json(&reply), example(&c, "server_to_plugin", "error"));
}

#[tokio::test]
async fn server_to_browser_examples_match_the_serializer() {
    let c = contract();
    let live = Live::standalone(Duration::from_secs(3600), 64);
    let mut hub = live.subscribe();
    let parse = |name: &str| {
        parse_plugin_frame(&example(&c, "plugin_to_server", name).to_string()).expect("example")
    };

    let PluginFrame::Telemetry(t) = parse("telemetry") else {
        panic!("telemetry example")
    };
    apply_plugin_frame(&live, PluginFrame::Telemetry(t.clone()));
    let sent = json(hub.try_recv().expect("telemetry broadcast").text.as_str());
    assert_eq!(
        without_last_seen(sent),
        without_last_seen(example(&c, "server_to_browser", "telemetry").clone())
    );

    let PluginFrame::Vitals(v) = parse("vitals") else {
        panic!("vitals example")
    };
    apply_plugin_frame(&live, PluginFrame::Vitals(v.clone()));
    let sent = json(hub.try_recv().expect("vitals broadcast").text.as_str());
    assert_eq!(&sent, example(&c, "server_to_browser", "vitals"));

    let PluginFrame::CharacterStats(sheet) = parse("character_stats") else {
        panic!("character_stats example")
    };
    apply_plugin_frame(&live, PluginFrame::CharacterStats(sheet.clone()));
    let sent = json(hub.try_recv().expect("sheet broadcast").text.as_str());
    assert_eq!(&sent, example(&c, "server_to_browser", "character_stats"));

    assert_eq!(
        without_last_seen(json(
            live.snapshot_frames(dereth_tracker::Encoding::Json)[0].as_str()
        )),
        without_last_seen(example(&c, "server_to_browser", "snapshot").clone())
    );

    let PluginFrame::Portal(p) = parse("portal") else {
        panic!("portal example")
    };
    apply_plugin_frame(&live, PluginFrame::Portal(p.clone()));
    let sent = json(hub.try_recv().expect("portal broadcast").text.as_str());
    assert_eq!(&sent, example(&c, "server_to_browser", "portal"));

    let PluginFrame::Spawn(s) = parse("spawn") else {
        panic!("spawn example")
    };
    apply_plugin_frame(&live, PluginFrame::Spawn(s.clone()));
    let spawn = hub.try_recv().expect("spawn broadcast");
    let sent = json(spawn.text.as_str());
    assert_eq!(&sent, example(&c, "server_to_browser", "spawn"));
    // The coalesced stream carries the same frames, as they are, in a `batch`.
    let mut pending = dereth_tracker::testing::Pending::default();
    pending.push(spawn);
    let batch = json(pending.take_batches(false)[0].text().as_str());
    assert_eq!(&batch, example(&c, "server_to_browser", "batch"));

    let PluginFrame::Rare(r) = parse("rare") else {
        panic!("rare example")
    };
    apply_plugin_frame(&live, PluginFrame::Rare(r.clone()));
    let sent = json(hub.try_recv().expect("rare broadcast").text.as_str());
    assert_eq!(&sent, example(&c, "server_to_browser", "rare"));

    let PluginFrame::Chat(ch) = parse("chat") else {
        panic!("chat example")
    };
    apply_plugin_frame(&live, PluginFrame::Chat(ch.clone()));
    let sent = json(hub.try_recv().expect("chat broadcast").text.as_str());
    assert_eq!(&sent, example(&c, "server_to_browser", "chat"));

    let short = Live::standalone(Duration::ZERO, 8);
    let mut short_hub = short.subscribe();
    apply_plugin_frame(&short, PluginFrame::Telemetry(t.clone()));
    tokio::time::sleep(Duration::from_millis(5)).await;
    short.reap(None);
    let _telemetry = short_hub.try_recv().expect("telemetry");
    let offline = json(short_hub.try_recv().expect("offline").text.as_str());
    assert!(offline["last_seen"].is_string());
    assert_eq!(
        without_last_seen(offline),
        without_last_seen(example(&c, "server_to_browser", "offline").clone())
    );

    let BrowserFrame::Subscribe { types } =
        parse_browser_frame(&example(&c, "browser_to_server", "subscribe").to_string())
            .expect("subscribe example")
    else {
        panic!("subscribe example")
    };
    let ack = to_json(&BrowserOut::Subscribed { types: &types });
    assert_eq!(&json(&ack), example(&c, "server_to_browser", "subscribed"));

    let status = CommandStatus::Delivered;
    let result = to_json(&BrowserOut::CommandResult {
        player_name: "Olthoi Slayer",
        command: "/vt start",
        status,
        message: status.message(),
    });
    assert_eq!(
        &json(&result),
        example(&c, "server_to_browser", "command_result")
    );

    let broadcast = parse_browser_frame(&example(&c, "browser_to_server", "broadcast").to_string())
        .expect("broadcast example");
    assert_eq!(
        broadcast,
        BrowserFrame::Broadcast {
            player_names: vec!["Olthoi Slayer".into(), "Mosswart Mage".into()],
            command: "/vt stop".into(),
            token: None,
        }
    );
    let outcome = |player_name, status: CommandStatus| BroadcastOutcome {
        player_name,
        status,
        message: status.message(),
    };
    let results = to_json(&BrowserOut::BroadcastResult {
        command: "/vt stop",
        results: vec![
            outcome("Olthoi Slayer", CommandStatus::Delivered),
            outcome("Mosswart Mage", CommandStatus::NotConnected),
        ],
    });
    assert_eq!(
        &json(&results),
        example(&c, "server_to_browser", "broadcast_result")
    );

    let err = parse_browser_frame(r#"{"type":"subscribe","types":["gossip"]}"#)
        .expect_err("unknown type");
    let reply = to_json(&BrowserOut::Error {
        error: err.to_string(),
    });
    assert_eq!(&json(&reply), example(&c, "server_to_browser", "error"));
}
