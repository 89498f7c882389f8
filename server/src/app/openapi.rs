//! The OpenAPI document, generated from the handlers' annotations.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi as _;
use utoipa::openapi::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

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
    doc
}

/// The OpenAPI document of this API (generated from the code).
#[utoipa::path(get, path = "/openapi.json", tag = "ops",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn openapi_json() -> Response {
    static DOC: OnceLock<String> = OnceLock::new();
    let doc = DOC.get_or_init(|| document().to_json().unwrap_or_default());
    ([(header::CONTENT_TYPE, "application/json")], doc.clone()).into_response()
}
