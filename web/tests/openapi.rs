//! The API's published contract: `/api/openapi.json`, as a real server
//! serves it, is valid OpenAPI 3.1 (`openapi-spec-validator`), and the
//! server agrees with it (`schemathesis`, every check, property-based
//! requests with a logged-in session and an agent token). Any disagreement
//! fails the test, with schemathesis's report (each failure with a `curl`
//! line that reproduces it).
#![allow(clippy::unwrap_used)] // a test that fails panics

mod support;

use std::path::Path;
use std::process::{Command, Output};
use support::{Site, venv_bin};

/// Examples per operation and phase: enough to find the disagreements
/// found so far (undocumented statuses, unstated constraints, plain-text
/// errors) while the whole test stays within about two minutes on 2 cores.
const MAX_EXAMPLES: &str = "15";
/// The same requests on every run, so a failure reproduces.
const SEED: &str = "20261130";

/// Schemathesis's settings: the credentials (by the document's security
/// scheme names, so its `ignored_auth` check knows what to remove), and
/// the one narrow allowance below.
const CONFIG: &str = r#"
[auth.openapi.session]
api_key = "${DISPATCH_SESSION}"

[auth.openapi.agent_token]
bearer = "${DISPATCH_AGENT_TOKEN}"

# `positive_data_acceptance` wants every request the schema allows to
# succeed. These operations also refuse (422, naming the field) what JSON
# Schema cannot state: a target, plugin or agent that must exist; a plugin's
# own parameter schema; a module that must be a wasm component; rules
# across fields (a password or a key, `retry.initial` at most `retry.max`);
# globs that must parse. Each rule is in the document's descriptions.
# The agents' batches: an event's kind must be one of EVENT_KINDS, and
# JSON Schema's `integer` admits `3.0`, which serde's integers refuse (a
# known gap, left for the protocol's types: see the report of issue 13).
[[operations]]
include-operation-id-regex = "^(create_poller|update_poller|create_target|update_target|update_agent_settings|upload_plugin|agent_events|agent_heartbeat|create_user|update_user|delete_user)$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422"]

# A password change needs the current password, which generated data does
# not know (401), and repeated failures back off (429), as for logins.
[[operations]]
include-operation-id = "change_password"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "422", "429"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_published_contract_is_valid_and_true() {
    let site = Site::start().await;
    let token_file = site.agent_token("contract").await;
    let token = std::fs::read_to_string(&token_file).unwrap();
    let session = site
        .cookie()
        .strip_prefix(&format!("{}=", dispatch_web::SESSION_COOKIE))
        .unwrap()
        .to_string();
    let doc_url = format!("{}/api/openapi.json", site.base());

    let doc = site.path("openapi.json");
    let body = site.http.get(&doc_url).send().await.unwrap();
    assert!(
        body.status().is_success(),
        "GET {doc_url}: {}",
        body.status()
    );
    std::fs::write(&doc, body.bytes().await.unwrap()).unwrap();
    let out = Command::new(venv_bin("openapi-spec-validator"))
        .args(["--validation-errors", "all"])
        .arg(&doc)
        .output()
        .unwrap();
    assert_ok("openapi-spec-validator", &out);

    let config = site.path("schemathesis.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let csrf = format!("X-CSRF-Token: {}", site.csrf());
    // Three runs, in this order, since some operations end what others
    // need: people's operations may delete the agent whose token the
    // agent operations use, and the last ones may end the session itself
    // (log out, a new password, the admin's role or account changed).
    const ENDS_SESSION: &str =
        "^(logout|logout_everywhere|change_password|update_user|delete_user)$";
    let runs: [(&str, &[&str]); 3] = [
        ("the agents' operations", &["--include-tag", "agent"]),
        (
            "people's operations",
            &[
                "--exclude-tag",
                "agent",
                "--exclude-operation-id-regex",
                ENDS_SESSION,
                "-H",
                &csrf,
            ],
        ),
        (
            "the operations that may end the session",
            &["--include-operation-id-regex", ENDS_SESSION, "-H", &csrf],
        ),
    ];
    for (what, filter) in runs {
        let run = || {
            Command::new(venv_bin("st"))
                .current_dir(site.dir.path())
                .env("DISPATCH_SESSION", &session)
                .env("DISPATCH_AGENT_TOKEN", token.trim())
                .arg("--config-file")
                .arg(&config)
                .args(["run", &doc_url, "--checks", "all"])
                .args(["--max-examples", MAX_EXAMPLES, "--seed", SEED])
                .args(["--generation-database", "none", "--no-color"])
                .args(["--workers", "2"])
                .args(filter)
                .output()
                .unwrap()
        };
        let mut out = run();
        // schemathesis 4.32's coverage phase sometimes fails inside its own
        // generator (a hypothesis "Inconsistent results" for the targets'
        // body schema): an error of the tool, reported as `Runtime Error`
        // with no failed check. Only that is run again, twice at most; any
        // disagreement with the server fails at once.
        for _ in 0..2 {
            if out.status.success() || !only_tool_errors(&out) {
                break;
            }
            println!("schemathesis on {what}: an internal error of schemathesis, run again");
            out = run();
        }
        assert_ok(&format!("schemathesis on {what}"), &out);
    }
    check_log(&site.path("web.log"));
}

/// A failed run whose only problems are schemathesis's own errors: no
/// check failed against the server.
fn only_tool_errors(out: &Output) -> bool {
    let text = String::from_utf8_lossy(&out.stdout);
    text.contains("Runtime Error") && !text.contains("FAILURES")
}

fn assert_ok(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} found disagreements ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The server logged no panic while it was probed.
fn check_log(log: &Path) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    assert!(!text.contains("panicked"), "the web app panicked:\n{text}");
}
