//! The admin page: `GET /admin` (HTML), `/admin/admin.js` and `/admin/admin.css`, embedded in
//! the binary. No route needs a key (the page asks for one and calls the admin API with it).
//!
//! These responses carry a CSP of their own, stricter than a browser page usually gets: only
//! this origin's script, style and fetches, no inline code, no frames, no forms posting
//! anywhere. The router's security-headers layer keeps a CSP a handler set (`app::mod`).

use axum::http::{HeaderName, HeaderValue, header};
use axum::response::IntoResponse;

/// The admin page's Content-Security-Policy.
pub const ADMIN_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

const HTML: &str = include_str!("page/admin.html");
const JS: &str = include_str!("page/admin.js");
const CSS: &str = include_str!("page/admin.css");

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    let headers: [(HeaderName, HeaderValue); 2] = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(ADMIN_CSP),
        ),
    ];
    (headers, body)
}

/// `GET /admin`: the page.
#[utoipa::path(get, path = "/admin", tag = "admin",
    responses((status = 200, description = "the admin page", content_type = "text/html")))]
pub async fn html() -> impl IntoResponse {
    asset("text/html; charset=utf-8", HTML)
}

/// `GET /admin/admin.js`: the page's script.
#[utoipa::path(get, path = "/admin/admin.js", tag = "admin",
    responses((status = 200, description = "the admin page's script", content_type = "text/javascript")))]
pub async fn script() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", JS)
}

/// `GET /admin/admin.css`: the page's style sheet.
#[utoipa::path(get, path = "/admin/admin.css", tag = "admin",
    responses((status = 200, description = "the admin page's style sheet", content_type = "text/css")))]
pub async fn style() -> impl IntoResponse {
    asset("text/css; charset=utf-8", CSS)
}
