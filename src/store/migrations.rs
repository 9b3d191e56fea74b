//! Applying the schema: migrations run only when the database lacks some, so a tracker can start
//! (and say on `/health` that it cannot write) against a database it may only read.

use sqlx::migrate::Migrator;

/// The query both backends answer with the migrations they have applied.
pub(super) const APPLIED: &str = "SELECT version, checksum FROM _sqlx_migrations WHERE success";

/// True when `applied` (version, checksum) holds exactly this build's migrations, each with the
/// same checksum: nothing to run. Anything else (a missing table gives `None`) goes through the
/// migrator, which also reports a changed or unknown migration.
pub(super) fn up_to_date(migrator: &Migrator, applied: Option<Vec<(i64, Vec<u8>)>>) -> bool {
    let Some(mut applied) = applied else {
        return false;
    };
    applied.sort_by_key(|(version, _)| *version);
    let mut ours: Vec<(i64, &[u8])> = migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .map(|m| (m.version, m.checksum.as_ref()))
        .collect();
    ours.sort_by_key(|(version, _)| *version);
    applied.len() == ours.len()
        && applied
            .iter()
            .zip(&ours)
            .all(|((v, c), (ov, oc))| v == ov && c.as_slice() == *oc)
}

#[cfg(test)]
mod tests {
    use super::*;

    static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");

    fn all() -> Vec<(i64, Vec<u8>)> {
        SQLITE
            .iter()
            .map(|m| (m.version, m.checksum.to_vec()))
            .collect()
    }

    #[test]
    fn only_the_exact_set_is_up_to_date() {
        assert!(up_to_date(&SQLITE, Some(all())));
        assert!(!up_to_date(&SQLITE, None), "no table: run");
        let mut missing = all();
        missing.pop();
        assert!(!up_to_date(&SQLITE, Some(missing)), "one missing: run");
        let mut changed = all();
        changed[0].1[0] ^= 1;
        assert!(
            !up_to_date(&SQLITE, Some(changed)),
            "a changed one: run (and fail)"
        );
        let mut newer = all();
        newer.push((99_999_999_999_999, vec![0]));
        assert!(
            !up_to_date(&SQLITE, Some(newer)),
            "a newer build's: run (and fail)"
        );
    }
}
