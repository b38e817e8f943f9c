//! Targets: the list (with the pollers using each), the new and edit forms
//! (every setting of the kind, secrets as inputs never prefilled) and
//! delete, all through the API's handlers.

use super::fields::{FieldDef, Input, Raw, def};
use super::session::CsrfForm;
use super::{Chrome, PageError, PageResult, PageUser, html, html_status, see_other};
use crate::AppState;
use crate::api::targets::{self as api, TargetInput, TargetView};
use crate::error::ApiError;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Form, Json};
use dispatch_protocol::target::KINDS;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

const RATE: &str = "Megabits per second; empty: no limit.";
const DEST: &str = "Folder on the server; every item keeps its path under it.";

const LOCAL: &[FieldDef] = &[
    def(
        "destination",
        "Destination directory",
        Input::Text,
        "Absolute, on the agent's machine.",
    ),
    def(
        "verify_sha256",
        "Also compare sha256",
        Input::Bool,
        "The size is always checked.",
    ),
    def("rate_limit_mbps", "Speed limit (Mbps)", Input::Number, RATE),
    def(
        "fsync",
        "fsync each copy",
        Input::Bool,
        "Off trades power-loss safety for speed.",
    ),
];

const ASPERA: &[FieldDef] = &[
    def("host", "Host", Input::Text, ""),
    def("user", "User", Input::Text, ""),
    def(
        "password",
        "Password",
        Input::Secret,
        "Exactly one of password, SSH key or SSH key file.",
    ),
    def("ssh_key", "SSH private key", Input::SecretText, ""),
    def(
        "ssh_key_file",
        "SSH key file",
        Input::OptText,
        "Absolute path on the agent.",
    ),
    def("port", "Port", Input::Number, ""),
    def("destination", "Destination folder", Input::Text, DEST),
    def("rate_limit_mbps", "Speed limit (Mbps)", Input::Number, ""),
    def(
        "encrypt",
        "Encrypt at rest",
        Input::Bool,
        "Needs a passphrase.",
    ),
    def("passphrase", "Passphrase", Input::Secret, ""),
    def("ascp", "ascp program", Input::Text, ""),
    def(
        "flags",
        "Extra ascp flags",
        Input::List,
        "Separated by spaces.",
    ),
];

const SFTP: &[FieldDef] = &[
    def("host", "Host", Input::Text, ""),
    def("port", "Port", Input::Number, ""),
    def("username", "Username", Input::Text, ""),
    def(
        "password",
        "Password",
        Input::Secret,
        "Exactly one of password, private key or key file.",
    ),
    def("private_key", "Private key (PEM)", Input::SecretText, ""),
    def(
        "private_key_file",
        "Private key file",
        Input::OptText,
        "Absolute path on the agent.",
    ),
    def(
        "passphrase",
        "Key passphrase",
        Input::Secret,
        "Decrypts an encrypted private key.",
    ),
    def(
        "known_hosts",
        "known_hosts file",
        Input::OptText,
        "Exactly one of known_hosts, fingerprint or no check.",
    ),
    def(
        "host_key_fingerprint",
        "Host key fingerprint",
        Input::OptText,
        "SHA256:... as `ssh-keygen -lf` prints it.",
    ),
    def(
        "insecure_skip_host_key_check",
        "Do not check the host key (insecure)",
        Input::Bool,
        "",
    ),
    def("destination", "Destination folder", Input::OptText, DEST),
    def("rate_limit_mbps", "Speed limit (Mbps)", Input::Number, RATE),
    def(
        "fsync",
        "Ask the server to flush each file",
        Input::Bool,
        "",
    ),
];

const S3: &[FieldDef] = &[
    def(
        "endpoint",
        "Endpoint URL",
        Input::Text,
        "e.g. https://s3.eu-west-1.amazonaws.com",
    ),
    def("region", "Region", Input::Text, ""),
    def("bucket", "Bucket", Input::Text, ""),
    def("access_key", "Access key", Input::Text, ""),
    def("secret_key", "Secret key", Input::Secret, ""),
    def(
        "path_style",
        "Path-style URLs",
        Input::Bool,
        "Off: bucket.endpoint/key.",
    ),
    def(
        "multipart_threshold_mb",
        "Multipart above (MiB)",
        Input::Number,
        "At most 5120.",
    ),
    def(
        "part_size_mb",
        "Part size (MiB)",
        Input::Number,
        "5 to 5120.",
    ),
    def("destination", "Key prefix", Input::OptText, ""),
    def("rate_limit_mbps", "Speed limit (Mbps)", Input::Number, RATE),
];

const FTP: &[FieldDef] = &[
    def("host", "Host", Input::Text, ""),
    def("port", "Port", Input::Number, ""),
    def("username", "Username", Input::Text, ""),
    def("password", "Password", Input::Secret, ""),
    def(
        "tls",
        "TLS",
        Input::Choice(&["explicit", "none"]),
        "explicit: FTPS (AUTH TLS); none: plain FTP.",
    ),
    def(
        "ca_file",
        "CA certificates file",
        Input::OptText,
        "PEM, trusted besides the system's roots.",
    ),
    def("destination", "Destination folder", Input::OptText, DEST),
    def("rate_limit_mbps", "Speed limit (Mbps)", Input::Number, RATE),
];

