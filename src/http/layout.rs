//! The HTML shell every server-rendered page shares (self-service and
//! admin): one `<head>` with the page's own stylesheet, no inline script
//! or style, so the Content-Security-Policy holds for all of them.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

/// A rendered page as an HTML response.
pub fn respond(status: StatusCode, markup: Markup) -> Response {
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], markup.into_string()).into_response()
}

/// A page titled `title` whose `<main>` is `body`, styled by
/// `base` + `stylesheet` (a path under this origin).
pub fn page(base: &str, stylesheet: &str, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="same-origin";
                title { (title) }
                link rel="stylesheet" href={ (base) (stylesheet) };
            }
            body {
                main { (body) }
            }
        }
    }
}
