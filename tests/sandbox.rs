//! Tests of the Podero simulator itself, black-box over HTTP with reqwest.
//! Every test starts its own simulator on an ephemeral loopback port.

use std::io::Write;
use std::time::{Duration, Instant};

use podero_onboard::sandbox::{
    self, Builder, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Faults, ListBuildings, RateLimit, Sandbox,
};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

/// Timing assertions allow this much scheduling slack.
const TIMING_TOLERANCE: Duration = Duration::from_millis(50);

/// A started simulator plus a client and the first user's id.
struct Harness {
    sandbox: Sandbox,
    http: reqwest::Client,
    user: Uuid,
}

impl Harness {
    /// Starts `builder` with two generated users.
    async fn start(builder: Builder) -> Self {
        Harness {
            user: sandbox::generated_user_id(0),
            ..Harness::start_bare(builder.generated_users(2)).await
        }
    }

    /// Starts `builder` as it is (`user` is nil).
    async fn start_bare(builder: Builder) -> Self {
        let sandbox = builder.start().await.expect("sandbox starts");
        // reqwest is built without a default TLS crypto provider (see `api::tls`).
        podero_onboard::api::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        Harness {
            sandbox,
            http,
            user: Uuid::nil(),
        }
    }

    async fn plain() -> Self {
        Harness::start(Builder::new()).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sandbox.base_url())
    }

    /// The URL of an API path under the served organization.
    fn api(&self, rest: &str) -> String {
        self.url(&format!(
            "/api/partners/v2.0/org/{}{rest}",
            self.sandbox.org_id()
        ))
    }

    fn buildings_url(&self, user: Uuid) -> String {
        self.api(&format!("/users/{user}/buildings"))
    }

    async fn token(&self) -> String {
        let response = self.token_request(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.expect("token JSON");
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    async fn token_request(&self, id: &str, secret: &str) -> Response {
        self.http
            .post(self.url("/oauth2/token/"))
            .basic_auth(id, Some(secret))
            .json(&json!({"grant_type": "client_credentials"}))
            .send()
            .await
            .expect("token request")
    }

    /// An authenticated request with an optional JSON body.
    async fn call(&self, method: Method, url: &str, token: &str, body: Option<Value>) -> Response {
        let mut request = self.http.request(method, url).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("request reaches the sandbox")
    }

    async fn put_user(&self, token: &str, user: Uuid, body: Value) -> Response {
        self.call(
            Method::PUT,
            &self.api(&format!("/users/{user}")),
            token,
            Some(body),
        )
        .await
    }

    async fn create(&self, token: &str, user: Uuid, body: Value) -> Response {
        self.call(Method::POST, &self.buildings_url(user), token, Some(body))
            .await
    }

    async fn get(&self, token: &str, url: &str) -> Response {
        self.call(Method::GET, url, token, None).await
    }
}

/// Status and JSON body of a response.
async fn parts(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The `type`s of a 422 `detail` list.
fn error_types(body: &Value) -> Vec<String> {
    let items = body["detail"].as_array().cloned().unwrap_or_default();
    items
        .iter()
        .map(|i| i["type"].as_str().unwrap_or("").to_owned())
        .collect()
}

// ---------------------------------------------------------------- token

#[tokio::test(flavor = "multi_thread")]
async fn token_is_issued_for_basic_auth_and_json_body() {
    let h = Harness::plain().await;
    let response = h.token_request(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET).await;
    let (status, body) = parts(response).await;
    assert_eq!(status, 200);
    assert_eq!(body["expires_in"], 36_000);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "read write");
    assert!(body["access_token"].as_str().is_some_and(|t| t.len() >= 20));
    let state = h.sandbox.state();
    assert_eq!(state.tokens_issued, 1);
    assert!(state.anomalies.is_empty(), "{:?}", state.anomalies);
}

#[tokio::test(flavor = "multi_thread")]
async fn token_accepts_form_body() {
    let h = Harness::plain().await;
    let response = h
        .http
        .post(h.url("/oauth2/token/"))
        .basic_auth(DEMO_CLIENT_ID, Some(DEMO_CLIENT_SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .expect("token request");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(h.sandbox.state().anomalies.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn token_rejects_wrong_credentials_with_invalid_client() {
    let h = Harness::start(Builder::new().credentials("id", "right")).await;
    let (status, body) = parts(h.token_request("id", "wrong").await).await;
    assert_eq!((status, body), (401, json!({"error": "invalid_client"})));
    let (status, _) = parts(h.token_request("id", "right").await).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn token_rejects_other_grant_types() {
    let h = Harness::plain().await;
    let response = h
        .http
        .post(h.url("/oauth2/token/"))
        .basic_auth(DEMO_CLIENT_ID, Some(DEMO_CLIENT_SECRET))
        .json(&json!({"grant_type": "password"}))
        .send()
        .await
        .expect("token request");
    let (status, body) = parts(response).await;
    assert_eq!(
        (status, body),
        (400, json!({"error": "unsupported_grant_type"}))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn token_path_without_trailing_slash_is_unknown() {
    let h = Harness::plain().await;
    let response = h
        .http
        .post(h.url("/oauth2/token"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(h.sandbox.state().anomalies.len(), 1);
}

// ---------------------------------------------------------------- auth and org

#[tokio::test(flavor = "multi_thread")]
async fn api_rejects_missing_and_invalid_tokens() {
    let h = Harness::plain().await;
    let response = h.http.get(h.api("/users")).send().await.expect("request");
    let (status, body) = parts(response).await;
    assert_eq!(status, 401);
    assert!(body["detail"].is_string());
    assert_eq!(
        h.sandbox.state().anomalies.len(),
        1,
        "missing auth is an anomaly"
    );
    let (status, _) = parts(h.get("not-a-token", &h.api("/users")).await).await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn short_lived_token_works_then_expires() {
    let h = Harness::start(Builder::new().token_lifetime(Duration::from_millis(300))).await;
    let response = h.token_request(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET).await;
    let (_, body) = parts(response).await;
    assert_eq!(body["expires_in"], 0, "whole seconds, rounded down");
    let token = body["access_token"].as_str().expect("token").to_owned();
    let url = h.api("/users");
    assert_eq!(h.get(&token, &url).await.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(350)).await;
    let (status, body) = parts(h.get(&token, &url).await).await;
    assert_eq!(status, 401);
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("expired")),
        "{body}"
    );
    assert!(
        h.sandbox.state().anomalies.is_empty(),
        "an expired token is not a client bug"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_org_is_forbidden_and_non_uuid_org_is_422() {
    let h = Harness::plain().await;
    let token = h.token().await;
    let other = h.url(&format!("/api/partners/v2.0/org/{}/users", Uuid::new_v4()));
    let (status, body) = parts(h.get(&token, &other).await).await;
    assert_eq!(status, 403);
    assert!(body["detail"].is_string());
    let bad = h.url("/api/partners/v2.0/org/acme/users");
    let (status, body) = parts(h.get(&token, &bad).await).await;
    assert_eq!(status, 422);
    assert_eq!(body["detail"][0]["loc"], json!(["path", "org_id"]));
}

// ---------------------------------------------------------------- users

#[tokio::test(flavor = "multi_thread")]
async fn put_user_is_a_partial_update() {
    let h = Harness::plain().await;
    let token = h.token().await;
    let (status, body) = parts(
        h.put_user(&token, h.user, json!({"external_user_id": "12345abc"}))
            .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["id"], json!(h.user));
    assert_eq!(body["external_user_id"], "12345abc");
    assert_eq!(body["role"], "user");
    let (status, body) = parts(
        h.put_user(&token, h.user, json!({"first_name": "Ada"}))
            .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        (&body["external_user_id"], &body["first_name"]),
        (&json!("12345abc"), &json!("Ada"))
    );
    let user = h.sandbox.state().users[&h.user].clone();
    assert_eq!(user.external_user_id.as_deref(), Some("12345abc"));
    assert_eq!(user.fields.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn users_can_be_read_listed_and_found_by_external_id() {
    let h = Harness::plain().await;
    let token = h.token().await;
    h.put_user(&token, h.user, json!({"external_user_id": "ext 1/a"}))
        .await;
    let (status, body) = parts(h.get(&token, &h.api("/users")).await).await;
    assert_eq!(status, 200);
    assert_eq!(
        body.as_array().map(Vec::len),
        Some(2),
        "a bare array of both users"
    );
    let (status, body) = parts(h.get(&token, &h.api("/users/by-ext-id/ext%201%2Fa")).await).await;
    assert_eq!((status, &body["id"]), (200, &json!(h.user)));
    let (status, _) = parts(h.get(&token, &h.api("/users/by-ext-id/nobody")).await).await;
    assert_eq!(status, 404);
    let (status, body) = parts(h.get(&token, &h.api(&format!("/users/{}", h.user))).await).await;
    assert_eq!(
        (status, &body["external_user_id"]),
        (200, &json!("ext 1/a"))
    );
    let state = h.sandbox.state();
    assert_eq!(state.count("get_user_by_ext_id"), 2);
    assert_eq!(state.count("list_users"), 1);
    assert!(state.anomalies.is_empty(), "{:?}", state.anomalies);
}

#[tokio::test(flavor = "multi_thread")]
async fn put_user_rejects_unknown_fields_wrong_types_and_email_clashes() {
    let h = Harness::plain().await;
    let token = h.token().await;
    let (status, body) = parts(
        h.put_user(&token, h.user, json!({"externalUserId": "x"}))
            .await,
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(error_types(&body), ["extra_forbidden"]);
    assert_eq!(
        body["detail"][0]["loc"],
        json!(["body", "payload", "externalUserId"])
    );
    let (status, body) = parts(
        h.put_user(&token, h.user, json!({"external_user_id": 42}))
            .await,
    )
    .await;
    assert_eq!(
        (status, error_types(&body)),
        (422, vec!["string_type".to_owned()])
    );
    let other = sandbox::generated_user_id(1);
    assert_eq!(
        h.put_user(&token, other, json!({"email": "a@b.example"}))
            .await
            .status(),
        200
    );
    let (status, body) = parts(
        h.put_user(&token, h.user, json!({"email": "A@b.example"}))
            .await,
    )
    .await;
    assert_eq!(
        (status, error_types(&body)),
        (422, vec!["value_error".to_owned()])
    );
    let state = h.sandbox.state();
    assert!(
        state.users[&h.user].fields.is_empty(),
        "rejected updates change nothing"
    );
    assert_eq!(state.anomalies.len(), 2, "{:?}", state.anomalies);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_user_is_404_and_non_uuid_user_is_422() {
    let h = Harness::plain().await;
    let token = h.token().await;
    let (status, body) = parts(
        h.put_user(&token, Uuid::new_v4(), json!({"external_user_id": "x"}))
            .await,
    )
    .await;
    assert_eq!((status, body), (404, json!({"detail": "Not Found"})));
    let url = h.api("/users/42");
    let (status, body) = parts(h.call(Method::PUT, &url, &token, Some(json!({}))).await).await;
    assert_eq!(status, 422);
    assert_eq!(body["detail"][0]["loc"], json!(["path", "user_id"]));
    assert_eq!(
        h.sandbox.state().anomalies.len(),
        1,
        "a non-UUID path segment is an anomaly"
    );
}

// ---------------------------------------------------------------- buildings

#[tokio::test(flavor = "multi_thread")]
async fn create_building_returns_201_with_a_fresh_id_and_stores_it() {
    let h = Harness::plain().await;
    let token = h.token().await;
    let body = json!({"name": "Main House", "property_type": "Flat", "num_occupants": 3});
    let (status, created) = parts(h.create(&token, h.user, body).await).await;
    assert_eq!(status, 201);
    let id: Uuid = created["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("uuid id");
    assert_eq!(id.get_version_num(), 4);
    assert_eq!(created["photovoltaic"], false);
    assert_eq!(created["num_occupants"], 3);
    let url = format!("{}/{id}", h.buildings_url(h.user));
    let (status, fetched) = parts(h.get(&token, &url).await).await;
    assert_eq!((status, &fetched), (200, &created));
    let other = format!("{}/{id}", h.buildings_url(sandbox::generated_user_id(1)));
    assert_eq!(h.get(&token, &other).await.status(), StatusCode::NOT_FOUND);
    let state = h.sandbox.state();
    assert_eq!(state.buildings[&h.user][0].name, "Main House");
    assert_eq!(
        state.building_map()[&(h.user, "Main House".to_owned())],
        vec![id]
    );
    assert!(state.anomalies.is_empty(), "{:?}", state.anomalies);
}

#[tokio::test(flavor = "multi_thread")]
async fn create_status_can_be_200() {
    let h = Harness::start(Builder::new().create_status(200)).await;
    let token = h.token().await;
    assert_eq!(
        h.create(&token, h.user, json!({"name": "A"}))
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn create_building_validates_name_enums_and_types() {
    let h = Harness::plain().await;
    let token = h.token().await;
    let cases = [
        (json!({"name": "x".repeat(101)}), "string_too_long"),
        (json!({"name": ""}), "string_too_short"),
        (json!({}), "missing"),
        (json!({"name": "A", "property_type": "Castle"}), "enum"),
        (json!({"name": "A", "occupant_type": "Pets"}), "enum"),
        (json!({"name": "A", "num_occupants": "3"}), "int_type"),
        (json!({"name": "A", "photovoltaic": "yes"}), "bool_type"),
        (
            json!({"name": "A", "zip_code": "1".repeat(21)}),
            "string_too_long",
        ),
    ];
    for (body, expected) in cases {
        let (status, answer) = parts(h.create(&token, h.user, body.clone()).await).await;
        assert_eq!(
            (status, error_types(&answer)),
            (422, vec![expected.to_owned()]),
            "{body}"
        );
    }
    let (status, _) = parts(
        h.create(&token, h.user, json!({"name": "x".repeat(100)}))
            .await,
    )
    .await;
    assert_eq!(status, 201, "100 characters is the limit");
    assert_eq!(h.sandbox.state().buildings[&h.user].len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn create_building_for_unknown_user_is_404() {
    let h = Harness::plain().await;
    let token = h.token().await;
    let (status, body) = parts(h.create(&token, Uuid::new_v4(), json!({"name": "A"})).await).await;
    assert_eq!((status, body), (404, json!({"detail": "Not Found"})));
    assert!(h.sandbox.state().buildings.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repeated_post_creates_a_duplicate() {
    let h = Harness::plain().await;
    let token = h.token().await;
    for _ in 0..2 {
        assert_eq!(
            h.create(&token, h.user, json!({"name": "Main House"}))
                .await
                .status(),
            201
        );
    }
    assert_eq!(
        h.sandbox.state().duplicates(),
        vec![(h.user, "Main House".to_owned(), 2)]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn update_building_replaces_its_fields() {
    let h = Harness::plain().await;
    let token = h.token().await;
    let id = h.sandbox.add_building(h.user, "Old");
    let url = format!("{}/{id}", h.buildings_url(h.user));
    let body = json!({"name": "New", "photovoltaic": true});
    let (status, answer) = parts(h.call(Method::PUT, &url, &token, Some(body)).await).await;
    assert_eq!(
        (status, &answer["name"], &answer["photovoltaic"]),
        (200, &json!("New"), &json!(true))
    );
    assert_eq!(h.sandbox.state().buildings[&h.user][0].name, "New");
}

#[tokio::test(flavor = "multi_thread")]
async fn list_buildings_is_a_bare_array_when_enabled() {
    let h = Harness::plain().await;
    let token = h.token().await;
    let seeded = h.sandbox.add_building(h.user, "Seeded");
    h.create(&token, h.user, json!({"name": "Second"})).await;
    let (status, body) = parts(h.get(&token, &h.buildings_url(h.user)).await).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = body
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|b| b["name"].as_str())
        .collect();
    assert_eq!(names, ["Seeded", "Second"]);
    assert_eq!(body[0]["id"], json!(seeded));
    let (status, body) = parts(
        h.get(&token, &h.buildings_url(sandbox::generated_user_id(1)))
            .await,
    )
    .await;
    assert_eq!((status, body), (200, json!([])));
}

#[tokio::test(flavor = "multi_thread")]
async fn list_buildings_can_be_missing_as_404_or_405() {
    for (mode, expected) in [
        (ListBuildings::NotFound, 404),
        (ListBuildings::MethodNotAllowed, 405),
    ] {
        let h = Harness::start(Builder::new().list_buildings(mode)).await;
        let token = h.token().await;
        let response = h.get(&token, &h.buildings_url(h.user)).await;
        if expected == 405 {
            assert_eq!(response.headers()["allow"], "POST");
        }
        assert_eq!(response.status().as_u16(), expected);
        assert_eq!(
            h.create(&token, h.user, json!({"name": "A"}))
                .await
                .status(),
            201
        );
        let state = h.sandbox.state();
        assert!(
            state.anomalies.is_empty(),
            "probing the list endpoint is legitimate"
        );
        assert_eq!(state.count("list_buildings"), 1);
    }
}

// ---------------------------------------------------------------- client mistakes

#[tokio::test(flavor = "multi_thread")]
async fn unknown_paths_and_trailing_slashes_are_404_anomalies() {
    let h = Harness::plain().await;
    let token = h.token().await;
    let slash = format!("{}/", h.buildings_url(h.user));
    let (status, body) = parts(
        h.call(Method::POST, &slash, &token, Some(json!({"name": "A"})))
            .await,
    )
    .await;
    assert_eq!((status, body), (404, json!({"detail": "Not Found"})));
    assert_eq!(
        h.get(&token, &h.url("/api/partners/v2.0/nope"))
            .await
            .status(),
        404
    );
    let state = h.sandbox.state();
    assert_eq!(state.anomalies.len(), 2, "{:?}", state.anomalies);
    assert!(state.anomalies[0].contains("trailing slash"));
    assert_eq!(state.count("unknown"), 2);
    assert!(state.buildings.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_without_json_content_type_or_not_json_are_anomalies() {
    let h = Harness::plain().await;
    let token = h.token().await;
    let url = h.buildings_url(h.user);
    let plain = h
        .http
        .post(&url)
        .bearer_auth(&token)
        .body(r#"{"name":"A"}"#)
        .send()
        .await
        .expect("request");
    assert_eq!(
        plain.status(),
        StatusCode::CREATED,
        "parsed anyway, but flagged"
    );
    let broken = h
        .http
        .post(&url)
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{name: A")
        .send()
        .await
        .expect("request");
    assert_eq!(broken.status(), StatusCode::BAD_REQUEST);
    let state = h.sandbox.state();
    assert_eq!(state.anomalies.len(), 2, "{:?}", state.anomalies);
    assert!(state.anomalies[0].contains("Content-Type"));
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_method_is_405_and_an_anomaly() {
    let h = Harness::plain().await;
    let token = h.token().await;
    let response = h
        .call(
            Method::DELETE,
            &h.api(&format!("/users/{}", h.user)),
            &token,
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(h.sandbox.state().anomalies.len(), 1);
}

// ---------------------------------------------------------------- introspection

#[tokio::test(flavor = "multi_thread")]
async fn state_is_served_over_http_as_json() {
    let h = Harness::plain().await;
    let token = h.token().await;
    h.create(&token, h.user, json!({"name": "A"})).await;
    let response = h
        .http
        .get(h.url("/__sandbox/state"))
        .send()
        .await
        .expect("state");
    assert_eq!(response.status(), StatusCode::OK);
    let snapshot: sandbox::Snapshot = response.json().await.expect("snapshot JSON");
    assert_eq!(snapshot.buildings[&h.user][0].name, "A");
    assert_eq!(snapshot.tokens_issued, 1);
    assert_eq!(snapshot.statuses.get(&201), Some(&1));
    assert!(snapshot.anomalies.is_empty());
    let state = h.sandbox.state();
    assert_eq!(state.count("admin"), 1);
    assert_eq!(state.api_requests(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn counts_view_has_the_counters_without_the_data() {
    let h = Harness::plain().await;
    let token = h.token().await;
    h.put_user(&token, h.user, json!({"external_user_id": "x"}))
        .await;
    h.create(&token, h.user, json!({"name": "A"})).await;
    h.create(&token, h.user, json!({"name": "A"})).await;
    h.create(&token, h.user, json!({"name": "B"})).await;
    let response = h
        .http
        .get(h.url("/__sandbox/state?counts=1"))
        .send()
        .await
        .expect("counts");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("counts JSON");
    assert!(
        body.get("log").is_none(),
        "no data in the counts view: {body}"
    );
    let counts: sandbox::Counts = serde_json::from_value(body).expect("counts shape");
    assert_eq!(
        (
            counts.users,
            counts.users_with_external_id,
            counts.buildings
        ),
        (2, 1, 3)
    );
    assert_eq!(counts.duplicate_buildings, 1, "the second A");
    assert_eq!(counts.requests.get("create_building"), Some(&3));
    assert_eq!(counts.statuses.get(&201), Some(&3));
    assert_eq!(counts.tokens_issued, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rate_limit_can_be_changed_mid_run_over_http() {
    let h = Harness::plain().await;
    let token = h.token().await;
    let put = |body: Value| h.http.put(h.url("/__sandbox/faults")).json(&body).send();
    let limited = json!({"rate_limit": {"per_second": 0.5, "burst": 1}});
    assert_eq!(put(limited).await.expect("put").status(), StatusCode::OK);
    let statuses = [
        h.get(&token, &h.api("/users")).await.status(),
        h.get(&token, &h.api("/users")).await.status(),
    ];
    assert_eq!(statuses, [StatusCode::OK, StatusCode::TOO_MANY_REQUESTS]);
    let raised = json!({"rate_limit": {"per_second": 1000.0, "burst": 10}});
    assert_eq!(put(raised).await.expect("put").status(), StatusCode::OK);
    for _ in 0..5 {
        assert_eq!(
            h.get(&token, &h.api("/users")).await.status(),
            StatusCode::OK
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_can_be_set_over_http() {
    let h = Harness::plain().await;
    let token = h.token().await;
    let put = |body: Value| h.http.put(h.url("/__sandbox/faults")).json(&body).send();
    assert_eq!(
        put(json!({"random_5xx": 1.0})).await.expect("put").status(),
        StatusCode::OK
    );
    assert!(
        h.get(&token, &h.api("/users"))
            .await
            .status()
            .is_server_error()
    );
    assert_eq!(put(json!({})).await.expect("put").status(), StatusCode::OK);
    assert_eq!(
        h.get(&token, &h.api("/users")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        put(json!({"bogus": 1})).await.expect("put").status(),
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn log_records_each_request_and_can_be_turned_off() {
    let h = Harness::plain().await;
    let token = h.token().await;
    h.put_user(&token, h.user, json!({"external_user_id": "x"}))
        .await;
    let log = h.sandbox.state().log;
    assert_eq!(log.len(), 2);
    assert_eq!(
        (log[1].endpoint.as_str(), log[1].status, log[1].user_id),
        ("put_user", 200, Some(h.user))
    );
    let quiet = Harness::start(Builder::new().request_log(false)).await;
    let token = quiet.token().await;
    quiet
        .put_user(&token, quiet.user, json!({"external_user_id": "x"}))
        .await;
    let state = quiet.sandbox.state();
    assert!(state.log.is_empty());
    assert_eq!((state.count("put_user"), state.statuses[&200]), (1, 2));
}

// ---------------------------------------------------------------- seeding users

#[tokio::test(flavor = "multi_thread")]
async fn users_come_from_the_csv_user_id_column() {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    let good = Uuid::new_v4();
    write!(
        file,
        "\u{feff}email, User_ID \nx@y.z, {good} \na@b.c,not-a-uuid\n"
    )
    .expect("write CSV");
    let sandbox = Builder::new()
        .users_from_csv(file.path())
        .expect("CSV read")
        .start()
        .await
        .expect("start");
    let users: Vec<Uuid> = sandbox.state().users.into_keys().collect();
    assert_eq!(users, vec![good]);
}

#[tokio::test(flavor = "multi_thread")]
async fn csv_without_user_id_column_is_an_error() {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    writeln!(file, "id,name").expect("write CSV");
    let error = Builder::new()
        .users_from_csv(file.path())
        .expect_err("no user_id column");
    assert!(error.to_string().contains("user_id"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn generated_and_added_users_exist() {
    let sandbox = Builder::new()
        .generated_users(3)
        .start()
        .await
        .expect("start");
    let extra = Uuid::new_v4();
    sandbox.add_user(extra);
    let users = sandbox.state().users;
    assert_eq!(users.len(), 4);
    assert!((0..3).all(|i| users.contains_key(&sandbox::generated_user_id(i))));
    assert_eq!(sandbox::generated_user_id(1), sandbox::generated_user_id(1));
    assert_ne!(sandbox::generated_user_id(1), sandbox::generated_user_id(2));
}

// ---------------------------------------------------------------- faults

#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_answers_429_with_retry_after_when_exceeded() {
    let limit = RateLimit {
        per_second: 1.0,
        burst: 3,
    };
    let h = Harness::start(Builder::new().faults(Faults {
        rate_limit: Some(limit),
        ..Faults::default()
    }))
    .await;
    let token = h.token().await; // takes one of the 3
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..4 {
        let response = h.get(&token, &h.api("/users")).await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(String::from);
        }
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses[..2], [200, 200]);
    assert!(statuses[2..].iter().all(|s| *s == 429), "{statuses:?}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        h.get(&token, &h.api("/users")).await.status(),
        StatusCode::OK,
        "refilled"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn random_429_carries_retry_after() {
    let h = Harness::start(Builder::new().faults(Faults {
        random_429: 1.0,
        ..Faults::default()
    }))
    .await;
    let token = h.token().await;
    let response = h.get(&token, &h.api("/users")).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "1");
}

#[tokio::test(flavor = "multi_thread")]
async fn random_5xx_always_fails_and_changes_no_state() {
    let h = Harness::start(Builder::new().faults(Faults {
        random_5xx: 1.0,
        ..Faults::default()
    }))
    .await;
    let token = h.token().await;
    let mut content_types = std::collections::BTreeSet::new();
    for i in 0..40 {
        let response = if i % 2 == 0 {
            h.create(&token, h.user, json!({"name": "A"})).await
        } else {
            h.put_user(&token, h.user, json!({"external_user_id": "x"}))
                .await
        };
        assert!(
            [500, 502, 503].contains(&response.status().as_u16()),
            "{}",
            response.status()
        );
        let ct = response.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .to_owned();
        content_types.insert(ct);
    }
    assert_eq!(
        content_types.into_iter().collect::<Vec<_>>(),
        ["application/json", "text/html"]
    );
    let state = h.sandbox.state();
    assert!(state.buildings.is_empty());
    assert!(state.users[&h.user].fields.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn commit_then_drop_creates_the_building_but_sends_no_response() {
    let faults = Faults {
        commit_then_drop: 1.0,
        ..Faults::default()
    };
    let h = Harness::start(Builder::new().faults(faults)).await;
    let token = h.token().await;
    let error = h
        .http
        .post(h.buildings_url(h.user))
        .bearer_auth(&token)
        .json(&json!({"name": "Main House"}))
        .send()
        .await
        .expect_err("the connection closes without a response");
    // hyper reports IncompleteMessage: the request was sent, no response came.
    assert!(
        error.is_request() && error.status().is_none() && !error.is_timeout(),
        "{error:?}"
    );
    let state = h.sandbox.state();
    assert_eq!(
        state.buildings[&h.user].len(),
        1,
        "the building exists anyway"
    );
    assert_eq!(
        state.count("create_building"),
        1,
        "the client did not retry behind our back"
    );
    assert_eq!(state.log.last().map(|e| e.status), Some(0));
    assert_eq!(state.statuses.get(&201), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn commit_then_stall_times_the_client_out_but_creates_the_building() {
    let stall = Duration::from_secs(5);
    let faults = Faults {
        commit_then_stall: 1.0,
        stall,
        ..Faults::default()
    };
    let h = Harness::start(Builder::new().faults(faults)).await;
    let token = h.token().await;
    let started = Instant::now();
    let error = h
        .http
        .post(h.buildings_url(h.user))
        .bearer_auth(&token)
        .timeout(Duration::from_millis(300))
        .json(&json!({"name": "Main House"}))
        .send()
        .await
        .expect_err("the client gives up first");
    assert!(error.is_timeout(), "{error:?}");
    assert!(started.elapsed() < stall);
    assert_eq!(h.sandbox.state().buildings[&h.user].len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn fail_5xx_after_commit_answers_500_html_but_creates_the_building() {
    let faults = Faults {
        fail_5xx_after_commit: 1.0,
        ..Faults::default()
    };
    let h = Harness::start(Builder::new().faults(faults)).await;
    let token = h.token().await;
    let response = h
        .create(&token, h.user, json!({"name": "Main House"}))
        .await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(response.headers()["content-type"], "text/html");
    assert_eq!(h.sandbox.state().buildings[&h.user].len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn commit_faults_do_not_apply_to_failed_posts() {
    let faults = Faults {
        commit_then_drop: 1.0,
        ..Faults::default()
    };
    let h = Harness::start(Builder::new().faults(faults)).await;
    let token = h.token().await;
    let response = h.create(&token, h.user, json!({"name": ""})).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        h.put_user(&token, h.user, json!({})).await.status(),
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn latency_delays_every_answer() {
    let latency = Duration::from_millis(200);
    let h = Harness::start(Builder::new().faults(Faults {
        latency,
        ..Faults::default()
    }))
    .await;
    let started = Instant::now();
    let token = h.token().await;
    h.get(&token, &h.api("/users")).await;
    assert!(
        started.elapsed() + TIMING_TOLERANCE >= 2 * latency,
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn set_faults_starts_and_ends_an_outage() {
    let h = Harness::plain().await;
    let token = h.token().await;
    h.sandbox.set_faults(Faults {
        random_5xx: 1.0,
        ..Faults::default()
    });
    assert!(
        h.get(&token, &h.api("/users"))
            .await
            .status()
            .is_server_error()
    );
    h.sandbox.set_faults(Faults::default());
    assert_eq!(
        h.get(&token, &h.api("/users")).await.status(),
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dropping_the_sandbox_stops_the_server() {
    let h = Harness::plain().await;
    let url = h.url("/__sandbox/state");
    let Harness { sandbox, http, .. } = h;
    drop(sandbox);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let fresh = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    assert!(fresh.get(&url).send().await.is_err());
    drop(http);
}

// ---------------------------------------------------------------- creating and finding users

impl Harness {
    /// `POST .../users` with `body`.
    async fn create_user(&self, token: &str, body: Value) -> Response {
        self.call(Method::POST, &self.api("/users"), token, Some(body))
            .await
    }

    /// `GET .../users/by-ext-id/{encoded}` (the caller percent-encodes).
    async fn by_ext_id(&self, token: &str, encoded: &str) -> Response {
        self.get(token, &self.api(&format!("/users/by-ext-id/{encoded}")))
            .await
    }

    /// `PUT /__sandbox/faults` with `body`: its status.
    async fn put_faults(&self, body: Value) -> StatusCode {
        let response = self.http.put(self.url("/__sandbox/faults")).json(&body);
        response.send().await.expect("faults").status()
    }
}

/// A create body for a customer with this CRM id and e-mail.
fn customer_body(crm: &str, email: &str) -> Value {
    json!({"role": "user", "email": email, "external_user_id": crm,
        "first_name": "Kim", "last_name": "Muster", "street_and_number": "Hauptstr. 1",
        "zip_code": "01067", "town": "Dresden", "country_iso2": "DE"})
}

#[tokio::test(flavor = "multi_thread")]
async fn a_created_user_is_answered_with_200_and_found_by_its_external_id() {
    let h = Harness::plain().await;
    let token = h.token().await;
    let crm = "CRM 1/ä";
    let (status, created) = parts(
        h.create_user(&token, customer_body(crm, "kim@example.com"))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let id: Uuid = serde_json::from_value(created["id"].clone()).expect("a UUID id");
    assert_eq!(
        (
            &created["external_user_id"],
            &created["role"],
            &created["email"]
        ),
        (&json!(crm), &json!("user"), &json!("kim@example.com"))
    );
    assert_eq!(
        (&created["zip_code"], &created["country"], &created["town"]),
        (&json!("01067"), &json!("DE"), &json!("Dresden"))
    );
    assert_eq!(created["num_heat_pumps"], 0);
    let (status, found) = parts(h.by_ext_id(&token, "CRM%201%2F%C3%A4").await).await;
    assert_eq!((status, &found["id"]), (200, &json!(id)), "{found}");
    assert_eq!(found["first_name"], "Kim");
    let state = h.sandbox.state();
    let user = &state.users[&id];
    assert_eq!(
        (user.external_user_id.as_deref(), user.role.as_str()),
        (Some(crm), "user")
    );
    assert_eq!(user.email, "kim@example.com");
    assert_eq!(state.users_with_external_id(crm).len(), 1);
    assert_eq!(state.count("create_user"), 1);
    assert_eq!(state.count("get_user_by_ext_id"), 1);
    assert!(state.anomalies.is_empty(), "{:?}", state.anomalies);
}

#[tokio::test(flavor = "multi_thread")]
async fn create_user_validates_like_django_ninja_and_creates_nothing_on_422() {
    let h = Harness::plain().await;
    let token = h.token().await;
    let cases = [
        (json!({"role": "user"}), vec!["missing"]),
        (json!({"email": "a@example.com"}), vec!["missing"]),
        (
            json!({"role": "owner", "email": "a@example.com"}),
            vec!["enum"],
        ),
        (
            json!({"role": "user", "email": "not-an-email"}),
            vec!["value_error"],
        ),
        (json!({"role": "user", "email": 5}), vec!["string_type"]),
        (
            json!({"role": "user", "email": "a@example.com", "zip_code": 1067}),
            vec!["string_type"],
        ),
        (
            json!({"role": "user", "email": "a@example.com", "external_user_id": 7}),
            vec!["string_type"],
        ),
        (
            json!({"role": "user", "email": "a@example.com", "crm_id": "x"}),
            vec!["extra_forbidden"],
        ),
        (json!(["a@example.com"]), vec!["model_attributes_type"]),
    ];
    for (body, expected) in cases {
        let (status, answer) = parts(h.create_user(&token, body.clone()).await).await;
        assert_eq!(status, 422, "{body} → {answer}");
        assert_eq!(error_types(&answer), expected, "{body} → {answer}");
        let loc = &answer["detail"][0]["loc"];
        assert_eq!(loc[0], "body", "{answer}");
    }
    let state = h.sandbox.state();
    assert_eq!(state.users.len(), 2, "only the two generated users");
    assert_eq!(state.count("create_user"), 9);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_taken_email_is_refused_case_insensitively_with_the_configured_status() {
    let seeded = sandbox::SeedUser::new("APP-1", "Anna@Example.com");
    let h = Harness::start(Builder::new().existing_users([seeded])).await;
    let token = h.token().await;
    let body = customer_body("CRM-9", "anna@example.COM");
    let (status, answer) = parts(h.create_user(&token, body.clone()).await).await;
    assert_eq!(status, 400, "the default: {answer}");
    assert!(answer["detail"].is_string(), "a string detail: {answer}");
    assert_eq!(
        h.put_faults(json!({"email_taken_status": 409})).await,
        StatusCode::OK
    );
    let (status, answer) = parts(h.create_user(&token, body.clone()).await).await;
    assert_eq!((status, answer["detail"].is_string()), (409, true));
    h.sandbox.set_faults(Faults {
        email_taken_status: 422,
        ..Faults::default()
    });
    let (status, answer) = parts(h.create_user(&token, body.clone()).await).await;
    assert_eq!((status, answer["detail"].is_string()), (422, true));
    assert_eq!(
        h.put_faults(json!({"email_taken_status": 500})).await,
        StatusCode::BAD_REQUEST,
        "only a 4xx"
    );
    // `{}` resets every knob, this one to 400.
    assert_eq!(h.put_faults(json!({})).await, StatusCode::OK);
    assert_eq!(h.create_user(&token, body).await.status(), 400);
    let state = h.sandbox.state();
    assert_eq!(state.users.len(), 3, "two generated users and Anna");
    assert!(state.users_with_external_id("CRM-9").is_empty());
    let free = customer_body("CRM-9", "anna2@example.com");
    assert_eq!(h.create_user(&token, free).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_user_with_one_external_id_is_created_and_by_ext_id_then_answers_a_plain_500() {
    let h = Harness::plain().await;
    let token = h.token().await;
    for email in ["one@example.com", "two@example.com"] {
        let response = h.create_user(&token, customer_body("CRM-7", email)).await;
        assert_eq!(response.status(), 200, "external ids are not unique");
    }
    let state = h.sandbox.state();
    assert_eq!(state.users_with_external_id("CRM-7").len(), 2);
    assert_eq!(state.external_id_duplicates(), [("CRM-7".to_owned(), 2)]);
    for _ in 0..2 {
        let response = h.by_ext_id(&token, "CRM-7").await;
        assert_eq!(response.status(), 500, "every time");
        let content_type = response.headers()["content-type"].to_str().unwrap_or("");
        assert!(content_type.starts_with("text/html"), "{content_type}");
        let text = response.text().await.expect("body");
        assert!(
            serde_json::from_str::<Value>(&text).is_err(),
            "not JSON: {text}"
        );
        assert!(text.contains("Server Error (500)"), "{text}");
    }
    let counts: sandbox::Counts = h
        .http
        .get(h.url("/__sandbox/state?counts=1"))
        .send()
        .await
        .expect("counts")
        .json()
        .await
        .expect("counts JSON");
    assert_eq!(counts.duplicate_external_ids, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_external_id_is_a_json_404() {
    let h = Harness::start(
        Builder::new().existing_users([sandbox::SeedUser::new("CRM-1", "one@example.com")]),
    )
    .await;
    let token = h.token().await;
    for encoded in ["CRM-2", "crm-1", "CRM-1%20"] {
        let response = h.by_ext_id(&token, encoded).await;
        let content_type = response.headers()["content-type"].to_owned();
        let (status, body) = parts(response).await;
        assert_eq!(
            (status, body, content_type.to_str().unwrap_or("")),
            (404, json!({"detail": "Not Found"}), "application/json"),
            "{encoded}"
        );
    }
    assert_eq!(h.by_ext_id(&token, "CRM-1").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_users_list_is_a_bare_array_of_every_user_with_num_heat_pumps() {
    let h = Harness::start(Builder::new().existing_users(crate::common::users::customers(0..1001)))
        .await;
    let token = h.token().await;
    let first = h.sandbox.state().users_with_external_id("CRM-0")[0].id;
    h.sandbox.connect_heat_pump(first, None);
    h.sandbox.connect_heat_pump(first, None);
    h.sandbox.connect_heat_pump(h.user, None);
    let response = h.get(&token, &h.api("/users")).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers().get("content-length").is_none(),
        "streamed (chunked), not one buffer"
    );
    let (_, body) = parts(response).await;
    let users = body.as_array().expect("a bare array");
    assert_eq!(users.len(), 1003, "1001 customers and 2 generated users");
    let pumps = |id: Uuid| {
        let user = users.iter().find(|u| u["id"] == json!(id)).expect("listed");
        user["num_heat_pumps"].as_u64()
    };
    assert_eq!((pumps(first), pumps(h.user)), (Some(2), Some(1)));
    assert_eq!(pumps(sandbox::generated_user_id(1)), Some(0));
    let crm_500 = users
        .iter()
        .find(|u| u["external_user_id"] == "CRM-500")
        .expect("CRM-500 listed");
    assert_eq!(crm_500["email"], "customer-500@example.com");
    assert_eq!(crm_500["first_name"], "Kim");
    let ids: Vec<&str> = users.iter().filter_map(|u| u["id"].as_str()).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "each user once, in id order"
    );
    assert_eq!(h.sandbox.state().count("list_users"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_users_list_is_valid_json_at_every_size() {
    // 0, 1, one chunk (500), one more, two chunks.
    for n in [0, 1, 500, 501, 1000] {
        let builder = Builder::new().existing_users(crate::common::users::customers(0..n));
        let h = Harness::start_bare(builder).await;
        let token = h.token().await;
        let (status, body) = parts(h.get(&token, &h.api("/users")).await).await;
        assert_eq!(status, 200);
        assert_eq!(body.as_array().map(Vec::len), Some(n), "{n} users");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_apply_to_create_user() {
    let h = Harness::start(Builder::new().faults(Faults {
        commit_then_drop: 1.0,
        ..Faults::default()
    }))
    .await;
    let token = h.token().await;
    let error = h
        .http
        .post(h.api("/users"))
        .bearer_auth(&token)
        .json(&customer_body("CRM-1", "one@example.com"))
        .send()
        .await
        .expect_err("dropped after the commit");
    assert!(error.is_request() && error.status().is_none(), "{error:?}");
    let state = h.sandbox.state();
    assert_eq!(
        state.users_with_external_id("CRM-1").len(),
        1,
        "the user exists anyway"
    );
    let crm_1 = state.users_with_external_id("CRM-1")[0].id;
    assert_eq!(
        state
            .log
            .last()
            .map(|e| (e.endpoint.as_str(), e.status, e.user_id)),
        Some(("create_user", 0, Some(crm_1))),
        "the log names the user a dropped create made"
    );
    h.sandbox.set_faults(Faults {
        fail_5xx_after_commit: 1.0,
        ..Faults::default()
    });
    let response = h
        .create_user(&token, customer_body("CRM-2", "two@example.com"))
        .await;
    assert_eq!(response.status(), 500);
    assert_eq!(h.sandbox.state().users_with_external_id("CRM-2").len(), 1);
    h.sandbox.set_faults(Faults {
        random_5xx: 1.0,
        ..Faults::default()
    });
    let response = h
        .create_user(&token, customer_body("CRM-3", "three@example.com"))
        .await;
    assert!(response.status().is_server_error());
    assert!(
        h.sandbox.state().users_with_external_id("CRM-3").is_empty(),
        "a random 5xx comes before the commit"
    );
    h.sandbox.set_faults(Faults {
        commit_then_drop: 1.0,
        ..Faults::default()
    });
    let taken = h
        .create_user(&token, customer_body("CRM-4", "one@example.com"))
        .await;
    assert_eq!(taken.status(), 400, "no commit, no commit fault");
    assert_eq!(h.sandbox.state().count("create_user"), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn users_are_seeded_over_http_all_or_none_behind_the_admin_token() {
    let h = Harness::start_bare(Builder::new().admin_token("adm1n")).await;
    let seed = |body: Value, token: Option<&str>| {
        let mut request = h.http.post(h.url("/__sandbox/users")).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let one = json!({"external_user_id": "CRM-1", "email": "one@example.com"});
    assert_eq!(seed(one.clone(), None).await.expect("seed").status(), 401);
    let (status, body) = parts(seed(one, Some("adm1n")).await.expect("seed")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ids"].as_array().map(Vec::len), Some(1));
    let id = Uuid::from_u128(7);
    let many = json!([
        {"id": id, "external_user_id": "CRM-2", "email": "two@example.com",
         "first_name": "Kim", "last_name": "Two"},
        {"external_user_id": "CRM-2", "email": "second-two@example.com", "role": "admin"},
        {"email": "app-user@example.com"}
    ]);
    let (status, body) = parts(seed(many, Some("adm1n")).await.expect("seed")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ids"][0], json!(id));
    let clash = json!([{"email": "three@example.com"}, {"email": "ONE@example.com"}]);
    let (status, body) = parts(seed(clash, Some("adm1n")).await.expect("seed")).await;
    assert_eq!(status, 400, "{body}");
    for bad in [
        json!({"role": "owner"}),
        json!({"crm": "x"}),
        json!([{"id": id}]),
    ] {
        let status = seed(bad.clone(), Some("adm1n"))
            .await
            .expect("seed")
            .status();
        assert_eq!(status, 400, "{bad}");
    }
    let state = h.sandbox.state();
    assert_eq!(state.users.len(), 4, "the refused batches added nobody");
    assert!(state.user_by_email("three@example.com").is_none());
    let user = &state.users[&id];
    assert_eq!(
        (
            user.external_user_id.as_deref(),
            user.email.as_str(),
            user.role.as_str()
        ),
        (Some("CRM-2"), "two@example.com", "user")
    );
    assert_eq!(user.fields["last_name"], "Two");
    assert_eq!(state.external_id_duplicates(), [("CRM-2".to_owned(), 2)]);
    assert_eq!(
        state
            .user_by_email("App-User@example.com")
            .map(|u| u.external_user_id.clone()),
        Some(None)
    );
    assert_eq!(state.users.values().filter(|u| u.role != "user").count(), 1);
    assert!(state.anomalies.is_empty(), "{:?}", state.anomalies);
}

#[tokio::test(flavor = "multi_thread")]
async fn seeded_users_are_checked_at_start_and_in_process() {
    let twice = [
        sandbox::SeedUser::new("CRM-1", "same@example.com"),
        sandbox::SeedUser::new("CRM-2", "Same@Example.com"),
    ];
    let error = Builder::new()
        .existing_users(twice)
        .start()
        .await
        .expect_err("one e-mail twice");
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    let h =
        Harness::start(Builder::new().existing_users(crate::common::users::customers(0..3))).await;
    let ids = h
        .sandbox
        .add_users([sandbox::SeedUser::new("CRM-0", "other@example.com").role("staff")])
        .expect("a second holder of CRM-0 is allowed");
    assert_eq!(ids.len(), 1);
    let refused = h.sandbox.add_users([crate::common::users::customer(1)]);
    assert!(refused.is_err(), "customer-1's e-mail is taken");
    let state = h.sandbox.state();
    assert_eq!(state.users.len(), 2 + 3 + 1);
    assert_eq!(state.users[&ids[0]].role, "staff");
    assert_eq!(
        crate::common::users::users_by_crm_id(&state)["CRM-0"].len(),
        2
    );
}

// ---------------------------------------------------------------- speed

#[tokio::test(flavor = "multi_thread")]
async fn throughput_with_16_concurrent_clients() {
    const REQUESTS: usize = 5000;
    const CONCURRENCY: usize = 16;
    let h = Harness::start(Builder::new().generated_users(CONCURRENCY)).await;
    let token = h.token().await;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..CONCURRENCY {
        let (http, url, token) = (
            h.http.clone(),
            h.api(&format!(
                "/users/{}",
                sandbox::generated_user_id(worker as u64)
            )),
            token.clone(),
        );
        tasks.spawn(async move {
            for i in 0..REQUESTS / CONCURRENCY {
                let body = json!({"external_user_id": format!("{worker}-{i}")});
                let response = http
                    .put(&url)
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await
                    .expect("request");
                assert_eq!(response.status(), StatusCode::OK);
            }
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.expect("worker");
    }
    let elapsed = started.elapsed();
    let done = REQUESTS / CONCURRENCY * CONCURRENCY;
    let rate = done as f64 / elapsed.as_secs_f64();
    eprintln!("sandbox throughput: {done} PUT user requests in {elapsed:?} = {rate:.0} req/s");
    assert!(rate > 200.0, "{rate:.0} req/s");
    assert_eq!(h.sandbox.state().count("put_user"), done as u64);
}