const WEBDAV: &[FieldDef] = &[
    def(
        "url",
        "URL",
        Input::Text,
        "e.g. https://dav.example.net/remote.php/dav",
    ),
    def("username", "Username", Input::OptText, ""),
    def("password", "Password", Input::Secret, ""),
    def("destination", "Destination folder", Input::OptText, DEST),
    def("rate_limit_mbps", "Speed limit (Mbps)", Input::Number, RATE),
];

/// Every setting of `kind`'s struct (checked in the tests).
fn defs(kind: &str) -> &'static [FieldDef] {
    match kind {
        "aspera" => ASPERA,
        "sftp" => SFTP,
        "s3" => S3,
        "ftp" => FTP,
        "webdav" => WEBDAV,
        _ => LOCAL,
    }
}

/// A new target's settings: the protocol's defaults, required text empty.
fn defaults(kind: &str) -> Value {
    let mut json = serde_json::json!({ "kind": kind });
    // Each try names one missing required field; give it an empty value.
    for _ in 0..16 {
        let v = crate::target_store::with_placeholders(json.clone());
        match serde_json::from_value::<dispatch_protocol::Target>(v) {
            Ok(mut t) => {
                crate::target_store::clear_empty_secrets(&mut t);
                return crate::target_store::public_json(&t);
            }
            Err(e) => {
                let text = e.to_string();
                let Some(missing) = text
                    .strip_prefix("missing field `")
                    .and_then(|m| m.split('`').next())
                else {
                    break;
                };
                json[missing] = Value::String(String::new());
            }
        }
    }
    json
}

pub struct Row {
    pub id: i64,
    pub name: String,
    pub kind: String,
    pub summary: String,
    pub pollers: String,
}

#[derive(Template)]
#[template(path = "targets.html")]
struct ListPage {
    chrome: Chrome,
    targets: Vec<Row>,
    error: Option<String>,
    notice: Option<String>,
}

#[derive(Deserialize)]
pub struct Notice {
    done: Option<String>,
}

async fn list_page(
    state: &Arc<AppState>,
    user: &PageUser,
    error: Option<String>,
    notice: Option<String>,
) -> Result<ListPage, PageError> {
    let targets = api::list(State(state.clone()), user.0.clone())
        .await?
        .0
        .into_iter()
        .map(|t| Row {
            id: t.id,
            name: t.name,
            kind: t.kind,
            summary: t.summary,
            pollers: t.pollers.join(", "),
        })
        .collect();
    Ok(ListPage {
        chrome: user.chrome("targets"),
        targets,
        error,
        notice,
    })
}

pub async fn list(
    State(state): State<Arc<AppState>>,
    user: PageUser,
    Query(n): Query<Notice>,
) -> PageResult {
    let notice = match n.done.as_deref() {
        Some("created") => Some("Target created."),
        Some("saved") => Some("Changes saved."),
        Some("deleted") => Some("Target deleted."),
        _ => None,
    };
    html(&list_page(&state, &user, None, notice.map(str::to_string)).await?)
}

/// Refused while pollers use it: the list comes back with the reason.
pub async fn delete(
    State(state): State<Arc<AppState>>,
    user: PageUser,
    Path(id): Path<i64>,
    Form(f): Form<CsrfForm>,
) -> PageResult {
    user.0.check_csrf(&f.csrf)?;
    match api::delete(State(state.clone()), user.0.clone(), Path(id)).await {
        Ok(_) => see_other("/targets?done=deleted"),
        Err(e) if e.status == StatusCode::CONFLICT => {
            let message = format!("Cannot delete: {}.", e.message);
            let page = list_page(&state, &user, Some(message), None).await?;
            html_status(StatusCode::CONFLICT, &page)
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "target_form.html")]
struct FormPage {
    chrome: Chrome,
    /// None: a new target.
    id: Option<i64>,
    name: String,
    kind: String,
    kinds: &'static [&'static str],
    fields: Vec<super::fields::Field>,
    /// (field, message) of the error no field shows.
    error: Option<(String, String)>,
    other_error: String,
}

fn form_page(
    user: &PageUser,
    id: Option<i64>,
    name: String,
    kind: String,
    raw: &Raw,
    secrets: &BTreeMap<String, bool>,
    error: Option<(String, String)>,
) -> FormPage {
    let defs = defs(&kind);
    let fields = raw.draw(defs, "target.", error.as_ref(), secrets);
    let other_error = match &error {
        Some((f, m)) if f != "name" && !super::fields::is_field_error(defs, "target.", f) => {
            if f.is_empty() {
                m.clone()
            } else {
                format!("{f}: {m}")
            }
        }
        _ => String::new(),
    };
    FormPage {
        chrome: user.chrome("targets"),
        id,
        name,
        kind,
        kinds: &KINDS,
        fields,
        error,
        other_error,
    }
}

