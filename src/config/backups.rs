//! Scheduled backups' settings (see `ops::backup_schedule`).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// Backups the running tracker writes on a timer.
#[derive(Debug, Clone, Args)]
pub struct BackupSettings {
    /// Directory for scheduled backups (the `dereth-tracker backup` archive, named
    /// `dereth-YYYYMMDDTHHMMSSZ.backup`). Unset or empty: no scheduled backups. In a cluster,
    /// set it on one instance.
    #[arg(long, env = "BACKUP_DIR", value_parser = super::path_or_empty)]
    pub backup_dir: Option<PathBuf>,

    /// Time between scheduled backups: a number and a unit, `s`, `m`, `h` or `d` (10s to 30d).
    #[arg(long, env = "BACKUP_EVERY", default_value = "1d", value_parser = parse_every)]
    pub backup_every: Every,

    /// Scheduled backups kept in BACKUP_DIR; the oldest beyond are removed (1 to 1000).
    #[arg(long, env = "BACKUP_KEEP", default_value_t = 7,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub backup_keep: u32,
}

/// A period given as `90s`, `30m`, `6h` or `1d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Every(pub Duration);

const SHORTEST: Duration = Duration::from_secs(10);
const LONGEST: Duration = Duration::from_secs(30 * 86_400);

fn parse_every(raw: &str) -> Result<Every, String> {
    let raw = raw.trim();
    let split = raw
        .find(|c: char| !c.is_ascii_digit())
        .ok_or("give a unit: s, m, h or d (as in 6h)")?;
    let (number, unit) = raw.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{raw}` does not start with a whole number"))?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3_600),
        "d" => n.checked_mul(86_400),
        other => return Err(format!("unknown unit `{other}`: use s, m, h or d")),
    }
    .ok_or("too long")?;
    let every = Duration::from_secs(secs);
    if !(SHORTEST..=LONGEST).contains(&every) {
        return Err("between 10s and 30d".into());
    }
    Ok(Every(every))
}

impl BackupSettings {
    /// Empty BACKUP_DIR means off (as `.env` files give `BACKUP_DIR=`).
    pub(super) fn normalize(&mut self) {
        if self
            .backup_dir
            .as_ref()
            .is_some_and(|d| d.as_os_str().is_empty())
        {
            self.backup_dir = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_take_a_unit_and_stay_in_range() {
        assert_eq!(parse_every("1d"), Ok(Every(Duration::from_secs(86_400))));
        assert_eq!(parse_every("6h"), Ok(Every(Duration::from_secs(21_600))));
        assert_eq!(parse_every("30m"), Ok(Every(Duration::from_secs(1_800))));
        assert_eq!(parse_every("10s"), Ok(Every(Duration::from_secs(10))));
        for bad in [
            "",
            "5",
            "9s",
            "31d",
            "1w",
            "-1h",
            "h",
            "1.5h",
            "99999999999999999999d",
        ] {
            assert!(parse_every(bad).is_err(), "{bad}");
        }
    }
}
