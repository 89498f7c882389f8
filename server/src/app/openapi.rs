//! The OpenAPI document, generated from the handlers' annotations.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi as _;
use utoipa::openapi::content::Content;
use utoipa::openapi::header::Header;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::response::Response as ApiResponse;
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Ref, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi, RefOr};

use crate::accounts::routes::{account, auth, certificate, devices, identity, usernames};
use crate::app::health;
use crate::blobs::routes as blobs;
use crate::keys::routes as keys;
use crate::mail::routes as messages;
use crate::vault::routes as vault;

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Haven relay API",
        version = "1",
        description = "Blind relay: accounts, devices, OPAQUE login, key directory, mailboxes, sender certificates, signed device lists and device linking, channels, the vault, blobs and the admin API. See docs/PROTOCOL.md §11."
    ),
    paths(
        health::health,
        health::ready,
        openapi_json,
        auth::register_start,
        auth::register_finish,
        auth::login_start,
        auth::login_finish,
        auth::refresh,
        auth::logout,
        auth::logout_all,
        auth::reauth_start,
        auth::reauth_finish,
        auth::recover_start,
        auth::recover_finish,
        devices::list,
        devices::rename,
        devices::unlink,
        account::delete,
        account::export,
        account::totp_setup,
        account::totp_verify,
        account::totp_disable,
        account::password_start,
        account::password_finish,
        account::recovery_start,
        account::recovery_finish,
        messages::set_access_key,
        identity::put_device_list,
        identity::device_list,
        identity::link_token,
        identity::link,
        identity::create_box,
        identity::fill_box,
        identity::take_box,
        keys::upload,
        keys::counts,
        keys::digest,
        keys::bundles,
        keys::device_bundle,
        messages::send,
        messages::send_sealed,
        messages::send_multi,
        messages::fetch,
        messages::ack,
        certificate::key,
        certificate::issue,
        crate::moderation::routes::franking_key,
        crate::moderation::routes::file_report,
        crate::moderation::routes::list_reports,
        crate::moderation::routes::get_report,
        crate::moderation::routes::decide_report,
        crate::moderation::routes::ban_account,
        crate::moderation::routes::unban_account,
        crate::moderation::routes::list_account_bans,
        crate::moderation::routes::ban_address,
        crate::moderation::routes::unban_address,
        crate::moderation::routes::list_address_bans,
        crate::audit::routes::page,
        crate::audit::routes::export,
        usernames::lookup,
        vault::put,
        vault::get,
        vault::delete,
        vault::restore,
        vault::history,
        vault::changes,
        vault::usage,
        crate::realtime::ws::ticket,
        crate::realtime::ws::upgrade,
        crate::channels::routes::create,
        crate::channels::routes::append_entry,
        crate::channels::routes::read_entries,
        blobs::create,
        blobs::list,
        blobs::status,
        blobs::part_urls,
        blobs::report_part,
        blobs::complete,
        blobs::download,
        blobs::delete,
        blobs::put_part,
        blobs::get_blob,
        crate::admin::routes::create,
        crate::admin::routes::list,
        crate::admin::routes::revoke,
        crate::admin::overview::overview,
        crate::admin::page::html,
        crate::admin::page::script,
        crate::admin::page::style,
        crate::push::routes::vapid,
        crate::push::routes::register,
        crate::push::routes::list,
        crate::push::routes::remove,
    )
)]
struct ApiDoc;

/// The OpenAPI document served at `/openapi.json`.
pub fn document() -> OpenApi {
    let mut doc = ApiDoc::openapi();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .build(),
        ),
    );
    components.add_security_scheme(
        "admin_key",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("hvn_admin_<base64url>")
                .description(Some("An admin API key (docs/PROTOCOL.md §11.19)"))
                .build(),
        ),
    );
    close_tagged_variants(components);
    add_layer_responses(&mut doc);
    doc
}

/// Request bodies that are internally tagged enums with `deny_unknown_fields` (serde refuses a
/// field no variant names); utoipa leaves their variants open, so the document says
/// `additionalProperties: false` on each variant itself.
const CLOSED_TAGGED_BODIES: [&str; 1] = ["PushEndpointRequest"];

fn close_tagged_variants(components: &mut utoipa::openapi::Components) {
    for name in CLOSED_TAGGED_BODIES {
        let Some(RefOr::T(Schema::OneOf(one_of))) = components.schemas.get_mut(name) else {
            continue;
        };
        for variant in &mut one_of.items {
            if let RefOr::T(Schema::Object(object)) = variant {
                object.additional_properties =
                    Some(Box::new(AdditionalProperties::FreeForm(false)));
            }
        }
    }
}

/// The error schema every error response has (PROTOCOL.md §11.2).
const ERROR_SCHEMA: &str = "ErrorBody";

/// The streaming blob routes: outside the address-ban layer (their transfer token is the
/// capability), inside the rate limit and a timeout of their own (`blobs::routes`).
const TRANSFER_PREFIX: &str = "/v1/blob-data/";

