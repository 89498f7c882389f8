//! The OpenAPI document as a contract (issue 20): what it promises about every operation, and
//! the rejections of axum's extractors and layers answering in the one JSON error format of
//! PROTOCOL.md §11.2 with a status the document lists.

use crate::common::Api as _;
use crate::common::Harness;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use haven_relay::channels::store::TicketStore as _;
use haven_relay::ids::Id;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

const PASSWORD: &str = "correct horse battery staple";
const ERROR_REF: &str = "#/components/schemas/ErrorBody";
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

fn document() -> Value {
    serde_json::to_value(haven_relay::app::openapi::document()).unwrap()
}

/// Every operation of the document: (method, path template, operation).
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                out.push((method.to_owned(), path.clone(), op.clone()));
            }
        }
    }
    out
}

/// Follows a `$ref` into the document's components.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.strip_prefix("#/components/schemas/").unwrap();
            let target = &doc["components"]["schemas"][name];
            assert!(!target.is_null(), "dangling reference {r}");
            target
        }
        None => schema,
    }
}

/// Whether `schema` is `{"error": {"code": string, "message": string, ...}}` (required).
fn extends_error(doc: &Value, schema: &Value) -> bool {
    let outer = resolve(doc, schema);
    let inner = resolve(doc, &outer["properties"]["error"]);
    let required = |v: &Value, name: &str| {
        v["required"]
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x == name))
    };
    required(outer, "error")
        && ["code", "message"]
            .iter()
            .all(|f| required(inner, f) && inner["properties"][*f]["type"] == "string")
}

fn requires_bearer(op: &Value, scheme: &str) -> bool {
    op["security"]
        .as_array()
        .is_some_and(|reqs| reqs.iter().any(|r| r.get(scheme).is_some()))
}

