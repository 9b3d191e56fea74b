//! What every benchmark reports the same way: nearest-rank quantiles, milliseconds, and its
//! section of the Markdown report.

use std::path::Path;
use std::time::Duration;

/// The `q`-quantile (0..=1) of `samples` (sorted in place), nearest-rank.
pub(crate) fn quantile(samples: &mut [Duration], q: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
    samples[rank - 1]
}

/// Milliseconds with two decimals, for reports.
pub(crate) fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 100_000.0).round() / 100.0
}

/// The date a figure was measured, as reports print it.
pub(crate) fn today() -> String {
    chrono::Utc::now().format("%Y-%m-%d").to_string()
}

/// How a figure fares against its target, as reports print it.
pub(crate) fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "**missed**" }
}

/// The database a benchmark uses: `given`, or a fresh SQLite file named after `name` in the
/// temporary directory (returned too, so the caller can remove it).
pub(crate) fn database_url(given: Option<&str>, name: &str) -> (String, std::path::PathBuf) {
    let file = std::env::temp_dir().join(format!("dereth-{name}-{}.db", std::process::id()));
    let url = given.map_or_else(|| format!("sqlite://{}", file.display()), str::to_owned);
    (url, file)
}

/// The line of a report section saying how to measure its figures again: `tool` and its flags.
pub(crate) fn reproduce(tool: &str) -> String {
    format!(
        "Reproduce: `cargo build --release --features bench && ./target/release/dereth-bench {tool}`"
    )
}

/// Replaces the section of `report` between `<!-- NAME:start -->` and `<!-- NAME:end -->` with
/// `body` (appending the section when it is not there yet).
pub(crate) fn record(report: &Path, name: &str, body: &str) -> std::io::Result<()> {
    let start = format!("<!-- {name}:start -->");
    let end = format!("<!-- {name}:end -->");
    let existing = std::fs::read_to_string(report).unwrap_or_else(|_| {
        "# Benchmarks\n\nFigures measured on this project's 2-core machine. Each section is \
         rewritten by the command it names.\n"
            .to_owned()
    });
    let section = format!("{start}\n{body}\n{end}");
    let updated = match (existing.find(&start), existing.find(&end)) {
        (Some(a), Some(b)) if b > a => {
            format!(
                "{}{}{}",
                &existing[..a],
                section,
                &existing[b + end.len()..]
            )
        }
        _ => format!("{}\n{}\n", existing.trim_end(), section),
    };
    if let Some(dir) = report.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(report, updated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_nearest_rank() {
        let mut v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&mut v, 0.5), Duration::from_millis(50));
        assert_eq!(quantile(&mut v, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&mut [], 0.5), Duration::ZERO);
    }

    #[test]
    fn sections_are_replaced_in_place() {
        let dir = std::env::temp_dir().join(format!("bench-record-{}", std::process::id()));
        let file = dir.join("B.md");
        record(&file, "x", "first").expect("write");
        record(&file, "y", "other").expect("write");
        record(&file, "x", "second").expect("write");
        let text = std::fs::read_to_string(&file).expect("read");
        assert!(text.contains("second") && !text.contains("first") && text.contains("other"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
