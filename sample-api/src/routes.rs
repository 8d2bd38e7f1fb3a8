//! The router and the handlers. [`handle`] is a function of the [`App`] state and one request;
//! it does no socket I/O (the login delay is a timer), so tests call it directly.
//!
//! | Route                 | Methods         | Answers                                            |
//! |-----------------------|-----------------|----------------------------------------------------|
//! | `/login`              | GET, HEAD       | 200, an HTML login form                            |
//! | `/login`              | POST            | after the login delay: 200 + `session` cookie, 403 bad credentials; 400 malformed, 413 too large, 415 other content types |
//! | `/logout`             | GET, POST       | 200, the session ended and the cookie cleared      |
//! | `/me`                 | GET, HEAD       | 200 the account, 401 without a live session        |
//! | `/items/{id}`         | GET, HEAD       | 200 for `1..=items`, 404 other numbers, 400 not a number |
//! | `/search?q=...`       | GET, HEAD       | 200 up to 10 items whose name contains `q`, 400 without `q` |
//! | `/notifications`      | GET, HEAD       | 200 with the session's poll count, 401 without a live session |
//! | `/health`             | GET, HEAD       | 200 `ok`                                           |
//!
//! Other methods on these routes are 405 with `Allow`; other paths 404. Errors are JSON
//! `{"error":"..."}`. Bad credentials are 403, not 401: hydra's `http-post-form` takes a 401 for
//! HTTP authentication and restarts its tasks.
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::body::Body;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::json;

use crate::access_log::{LoginNote, LoginOutcome};
use crate::accounts::Accounts;
use crate::form;
use crate::items;
use crate::sessions::{self, Sessions};

/// The largest request body read; larger ones are answered 413.
pub const MAX_BODY: usize = 16 * 1024;
/// The longest search query, in bytes.
pub const MAX_QUERY: usize = 100;
/// The page `GET /login` serves.
const LOGIN_FORM: &str = "<!doctype html>
<html><head><title>Sign in</title></head>
<body><h1>Sign in</h1>
<form method=\"post\" action=\"/login\">
<label>Username <input name=\"username\" autocomplete=\"username\"></label>
<label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\"></label>
<button type=\"submit\">Sign in</button>
</form></body></html>
";

/// A response with its whole body.
pub type Reply = Response<Full<Bytes>>;

/// The state every request sees.
#[derive(Debug)]
pub struct App {
    /// The accounts.
    pub accounts: Accounts,
    /// Live sessions.
    pub sessions: Sessions,
    /// Items `1..=items` exist.
    pub items: u64,
    /// How long every credential check takes.
    pub login_delay: Duration,
}

impl App {
    /// The state for these accounts and items, with no session yet.
    pub fn new(accounts: Accounts, items: u64, login_delay: Duration) -> Self {
        Self {
            accounts,
            sessions: Sessions::new(sessions::DEFAULT_CAPACITY),
            items,
            login_delay,
        }
    }
}

/// A handler's answer and what it adds to the access log.
#[derive(Debug)]
pub struct Routed {
    /// The response.
    pub response: Reply,
    /// For `POST /login`: the account and the outcome.
    pub login: Option<LoginNote>,
}

impl From<Reply> for Routed {
    fn from(response: Reply) -> Self {
        Self {
            response,
            login: None,
        }
    }
}

/// The known routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// `/login`.
    Login,
    /// `/logout`.
    Logout,
    /// `/me`.
    Me,
    /// `/items/{id}`.
    Item(ItemId),
    /// `/search`.
    Search,
    /// `/notifications`.
    Notifications,
    /// `/health`.
    Health,
    /// Anything else.
    NotFound,
}

/// The `{id}` of `/items/{id}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ItemId {
    /// A number that fits `u64`.
    Id(u64),
    /// Digits only, but too large for any item.
    TooLarge,
    /// Anything but digits (also empty).
    NotNumeric,
}

/// The route of `path`.
fn route(path: &str) -> Route {
    match path {
        "/login" => Route::Login,
        "/logout" => Route::Logout,
        "/me" => Route::Me,
        "/search" => Route::Search,
        "/notifications" => Route::Notifications,
        "/health" => Route::Health,
        _ => match path.strip_prefix("/items/") {
            Some(id) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) => {
                Route::Item(id.parse().map_or(ItemId::TooLarge, ItemId::Id))
            }
            Some(_) => Route::Item(ItemId::NotNumeric),
            None => Route::NotFound,
        },
    }
}

