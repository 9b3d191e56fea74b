//! Saved groups (`/groups`): each person's named lists of characters ("healers", "mule
//! accounts"), kept on the server so they follow the account from browser to browser. The map
//! selects a group's characters and commands them together.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::account::same_origin;
use crate::identity::{Principal, Via};
use crate::manage::check_name;
use crate::protocol::MAX_BROADCAST;
use crate::state::AppState;
use crate::store::{SavedGroup, owner_of_account, owner_of_token};
use crate::web::auth::Someone;
use crate::web::error::{ApiError, AuthRefusals, ErrorBody};
use crate::web::extract::{Path, json_body};

/// Most groups one account or token keeps.
pub(crate) const MAX_GROUPS: i64 = 50;

/// Whose groups these are.
fn owner(who: &Principal) -> String {
    match who.via {
        Via::Token => owner_of_token(&who.name),
        Via::Session(_) | Via::Proxy => owner_of_account(&who.name),
    }
}

/// A group's name: 1 to 64 characters, no control characters, outer spaces dropped.
fn group_name(raw: &str) -> Result<String, ApiError> {
    let name = raw.trim().to_owned();
    check_name(&name).map_err(|_| {
        ApiError::BadRequest(
            "a group's name has 1 to 64 characters and no control characters".into(),
        )
    })?;
    Ok(name)
}

/// A group's characters: 1 to 200 names, each 1 to 64 characters without control characters;
/// repeats are dropped, order kept.
fn group_characters(raw: Vec<String>) -> Result<Vec<String>, ApiError> {
    let mut names: Vec<String> = Vec::with_capacity(raw.len().min(MAX_BROADCAST));
    for name in raw {
        let name = name.trim().to_owned();
        if check_name(&name).is_err() {
            return Err(ApiError::BadRequest(
                "each character's name has 1 to 64 characters and no control characters".into(),
            ));
        }
        if !names.contains(&name) {
            names.push(name);
        }
        if names.len() > MAX_BROADCAST {
            break;
        }
    }
    if names.is_empty() || names.len() > MAX_BROADCAST {
        return Err(ApiError::BadRequest(format!(
            "a group has 1 to {MAX_BROADCAST} characters"
        )));
    }
    Ok(names)
}

/// The groups of whoever asks.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Groups {
    groups: Vec<SavedGroup>,
}

/// A group's characters, as saved.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct GroupBody {
    /// 1 to 200 character names.
    characters: Vec<String>,
}

/// The caller's saved groups, by name.
#[utoipa::path(get, path = "/groups", tag = "accounts", security(("session" = []), ("token" = [])),
    responses((status = 200, description = "The caller's groups", body = Groups), AuthRefusals))]
pub(crate) async fn groups(
    State(state): State<AppState>,
    Someone(who): Someone,
) -> Result<Json<Groups>, ApiError> {
    let groups = state.store.groups(&owner(&who)).await?;
    Ok(Json(Groups { groups }))
}

/// Saves (creates or replaces) one of the caller's groups.
#[utoipa::path(put, path = "/groups/{name}", tag = "accounts", security(("session" = []), ("token" = [])),
    params(("name" = String, Path, description = "The group's name (1 to 64 characters)")),
    request_body = GroupBody,
    responses(
        (status = 200, description = "Saved", body = SavedGroup),
        (status = 400, description = "A bad name or list", body = ErrorBody),
        (status = 409, description = "The caller keeps 50 groups already", body = ErrorBody),
        AuthRefusals,
    ))]
pub(crate) async fn put_group(
    State(state): State<AppState>,
    Someone(who): Someone,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Result<Json<GroupBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<SavedGroup>, ApiError> {
    same_origin(&state, &headers)?;
    let name = group_name(&name)?;
    let body = json_body(body)?;
    let characters = group_characters(body.characters)?;
    let saved = state
        .store
        .put_group(&owner(&who), &name, &characters, MAX_GROUPS)
        .await?
        .ok_or_else(|| {
            ApiError::Conflict(format!(
                "you keep {MAX_GROUPS} groups already; remove one first"
            ))
        })?;
    Ok(Json(saved))
}

/// Removes one of the caller's groups.
#[utoipa::path(delete, path = "/groups/{name}", tag = "accounts", security(("session" = []), ("token" = [])),
    params(("name" = String, Path, description = "The group's name")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "The caller has no such group", body = ErrorBody),
        AuthRefusals,
    ))]
pub(crate) async fn remove_group(
    State(state): State<AppState>,
    Someone(who): Someone,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    same_origin(&state, &headers)?;
    let name = name.trim().to_owned();
    if state.store.remove_group(&owner(&who), &name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!(
            "you have no group named `{}`",
            crate::protocol::clip(&name, 64)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_lists_are_checked_and_deduplicated() {
        let names =
            group_characters(vec![" Ann ".into(), "Bob".into(), "Ann".into()]).expect("valid");
        assert_eq!(names, ["Ann", "Bob"]);
        assert!(group_characters(Vec::new()).is_err());
        assert!(group_characters(vec!["bad\nname".into()]).is_err());
        assert!(group_characters(vec!["x".repeat(65)]).is_err());
        let many: Vec<String> = (0..=MAX_BROADCAST).map(|i| format!("C {i}")).collect();
        assert!(group_characters(many).is_err());
        let repeats: Vec<String> = (0..1_000).map(|i| format!("C {}", i % 200)).collect();
        assert_eq!(group_characters(repeats).map(|n| n.len()).ok(), Some(200));
        assert!(group_name("  ").is_err());
        assert_eq!(group_name(" healers ").ok().as_deref(), Some("healers"));
    }
}
