//! Saved groups (issue 26): each account's or token's named lists of characters, kept on the
//! server; and each character's command history, which commanders may read.

use crate::common;

use std::time::Duration;

use common::{Backend, TestApp};
use dereth_tracker::config::Role;
use dereth_tracker::manage;
use dereth_tracker::store::{AccessChange, AuditRow, owner_of_token};
use serde_json::{Value, json};

/// A new API token of `role`, once the tracker knows it.
async fn token(app: &TestApp, name: &str, role: Role) -> String {
    let token = manage::add_token(&app.store, name, role)
        .await
        .expect("token added");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, me) = call(app, reqwest::Method::GET, "/me", Some(&token), None, &[]).await;
        if status == 200 && me["name"] == name {
            return token;
        }
        assert!(tokio::time::Instant::now() < deadline, "{me}");
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
}

async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut request = reqwest::Client::new().request(method, app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let resp = request.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json::<Value>().await.unwrap_or(Value::Null))
}

async fn put(app: &TestApp, token: &str, name: &str, characters: Value) -> (u16, Value) {
    let path = format!("/groups/{}", name.replace(' ', "%20"));
    call(
        app,
        reqwest::Method::PUT,
        &path,
        Some(token),
        Some(json!({ "characters": characters })),
        &[],
    )
    .await
}

async fn list(app: &TestApp, token: &str) -> Vec<(String, Value)> {
    let (status, body) = call(app, reqwest::Method::GET, "/groups", Some(token), None, &[]).await;
    assert_eq!(status, 200, "{body}");
    body["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| {
            (
                g["name"].as_str().unwrap_or_default().to_owned(),
                g["characters"].clone(),
            )
        })
        .collect()
}

async fn groups_are_kept_per_owner(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (status, _) = call(&app, reqwest::Method::GET, "/groups", None, None, &[]).await;
    assert_eq!(status, 401, "groups belong to someone");
    let ann = token(&app, "ann", Role::Viewer).await;
    let bob = token(&app, "bob", Role::Commander).await;

    let (status, saved) = put(&app, &ann, "healers", json!(["Ann", " Bob ", "Ann"])).await;
    assert_eq!(status, 200, "{saved}");
    assert_eq!(
        saved["characters"],
        json!(["Ann", "Bob"]),
        "trimmed, repeats dropped"
    );
    assert_eq!(
        list(&app, &ann).await,
        [("healers".to_owned(), json!(["Ann", "Bob"]))]
    );
    assert_eq!(
        list(&app, &bob).await,
        [],
        "another owner sees none of them"
    );
    // The same name replaces; another owner may use the same name.
    assert_eq!(put(&app, &ann, "healers", json!(["Cat"])).await.0, 200);
    assert_eq!(put(&app, &bob, "healers", json!(["Dan"])).await.0, 200);
    assert_eq!(
        list(&app, &ann).await,
        [("healers".to_owned(), json!(["Cat"]))]
    );
    assert_eq!(
        list(&app, &bob).await,
        [("healers".to_owned(), json!(["Dan"]))]
    );

    // Bad input changes nothing.
    let many: Vec<String> = (0..201).map(|i| format!("C {i}")).collect();
    for (name, characters) in [
        ("empty", json!([])),
        ("too many", json!(many)),
        ("bad name", json!(["a\u{7}b"])),
        (&*"x".repeat(65), json!(["Ann"])),
    ] {
        let (status, body) = put(&app, &ann, name, characters).await;
        assert_eq!(status, 400, "{name}: {body}");
        assert!(body["error"].is_string(), "{body}");
    }
    let (status, _) = call(
        &app,
        reqwest::Method::PUT,
        "/groups/mules",
        Some(&ann),
        Some(json!({"characters": "Ann"})),
        &[],
    )
    .await;
    assert_eq!(status, 400, "characters must be a list");
    let (status, _) = call(
        &app,
        reqwest::Method::PUT,
        "/groups/mules",
        Some(&ann),
        Some(json!({"characters": ["Ann"]})),
        &[("Origin", "http://evil.example")],
    )
    .await;
    assert_eq!(status, 403, "pages of other origins may not change groups");
    assert_eq!(list(&app, &ann).await.len(), 1);

    // At most 50 groups each; a full owner may still replace one.
    for i in 1..50 {
        assert_eq!(
            put(&app, &ann, &format!("group {i:02}"), json!(["Ann"]))
                .await
                .0,
            200
        );
    }
    let (status, body) = put(&app, &ann, "one too many", json!(["Ann"])).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(put(&app, &ann, "group 01", json!(["Eve"])).await.0, 200);
    assert_eq!(list(&app, &ann).await.len(), 50);

    let (status, _) = call(
        &app,
        reqwest::Method::DELETE,
        "/groups/healers",
        Some(&ann),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 204);
    let (status, body) = call(
        &app,
        reqwest::Method::DELETE,
        "/groups/healers",
        Some(&ann),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        list(&app, &bob).await.len(),
        1,
        "bob's group of that name stays"
    );

    // Removing the token removes its groups.
    let removed = app
        .store
        .change_access(&AccessChange::RemoveToken { name: "ann".into() })
        .await
        .expect("removed");
    assert!(removed);
    assert_eq!(
        app.store
            .groups(&owner_of_token("ann"))
            .await
            .expect("groups"),
        []
    );
    assert_eq!(
        app.store
            .groups(&owner_of_token("bob"))
            .await
            .expect("groups")
            .len(),
        1
    );
}

/// A commander reads the commands sent to one character (the map's command history); the whole
/// trail stays an admin's.
async fn commanders_read_one_characters_command_history(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    for (character, command) in [
        ("Ann", "/vt start"),
        ("Bob", "/vt stop"),
        ("Ann", "/vt stop"),
    ] {
        let row = AuditRow {
            id: 0,
            at: chrono::Utc::now(),
            actor: "carl".into(),
            via: "account".into(),
            character_name: character.into(),
            command: command.into(),
            result: "delivered".into(),
        };
        app.store.audit(&row).await.expect("audited");
    }
    let viewer = token(&app, "vic", Role::Viewer).await;
    let commander = token(&app, "carl", Role::Commander).await;
    let (status, page) = call(
        &app,
        reqwest::Method::GET,
        "/audit?character=Ann",
        Some(&commander),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let commands: Vec<&str> = page["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["command"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        commands,
        ["/vt stop", "/vt start"],
        "newest first, Ann's only"
    );
    for (who, path) in [(&commander, "/audit"), (&viewer, "/audit?character=Ann")] {
        let (status, body) = call(&app, reqwest::Method::GET, path, Some(who), None, &[]).await;
        assert_eq!(status, 403, "{path}: {body}");
    }
}

both_backends!(
    groups_are_kept_per_owner,
    commanders_read_one_characters_command_history
);