/// Answers one request.
pub async fn handle<B>(app: &App, req: Request<B>) -> Routed
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let route = route(req.uri().path());
    let method = req.method().clone();
    let read_only = matches!(method, Method::GET | Method::HEAD);
    match route {
        Route::Login if method == Method::POST => login(app, req).await,
        Route::Login if read_only => html(LOGIN_FORM).into(),
        Route::Login => not_allowed("GET, HEAD, POST").into(),
        Route::Logout if matches!(method, Method::GET | Method::POST) => {
            logout(app, req.headers()).into()
        }
        Route::Logout => not_allowed("GET, POST").into(),
        Route::NotFound => error(StatusCode::NOT_FOUND, "not found").into(),
        _ if !read_only => not_allowed("GET, HEAD").into(),
        Route::Me => me(app, req.headers()).into(),
        Route::Item(id) => item(app, id).into(),
        Route::Search => search(app, req.uri().query()).into(),
        Route::Notifications => notifications(app, req.headers()).into(),
        Route::Health => text(StatusCode::OK, "ok\n").into(),
    }
}

/// A login body.
#[derive(Debug, Deserialize)]
struct Credentials {
    /// The account name.
    username: String,
    /// Its password; never logged.
    password: String,
}

/// How a login body is encoded, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    /// `application/json`.
    Json,
    /// `application/x-www-form-urlencoded`, also when no type is given.
    Form,
    /// Anything else.
    Other,
}

/// The body kind of a request.
fn body_kind(headers: &HeaderMap) -> BodyKind {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return BodyKind::Form;
    };
    let essence = value
        .as_bytes()
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if essence.eq_ignore_ascii_case(b"application/json") {
        BodyKind::Json
    } else if essence.eq_ignore_ascii_case(b"application/x-www-form-urlencoded") {
        BodyKind::Form
    } else {
        BodyKind::Other
    }
}

/// Why a body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyError {
    /// Larger than [`MAX_BODY`].
    TooLarge,
    /// The client broke off or sent a broken encoding.
    Read,
}

/// Reads a whole body of at most [`MAX_BODY`] bytes; a larger `Content-Length` is refused
/// before reading.
async fn read_body<B>(req: Request<B>) -> Result<Bytes, BodyError>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(BodyError::TooLarge);
    }
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(BodyError::TooLarge),
        Err(_) => Err(BodyError::Read),
    }
}

/// `POST /login`.
async fn login<B>(app: &App, req: Request<B>) -> Routed
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let malformed = |response: Reply| Routed {
        response,
        login: Some(LoginNote {
            account: None,
            outcome: LoginOutcome::Malformed,
        }),
    };
    let kind = body_kind(req.headers());
    if kind == BodyKind::Other {
        return malformed(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send application/x-www-form-urlencoded or application/json",
        ));
    }
    let body = match read_body(req).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            return malformed(error(StatusCode::PAYLOAD_TOO_LARGE, "body too large"));
        }
        Err(BodyError::Read) => {
            return malformed(error(StatusCode::BAD_REQUEST, "unreadable body"));
        }
    };
    let credentials = match kind {
        BodyKind::Json => serde_json::from_slice::<Credentials>(&body).ok(),
        _ => form::parse(&body).ok().and_then(|pairs| {
            Some(Credentials {
                username: form::get(&pairs, "username")?.to_owned(),
                password: form::get(&pairs, "password")?.to_owned(),
            })
        }),
    };
    let Some(Credentials { username, password }) = credentials else {
        return malformed(error(
            StatusCode::BAD_REQUEST,
            "expected username and password",
        ));
    };
    // The cost of checking a password hash, paid for every attempt, known account or not.
    tokio::time::sleep(app.login_delay).await;
    let verified = app.accounts.verify(&username, &password);
    let (response, outcome) = match verified.map(|n| app.sessions.create(n)) {
        Some(Ok(token)) => (
            with_cookie(
                json(StatusCode::OK, &json!({"login": "ok"})),
                &format!("session={token}; Path=/; HttpOnly"),
            ),
            LoginOutcome::Ok,
        ),
        Some(Err(e)) => {
            eprintln!("sample-api: {e}");
            (
                error(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
                LoginOutcome::Failed,
            )
        }
        None => (
            error(StatusCode::FORBIDDEN, "invalid credentials"),
            LoginOutcome::Failed,
        ),
    };
    Routed {
        response,
        login: Some(LoginNote {
            account: Some(username),
            outcome,
        }),
    }
}

