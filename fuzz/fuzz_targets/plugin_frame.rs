//! Any text a plugin can send: the frame parser (and the timestamp parser it uses) must answer
//! with a frame or an error, never panic, and a frame it accepts must be serializable again.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = dereth_tracker::protocol::timestamp::parse(text);
    if let Ok(frame) = dereth_tracker::protocol::parse_plugin_frame(text) {
        // Accepted frames are within the documented limits.
        if let Some(name) = frame.character_name() {
            assert!(!name.trim().is_empty());
            assert!(name.chars().count() <= dereth_tracker::protocol::MAX_NAME_CHARS);
        }
    }
});