/// Adds to every operation the errors that the layers and extractors around its handler can
/// answer, so that the document lists every status a route can return, from the route's shape:
///
/// - 400 (`invalid_path`, `invalid_query`, `invalid_json`) when it has path or query
///   parameters or a body; 413 and 415 when that body is JSON;
/// - 401 when it names a security scheme;
/// - 403 `address_banned` unless it is exempt from address bans;
/// - 408 `request_timeout`, 429 `rate_limited` (with `Retry-After`) and 500 `internal` on every
///   operation (every route is timed out and rate limited per address, and the limiter fails
///   closed).
///
/// A status a route documents itself keeps its description (the generic code is appended).
/// Every 4xx/5xx response is then given the one error schema: no error leaves the relay in
/// another shape (`error::json_errors`).
fn add_layer_responses(doc: &mut OpenApi) {
    for (path, item) in &mut doc.paths.paths {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
            &mut item.options,
            &mut item.trace,
        ];
        for op in operations.into_iter().flatten() {
            add_operation_responses(path, op);
        }
    }
}

fn add_operation_responses(path: &str, op: &mut Operation) {
    let params = op.parameters.as_deref().unwrap_or_default();
    let has_path = params
        .iter()
        .any(|p| matches!(p.parameter_in, ParameterIn::Path));
    let has_query = params
        .iter()
        .any(|p| matches!(p.parameter_in, ParameterIn::Query));
    let json_body = op
        .request_body
        .as_ref()
        .is_some_and(|b| b.content.contains_key("application/json"));
    let any_body = op.request_body.is_some();
    let schemes: Vec<String> = op
        .security
        .iter()
        .flatten()
        .filter_map(|r| serde_json::to_value(r).ok())
        .filter_map(|v| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()))
        .flatten()
        .collect();
    let mut malformed = Vec::new();
    if has_path {
        malformed.push("`invalid_path`");
    }
    if has_query {
        malformed.push("`invalid_query`");
    }
    if json_body {
        malformed.push("`invalid_json`");
    }
    if !malformed.is_empty() || any_body {
        let text = if malformed.is_empty() {
            "malformed request".to_owned()
        } else {
            format!("malformed request: {}", malformed.join(", "))
        };
        ensure(op, "400", &text, &malformed);
    }
    if json_body {
        ensure(
            op,
            "413",
            "`payload_too_large`: the body exceeds the route's limit",
            &["`payload_too_large`"],
        );
        ensure(
            op,
            "415",
            "`unsupported_media_type`: the body must be `Content-Type: application/json`",
            &["`unsupported_media_type`"],
        );
    }
    if schemes.iter().any(|s| s == "bearer") {
        ensure(
            op,
            "401",
            "`missing_token`, `invalid_token`, `token_expired`, `session_revoked`: no valid session",
            &["`missing_token`"],
        );
    }
    if schemes.iter().any(|s| s == "admin_key") {
        ensure(
            op,
            "401",
            "`missing_admin_key`, `invalid_admin_key`: no valid admin key",
            &["`missing_admin_key`"],
        );
    }
    if !crate::moderation::routes::ban_exempt(path) && !path.starts_with(TRANSFER_PREFIX) {
        ensure(
            op,
            "403",
            "`address_banned`: requests from this network are refused",
            &["`address_banned`"],
        );
    }
    ensure(
        op,
        "408",
        "`request_timeout`: the request took longer than the configured timeout",
        &["`request_timeout`"],
    );
    ensure(
        op,
        "429",
        "`rate_limited`: too many requests from this address; retry after `Retry-After` seconds",
        &["`rate_limited`"],
    );
    if let Some(RefOr::T(response)) = op.responses.responses.get_mut("429") {
        let mut retry_after = Header::new(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(1)),
        );
        retry_after.description = Some("seconds to wait before retrying".to_owned());
        response
            .headers
            .entry("Retry-After".to_owned())
            .or_insert(retry_after);
    }
    ensure(
        op,
        "500",
        "`internal`: the cause is logged, never sent",
        &["`internal`"],
    );
    for (status, response) in &mut op.responses.responses {
        let is_error = status.starts_with('4') || status.starts_with('5');
        if let (true, RefOr::T(response)) = (is_error, response)
            && response.content.is_empty()
        {
            response
                .content
                .insert("application/json".to_owned(), error_content());
        }
    }
}

fn error_content() -> Content {
    Content::new(Some(RefOr::Ref(Ref::from_schema_name(ERROR_SCHEMA))))
}

/// Adds a `status` response described by `text` unless the operation has one; when it has,
/// appends the `codes` its description does not name yet.
fn ensure(op: &mut Operation, status: &str, text: &str, codes: &[&str]) {
    match op.responses.responses.get_mut(status) {
        Some(RefOr::T(response)) => {
            let missing: Vec<&str> = codes
                .iter()
                .copied()
                .filter(|c| !response.description.contains(c))
                .collect();
            if !missing.is_empty() {
                response.description =
                    format!("{}; also {}", response.description, missing.join(", "));
            }
        }
        Some(RefOr::Ref(_)) => {}
        None => {
            let mut response = ApiResponse::new(text);
            response
                .content
                .insert("application/json".to_owned(), error_content());
            op.responses
                .responses
                .insert(status.to_owned(), RefOr::T(response));
        }
    }
}

/// The OpenAPI document of this API (generated from the code).
#[utoipa::path(get, path = "/openapi.json", tag = "ops",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn openapi_json() -> Response {
    static DOC: OnceLock<String> = OnceLock::new();
    let doc = DOC.get_or_init(|| document().to_json().unwrap_or_default());
    ([(header::CONTENT_TYPE, "application/json")], doc.clone()).into_response()
}