impl FormPage {
    fn name_error(&self) -> &str {
        match &self.error {
            Some((f, m)) if f == "name" => m,
            _ => "",
        }
    }
}

#[derive(Deserialize)]
pub struct NewQuery {
    kind: Option<String>,
}

pub async fn new_form(user: PageUser, Query(q): Query<NewQuery>) -> PageResult {
    let kind = q
        .kind
        .filter(|k| KINDS.contains(&k.as_str()))
        .unwrap_or_else(|| "sftp".into());
    let raw = Raw::from_json(defs(&kind), &defaults(&kind));
    let page = form_page(
        &user,
        None,
        String::new(),
        kind,
        &raw,
        &BTreeMap::new(),
        None,
    );
    html(&page)
}

pub async fn edit_form(
    State(state): State<Arc<AppState>>,
    user: PageUser,
    Path(id): Path<i64>,
) -> PageResult {
    let t: TargetView = api::show(State(state), user.0.clone(), Path(id)).await?.0;
    let raw = Raw::from_json(defs(&t.kind), &t.target);
    html(&form_page(
        &user,
        Some(id),
        t.name,
        t.kind,
        &raw,
        &t.secrets,
        None,
    ))
}

/// The form posted: `reload` redraws it for another kind; otherwise the
/// API handler checks and saves it.
async fn submit(
    state: Arc<AppState>,
    user: PageUser,
    id: Option<i64>,
    pairs: Vec<(String, String)>,
) -> PageResult {
    let get = |key: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == key)
            .map_or("", |(_, v)| v.as_str())
    };
    user.0.check_csrf(get("csrf"))?;
    let kind = Some(get("kind"))
        .filter(|k| KINDS.contains(k))
        .unwrap_or("local")
        .to_string();
    let name = get("name").trim().to_string();
    let secrets = match id {
        Some(id) => crate::api::targets::view(&state, id).await?.secrets,
        None => BTreeMap::new(),
    };
    let mut raw = Raw::from_form(defs(&kind), &pairs);
    if !get("reload").is_empty() {
        // Another kind: its defaults, then what was typed.
        let mut fresh = Raw::from_json(defs(&kind), &defaults(&kind));
        // Unticked boxes of the old kind's form say nothing of this one.
        let typed = raw.values.into_iter();
        fresh
            .values
            .extend(typed.filter(|(_, v)| !v.is_empty() && v != "false"));
        return html(&form_page(&user, id, name, kind, &fresh, &secrets, None));
    }
    let result = match raw.to_json(defs(&kind), "target.") {
        Err((field, message)) => Err(ApiError::bad(&field, message)),
        Ok(mut target) => {
            target["kind"] = Value::String(kind.clone());
            save(
                &state,
                &user,
                id,
                TargetInput {
                    name: name.clone(),
                    target,
                },
            )
            .await
        }
    };
    match result {
        Ok(()) => see_other(&format!(
            "/targets?done={}",
            if id.is_some() { "saved" } else { "created" }
        )),
        Err(e) if e.status.is_client_error() && e.status != StatusCode::FORBIDDEN => {
            // Secrets typed are not sent back into the page.
            raw.clear.clear();
            let error = Some((e.field.unwrap_or_default(), e.message));
            let page = form_page(&user, id, name, kind, &raw, &secrets, error);
            html_status(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        Err(e) => Err(e.into()),
    }
}

async fn save(
    state: &Arc<AppState>,
    user: &PageUser,
    id: Option<i64>,
    input: TargetInput,
) -> Result<(), ApiError> {
    let (state, who) = (State(state.clone()), user.0.clone());
    match id {
        None => api::create(state, who, Ok(Json(input))).await.map(|_| ()),
        Some(id) => api::update(state, who, Path(id), Ok(Json(input)))
            .await
            .map(|_| ()),
    }
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    user: PageUser,
    Form(pairs): Form<Vec<(String, String)>>,
) -> PageResult {
    submit(state, user, None, pairs).await
}

pub async fn update(
    State(state): State<Arc<AppState>>,
    user: PageUser,
    Path(id): Path<i64>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> PageResult {
    submit(state, user, Some(id), pairs).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The form has every setting of each kind, and nothing else.
    #[test]
    fn every_setting_of_every_kind_has_a_field() {
        for kind in KINDS {
            let mut names: Vec<String> = defaults(kind)
                .as_object()
                .expect("an object")
                .keys()
                .filter(|k| *k != "kind")
                .cloned()
                .collect();
            let t: dispatch_protocol::Target =
                serde_json::from_value(crate::target_store::with_placeholders(defaults(kind)))
                    .expect("defaults parse");
            names.extend(t.secrets().iter().map(|(f, _)| f.to_string()));
            names.sort();
            let mut drawn: Vec<String> = defs(kind).iter().map(|d| d.path.to_string()).collect();
            drawn.sort();
            assert_eq!(drawn, names, "{kind}");
        }
    }
}
