//! Saved groups: named lists of characters a person keeps ("healers", "mule accounts") to select
//! and command them together. Each belongs to one owner, an account or an API token, and goes
//! with it when it is removed. One SQL text for both backends.

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::StoreError;
use super::reads::Runner;
use super::sql::Sql;

/// The owner key of an account's groups.
pub fn owner_of_account(name: &str) -> String {
    format!("account:{name}")
}

/// The owner key of an API token's groups.
pub fn owner_of_token(name: &str) -> String {
    format!("token:{name}")
}

/// A saved group as it is answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SavedGroup {
    pub name: String,
    /// Character names, in the order they were saved.
    pub characters: Vec<String>,
    pub updated_at: DateTime<Utc>,
}

/// The groups half of the storage contract.
#[async_trait]
pub trait StoreGroups: Send + Sync {
    /// `owner`'s groups, by name.
    async fn groups(&self, owner: &str) -> Result<Vec<SavedGroup>, StoreError>;
    /// Creates or replaces `owner`'s group `name`, unless that would make more than `most`
    /// groups; returns the group as kept (`None`: refused).
    async fn put_group(
        &self,
        owner: &str,
        name: &str,
        characters: &[String],
        most: i64,
    ) -> Result<Option<SavedGroup>, StoreError>;
    /// Removes `owner`'s group `name`; false when there was none.
    async fn remove_group(&self, owner: &str, name: &str) -> Result<bool, StoreError>;
}

#[async_trait]
impl<R: Runner> StoreGroups for R {
    async fn groups(&self, owner: &str) -> Result<Vec<SavedGroup>, StoreError> {
        let sql = Sql::new(
            "SELECT name, characters, updated_at FROM saved_groups WHERE owner = $1 \
             ORDER BY name",
            vec![owner.into()],
        );
        let rows: Vec<(String, String, DateTime<Utc>)> = self.rows(sql).await?;
        Ok(rows
            .into_iter()
            .map(|(name, characters, updated_at)| SavedGroup {
                name,
                // Written by this module as a JSON array; anything else reads as empty.
                characters: serde_json::from_str(&characters).unwrap_or_default(),
                updated_at,
            })
            .collect())
    }

    async fn put_group(
        &self,
        owner: &str,
        name: &str,
        characters: &[String],
        most: i64,
    ) -> Result<Option<SavedGroup>, StoreError> {
        let list = serde_json::Value::from(characters.to_vec()).to_string();
        // As the database keeps it (microseconds), so the answer reads back the same.
        let now = Utc::now().trunc_subsecs(6);
        // One statement: the count and the write cannot be split by another request.
        let sql = Sql::new(
            "INSERT INTO saved_groups (owner, name, characters, updated_at) \
             SELECT $1, $2, $3, $4 WHERE EXISTS \
               (SELECT 1 FROM saved_groups WHERE owner = $1 AND name = $2) \
               OR (SELECT COUNT(*) FROM saved_groups WHERE owner = $1) < $5 \
             ON CONFLICT (owner, name) DO UPDATE SET characters = excluded.characters, \
             updated_at = excluded.updated_at",
            vec![
                owner.into(),
                name.into(),
                list.into(),
                now.into(),
                most.into(),
            ],
        );
        let kept = self.write_pool().execute(sql).await? > 0;
        Ok(kept.then(|| SavedGroup {
            name: name.to_owned(),
            characters: characters.to_vec(),
            updated_at: now,
        }))
    }

    async fn remove_group(&self, owner: &str, name: &str) -> Result<bool, StoreError> {
        let sql = Sql::new(
            "DELETE FROM saved_groups WHERE owner = $1 AND name = $2",
            vec![owner.into(), name.into()],
        );
        Ok(self.write_pool().execute(sql).await? > 0)
    }
}