/// `GET /logout`: ends the session (if any) and clears the cookie.
fn logout(app: &App, headers: &HeaderMap) -> Reply {
    if let Some(token) = session_cookie(headers) {
        app.sessions.remove(token);
    }
    with_cookie(
        json(StatusCode::OK, &json!({"logout": "ok"})),
        "session=; Path=/; HttpOnly; Max-Age=0",
    )
}

/// `GET /me`.
fn me(app: &App, headers: &HeaderMap) -> Reply {
    match session_cookie(headers).and_then(|t| app.sessions.get(t)) {
        Some(session) => json(
            StatusCode::OK,
            &json!({"account": Accounts::name(session.account)}),
        ),
        None => error(StatusCode::UNAUTHORIZED, "not logged in"),
    }
}

/// `GET /items/{id}`.
fn item(app: &App, id: ItemId) -> Reply {
    match id {
        ItemId::Id(id) if (1..=app.items).contains(&id) => {
            json(StatusCode::OK, &json!(items::item(id)))
        }
        ItemId::Id(_) | ItemId::TooLarge => error(StatusCode::NOT_FOUND, "no such item"),
        ItemId::NotNumeric => error(StatusCode::BAD_REQUEST, "item ids are numbers"),
    }
}

/// `GET /search?q=...`.
fn search(app: &App, query: Option<&str>) -> Reply {
    let pairs = match form::parse(query.unwrap_or_default().as_bytes()) {
        Ok(pairs) => pairs,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("bad query string: {e}")),
    };
    let q = form::get(&pairs, "q").map(str::trim).unwrap_or_default();
    if q.is_empty() {
        return error(StatusCode::BAD_REQUEST, "missing q");
    }
    if q.len() > MAX_QUERY {
        return error(StatusCode::BAD_REQUEST, "q too long");
    }
    json(
        StatusCode::OK,
        &json!({"query": q, "results": items::search(q, app.items)}),
    )
}

/// `GET /notifications`: what a polling client sees.
fn notifications(app: &App, headers: &HeaderMap) -> Reply {
    match session_cookie(headers).and_then(|t| app.sessions.poll(t)) {
        Some(session) => json(
            StatusCode::OK,
            &json!({"unread": 0, "notifications": [], "polls": session.polls}),
        ),
        None => error(StatusCode::UNAUTHORIZED, "not logged in"),
    }
}

/// The value of the `session` cookie, from any `Cookie` header.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix("session="))
}

/// A response with `body` and `content_type`.
fn response(status: StatusCode, content_type: &'static str, body: Bytes) -> Reply {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A JSON response (with a final newline).
fn json(status: StatusCode, value: &serde_json::Value) -> Reply {
    let mut body = value.to_string().into_bytes();
    body.push(b'\n');
    response(status, "application/json", Bytes::from(body))
}

/// A JSON error `{"error": message}`.
fn error(status: StatusCode, message: &str) -> Reply {
    json(status, &json!({"error": message}))
}

/// A plain-text response.
fn text(status: StatusCode, body: &'static str) -> Reply {
    response(
        status,
        "text/plain; charset=utf-8",
        Bytes::from_static(body.as_bytes()),
    )
}

/// An HTML page.
fn html(body: &'static str) -> Reply {
    response(
        StatusCode::OK,
        "text/html; charset=utf-8",
        Bytes::from_static(body.as_bytes()),
    )
}

/// 405 with the `Allow` header.
fn not_allowed(allow: &'static str) -> Reply {
    let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

/// `reply` with a `Set-Cookie` header (a 500 if `cookie` is not a valid header value, which
/// the cookies made here always are).
fn with_cookie(mut reply: Reply, cookie: &str) -> Reply {
    match HeaderValue::from_str(cookie) {
        Ok(value) => {
            reply.headers_mut().insert(header::SET_COOKIE, value);
            reply
        }
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
    }
}

#[cfg(test)]
mod tests;