/// Structural properties of the generated document that a client generator relies on.
#[test]
fn openapi_document_is_a_contract() {
    let doc = document();
    let ops = operations(&doc);
    assert!(ops.len() > 50, "{} operations", ops.len());
    let mut problems = Vec::new();
    for (method, path, op) in &ops {
        let at = format!("{} {path}", method.to_uppercase());
        let responses = op["responses"].as_object().unwrap();
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        // Every route is rate limited and timed out per address, and its limiter fails closed.
        for status in ["408", "429", "500"] {
            if !responses.contains_key(status) {
                problems.push(format!("{at}: no {status}"));
            }
        }
        if responses
            .get("429")
            .is_some_and(|r| r["headers"]["Retry-After"].is_null())
        {
            problems.push(format!("{at}: 429 without Retry-After"));
        }
        // Every error response is the one error format, as JSON: the error schema, or (the
        // vault's 409) a schema extending its `error` object with more fields.
        for (status, response) in responses {
            if !(status.starts_with('4') || status.starts_with('5')) {
                continue;
            }
            let content = response["content"].as_object();
            let only_json_error = content.is_some_and(|c| {
                let schema = &c["application/json"]["schema"];
                c.len() == 1 && (schema["$ref"] == ERROR_REF || extends_error(&doc, schema))
            });
            if !only_json_error {
                problems.push(format!("{at}: {status} is not the JSON error format"));
            }
        }
        // Every `{name}` of the template is a documented path parameter with a pattern or a
        // format, so a generator only makes values the relay can parse.
        let names: Vec<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .collect();
        for name in &names {
            let param = params
                .iter()
                .find(|p| p["in"] == "path" && p["name"] == *name);
            match param {
                None => problems.push(format!("{at}: path parameter {name} undocumented")),
                Some(p) => {
                    let schema = resolve(&doc, &p["schema"]);
                    if schema["pattern"].is_null() && schema["format"].is_null() {
                        problems.push(format!("{at}: path parameter {name} has no pattern/format"));
                    }
                    if p["required"] != true {
                        problems.push(format!("{at}: path parameter {name} not required"));
                    }
                }
            }
        }
        for p in &params {
            if p["in"] == "path" && !names.contains(&p["name"].as_str().unwrap()) {
                problems.push(format!(
                    "{at}: documents path parameter {} not in the template",
                    p["name"]
                ));
            }
            if p["schema"].is_null() {
                problems.push(format!("{at}: parameter {} has no schema", p["name"]));
            }
        }
        // Inputs can be malformed: 400; JSON bodies can be too large or of another type.
        let json_body = !op["requestBody"]["content"]["application/json"].is_null();
        let parsed_input = params
            .iter()
            .any(|p| p["in"] == "path" || p["in"] == "query")
            || !op["requestBody"].is_null();
        if parsed_input && !responses.contains_key("400") {
            problems.push(format!("{at}: takes input but documents no 400"));
        }
        if json_body {
            for status in ["413", "415"] {
                if !responses.contains_key(status) {
                    problems.push(format!("{at}: JSON body but no {status}"));
                }
            }
        }
        if (requires_bearer(op, "bearer") || requires_bearer(op, "admin_key"))
            && !responses.contains_key("401")
        {
            problems.push(format!("{at}: authenticated but no 401"));
        }
        // Every operation has a success response.
        if !responses.keys().any(|s| s.starts_with('2') || s == "101") {
            problems.push(format!("{at}: no success response"));
        }
    }
    // Routes that address bans apply to say so; the admin API and health checks are exempt.
    for (method, path, op) in &ops {
        let exempt = path.starts_with("/v1/admin/")
            || path.starts_with("/v1/blob-data/")
            || path == "/health"
            || path == "/ready";
        let has_403 = op["responses"].get("403").is_some_and(|r| {
            r["description"]
                .as_str()
                .is_some_and(|d| d.contains("address_banned"))
        });
        if !exempt && !has_403 {
            problems.push(format!("{method} {path}: no 403 address_banned"));
        }
    }
    // Every reference anywhere in the document resolves.
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r);
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    for r in all {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or(r);
        if doc["components"]["schemas"][name].is_null() {
            problems.push(format!("dangling reference {r}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The document of one operation's responses.
fn documented(doc: &Value, method: &str, template: &str) -> Vec<String> {
    let op = &doc["paths"][template][method];
    assert!(!op.is_null(), "{method} {template} is not documented");
    op["responses"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

/// Asserts a JSON error reply with `status` and `code` whose status the document lists for
/// the operation.
#[track_caller]
fn assert_contract_error(
    doc: &Value,
    reply: &crate::common::Reply,
    status: StatusCode,
    code: &str,
    operation: (&str, &str),
) {
    assert_eq!(reply.status, status, "{:?}: {}", operation, reply.body);
    assert_eq!(
        reply.headers.get(header::CONTENT_TYPE).unwrap(),
        "application/json",
        "{operation:?}"
    );
    assert_eq!(
        reply.body["error"]["code"], code,
        "{operation:?}: {}",
        reply.body
    );
    assert!(reply.body["error"]["message"].is_string());
    let (method, template) = operation;
    if !template.is_empty() {
        let listed = documented(doc, method, template);
        assert!(
            listed.contains(&status.as_str().to_owned()),
            "{method} {template} answers {status} but documents only {listed:?}"
        );
    }
}

fn request(method: Method, uri: &str) -> axum::http::request::Builder {
    Request::builder().method(method).uri(uri)
}

/// Rejections of the path and query extractors, of the body limit and media type, of the
/// method and route fallbacks: all JSON, all documented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_answer_in_the_json_error_format() {
    let h = Harness::sqlite().await.unwrap();
    let doc = document();
    let id = Id::random().to_hex();
    let alice = h.register(None, PASSWORD).await;
    let bearer = format!("Bearer {}", alice.access);

    // A missing query parameter (was axum's plain-text 400).
    let reply = h
        .raw(
            request(Method::GET, &format!("/v1/blob-data/{id}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_contract_error(
        &doc,
        &reply,
        StatusCode::BAD_REQUEST,
        "invalid_query",
        ("get", "/v1/blob-data/{blob_id}"),
    );
    // A path segment that is not the parameter's type (was plain text).
    let reply = h
        .raw(
            request(Method::PUT, &format!("/v1/blob-data/{id}/first?token=x"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_contract_error(
        &doc,
        &reply,
        StatusCode::BAD_REQUEST,
        "invalid_path",
        ("put", "/v1/blob-data/{blob_id}/{part}"),
    );
    // A path segment that is not UTF-8 once percent-decoded (was plain text).
    let reply = h
        .raw(
            request(Method::GET, "/v1/blobs/%FF%FE")
                .header(header::AUTHORIZATION, &bearer)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_contract_error(
        &doc,
        &reply,
        StatusCode::BAD_REQUEST,
        "invalid_path",
        ("get", "/v1/blobs/{blob_id}"),
    );
    // An unknown query parameter where the query is strict (was plain text).
    let reply = h
        .raw(
            request(Method::GET, &format!("/v1/blob-data/{id}?token=x&bogus=1"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_contract_error(
        &doc,
        &reply,
        StatusCode::BAD_REQUEST,
        "invalid_query",
        ("get", "/v1/blob-data/{blob_id}"),
    );
    // A method the streaming routes do not serve (was an empty 405); `Allow` is kept.
    let reply = h
        .raw(
            request(Method::DELETE, &format!("/v1/blob-data/{id}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_contract_error(
        &doc,
        &reply,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        ("", ""),
    );
    assert!(
        reply.headers.get(header::ALLOW).is_some(),
        "{:?}",
        reply.headers
    );
    // ... and of the API routes.
    let reply = h
        .raw(
            request(Method::PATCH, "/v1/channels")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_contract_error(
        &doc,
        &reply,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        ("", ""),
    );
    // No such route.
    let reply = h
        .raw(
            request(Method::GET, "/v1/nothing/here")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_contract_error(&doc, &reply, StatusCode::NOT_FOUND, "not_found", ("", ""));
    // A JSON body of another media type, a malformed one, and one over the limit.
    let channels = ("post", "/v1/channels");
    let reply = h
        .raw(
            request(Method::POST, "/v1/channels")
                .header(header::AUTHORIZATION, &bearer)
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await;
    assert_contract_error(
        &doc,
        &reply,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        channels,
    );
    let reply = h
        .raw(
            request(Method::POST, "/v1/channels")
                .header(header::AUTHORIZATION, &bearer)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{\"ttl_secs\": \"soon\"}"))
                .unwrap(),
        )
        .await;
    assert_contract_error(
        &doc,
        &reply,
        StatusCode::BAD_REQUEST,
        "invalid_json",
        channels,
    );
    let limit = h.state.settings().body_limit_bytes;
    let huge = format!(
        "{{\"ttl_secs\": 60, \"pad\": \"{}\"}}",
        "x".repeat(limit + 1)
    );
    let reply = h
        .raw(
            request(Method::POST, "/v1/channels")
                .header(header::AUTHORIZATION, &bearer)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(huge))
                .unwrap(),
        )
        .await;
    assert_contract_error(
        &doc,
        &reply,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        channels,
    );
    // The refused requests left the route working: a valid create succeeds.
    let created = h
        .call(
            Method::POST,
            "/v1/channels",
            Some(json!({})),
            Some(&alice.access),
        )
        .await
        .expect(StatusCode::CREATED);
    assert!(created.body["channel_id"].is_string());
}

/// `GET /v1/ws`: credentials are checked before the upgrade (401 before 400, was 400), and a
/// ticket is not spent by a request that is not an upgrade.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_rejections_check_credentials_first_and_spend_nothing() {
    let h = Harness::sqlite().await.unwrap();
    let doc = document();
    let ws = ("get", "/v1/ws");
    let reply = h
        .raw(request(Method::GET, "/v1/ws").body(Body::empty()).unwrap())
        .await;
    assert_contract_error(&doc, &reply, StatusCode::UNAUTHORIZED, "missing_token", ws);
    let reply = h
        .raw(
            request(Method::GET, "/v1/ws?ticket=short")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_contract_error(&doc, &reply, StatusCode::UNAUTHORIZED, "invalid_ticket", ws);
    let reply = h
        .raw(
            request(Method::GET, "/v1/ws?ticket=a&other=b")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_contract_error(&doc, &reply, StatusCode::BAD_REQUEST, "invalid_query", ws);
    // With a valid credential but no upgrade: 400, and the ticket stays spendable.
    let alice = h.register(None, PASSWORD).await;
    let reply = h
        .raw(
            request(Method::GET, "/v1/ws")
                .header(header::AUTHORIZATION, format!("Bearer {}", alice.access))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_contract_error(&doc, &reply, StatusCode::BAD_REQUEST, "not_websocket", ws);
    let ticket = h
        .call(
            Method::POST,
            "/v1/ws/ticket",
            Some(json!({})),
            Some(&alice.access),
        )
        .await
        .expect(StatusCode::CREATED);
    let ticket = ticket.body["ticket"].as_str().unwrap().to_owned();
    let reply = h
        .raw(
            request(Method::GET, &format!("/v1/ws?ticket={ticket}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_contract_error(&doc, &reply, StatusCode::BAD_REQUEST, "not_websocket", ws);
    let hash: [u8; 32] = Sha256::digest(URL_SAFE_NO_PAD.decode(&ticket).unwrap()).into();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let session = h
        .store
        .take_ticket(&hash, i64::try_from(now).unwrap())
        .await
        .unwrap();
    assert!(session.is_some(), "the refused request spent the ticket");
}

/// An encoding of bytes as text (a `base64` engine).
type Encoder<'a> = &'a dyn Fn(&[u8]) -> String;

/// Every encoded string of a request or reply schema: its pattern admits exactly what the
/// relay's decoder (the `base64` crate's strict engines) accepts, within the lengths it states.
#[test]
fn schema_patterns_match_the_relays_decoders() {
    use base64::engine::general_purpose::STANDARD;
    let doc = document();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut bytes = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed.to_le_bytes()[0]
            })
            .collect()
    };
    const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_";
    let mut checked = 0;
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        let Some(props) = schema["properties"].as_object() else {
            continue;
        };
        for (field, prop) in props {
            let (Some(pattern), Some(description)) =
                (prop["pattern"].as_str(), prop["description"].as_str())
            else {
                continue;
            };
            let at = format!("{name}.{field}");
            let re = regex::Regex::new(pattern).unwrap();
            let min = prop["minLength"].as_u64().map(|n| n as usize);
            let max = prop["maxLength"].as_u64().map(|n| n as usize);
            let words: Vec<&str> = description.split(' ').collect();
            let number = |w: &str| w.parse::<usize>().ok();
            let (engine, lengths): (Encoder<'_>, Vec<usize>) = match words.as_slice() {
                ["standard", "base64", "of", "1", "to", n, "bytes"] => {
                    let n = number(n).unwrap();
                    let top = max.unwrap() / 4 * 3;
                    assert!(top <= n, "{at}: maxLength admits {top} > {n} bytes");
                    (
                        &|b: &[u8]| STANDARD.encode(b),
                        vec![1, 2, 3, 4, 5, top - 1, top],
                    )
                }
                ["standard", "base64", "of", n, "bytes"] => {
                    (&|b: &[u8]| STANDARD.encode(b), vec![number(n).unwrap()])
                }
                ["unpadded", "base64url", "of", n, "bytes"] => (
                    &|b: &[u8]| URL_SAFE_NO_PAD.encode(b),
                    vec![number(n).unwrap()],
                ),
                _ => continue,
            };
            let decodes = |text: &str| {
                if description.starts_with("unpadded") {
                    URL_SAFE_NO_PAD.decode(text).is_ok()
                } else {
                    STANDARD.decode(text).is_ok()
                }
            };
            for len in lengths {
                for _ in 0..8 {
                    let text = engine(&bytes(len));
                    assert!(re.is_match(&text), "{at}: {pattern} refuses {text}");
                    assert!(
                        min.is_none_or(|m| text.len() >= m),
                        "{at}: {text} under minLength"
                    );
                    assert!(
                        max.is_none_or(|m| text.len() <= m),
                        "{at}: {text} over maxLength"
                    );
                    // Every variant of the last data character: the pattern admits it exactly
                    // when the decoder does (canonical trailing bits).
                    let data = text.trim_end_matches('=');
                    let pad = &text[data.len()..];
                    let stem = &data[..data.len() - 1];
                    for c in ALPHABET.chars() {
                        let variant = format!("{stem}{c}{pad}");
                        assert_eq!(
                            re.is_match(&variant),
                            decodes(&variant),
                            "{at}: {pattern} and the decoder disagree on {variant}"
                        );
                    }
                }
            }
            // Longer than the schema allows is refused by the pattern too.
            if let Some(m) = max {
                let longer = engine(&bytes(m / 4 * 3 + 3));
                assert!(!re.is_match(&longer), "{at}: {pattern} admits {longer}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} encoded fields have patterns");
    // The id pattern is the id parser.
    let id = &doc["components"]["schemas"]["Id"];
    let id_re = regex::Regex::new(id["pattern"].as_str().unwrap()).unwrap();
    for text in [
        Id::random().to_hex(),
        Id::random().to_hex().to_uppercase(),
        "0".repeat(31),
        "0".repeat(33),
        "g".repeat(32),
    ] {
        assert_eq!(id_re.is_match(&text), text.parse::<Id>().is_ok(), "{text}");
    }
}
