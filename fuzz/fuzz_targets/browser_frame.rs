//! Any text a browser can send on /ws/live: parsed into a subscription or a command, or refused
//! with an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(dereth_tracker::protocol::BrowserFrame::Command {
        player_name,
        command,
        ..
    }) = dereth_tracker::protocol::parse_browser_frame(text)
    {
        assert!(!player_name.trim().is_empty());
        assert!(!command.chars().any(char::is_control));
    }
});
