//! The web pages in a real headless Chromium (driven over chromedriver):
//! what a person does and sees, asserted on the page. A PNG of each page is
//! saved under `target/screenshots/`.
//!
//! Agents do not report to the web app by themselves yet, so the transfer
//! steps post the agent's events through the real agent API with the token
//! the Agents page showed, as an agent would.
#![allow(clippy::unwrap_used)] // a test helper that fails panics

mod support;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ADMIN_PW: &str = "browser-Pw-1";

fn plugin_file(name: &str) -> PathBuf {
    let dir = std::env::var_os("DISPATCH_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins"));
    let p = dir.join(format!("{name}.wasm"));
    assert!(
        p.exists(),
        "{} is missing: run `cargo xtask test`",
        p.display()
    );
    p
}

fn screenshots() -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// chromedriver and the Chromium it started, killed when the test ends
/// (even by a panic): chromedriver runs in a process group of its own, and
/// the whole group goes, so no browser outlives its test.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        let _ = self.child.wait();
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

async fn browser() -> (Driver, Client) {
    let driver_bin = which("chromedriver").expect(
        "chromedriver is not installed: apt-get install chromium chromium-driver (.ci/run does)",
    );
    let chromium = which("chromium")
        .or_else(|| which("chromium-browser"))
        .expect("chromium is not installed: apt-get install chromium (.ci/run does)");
    // Port 0: chromedriver binds a free port itself and says which, so no
    // other process can take it between a pick and the bind.
    let mut child = Command::new(driver_bin)
        .process_group(0)
        .arg("--port=0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Read to the end, so chromedriver never blocks on a full pipe.
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
            if let Some(port) = line
                .strip_prefix("ChromeDriver was started successfully on port ")
                .and_then(|rest| rest.trim_end_matches('.').parse::<u16>().ok())
            {
                let _ = tx.send(port);
            }
        }
    });
    let port = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("chromedriver did not say its port within 20 s");
    let driver = Driver { child, port };
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1000", "--lang=en-US"],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .unwrap();
    (driver, client)
}

struct App {
    base: String,
    _data: tempfile::TempDir,
    _state: Arc<dispatch_web::AppState>,
}

async fn app() -> App {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let data = tempfile::tempdir().unwrap();
    let state = dispatch_web::AppState::open(dispatch_web::Settings {
        data_dir: data.path().join("data"),
        database_url: support::postgres::test_database().await,
        secret_key: None,
        secret_key_file: None,
        upload_limit: 8 << 20,
        upload_check: std::time::Duration::from_secs(60),
        secure_cookies: false,
    })
    .await
    .unwrap();
    dispatch_web::ensure_admin(&state.db, "admin", Some(ADMIN_PW))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = dispatch_web::router(state.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    App {
        base,
        _data: data,
        _state: state,
    }
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
}

async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Waits (without reloading) until `css` exists and its text contains
/// `needle`; returns the text.
async fn wait_text(c: &Client, css: &str, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(e) = c.find(Locator::Css(css)).await {
            last = e.text().await.unwrap_or_default();
            if last.contains(needle) {
                return last;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("`{css}` never showed `{needle}`; last text: {last:?}");
}

/// Waits until the page's address has `needle` in its query: a submitted
/// GET form has loaded (the old page's text would otherwise still match).
async fn wait_query(c: &Client, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let url = c.current_url().await.unwrap();
        if url.query().is_some_and(|q| q.contains(needle)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never reached a page with `{needle}`: {url}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn fill(c: &Client, css: &str, value: &str) {
    let e = c.find(Locator::Css(css)).await.unwrap();
    e.clear().await.unwrap();
    e.send_keys(value).await.unwrap();
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn login(c: &Client, base: &str) {
    c.goto(&format!("{base}/")).await.unwrap();
    // Not logged in: the login page, which then brings us back.
    assert!(c.current_url().await.unwrap().path().starts_with("/login"));
    fill(c, "#username", "admin").await;
    fill(c, "#password", ADMIN_PW).await;
    shot(c, "login").await;
    click(c, "button[type=submit]").await;
    wait_text(c, "h1", "Dashboard").await;
}

/// Where each chart's axis labels are drawn, per chart: [left, right,
/// top, bottom] in CSS pixels.
async fn label_boxes(c: &Client) -> Vec<Vec<[f64; 4]>> {
    let v = c
        .execute(
            "return Array.from(document.querySelectorAll('svg.chart')).map(function (svg) {
               return Array.from(svg.querySelectorAll('.x-label, .y-label')).map(function (t) {
                 const r = t.getBoundingClientRect(); return [r.left, r.right, r.top, r.bottom]; }); });",
            vec![],
        )
        .await
        .unwrap();
    serde_json::from_value(v).unwrap()
}

/// Two boxes share more than half a pixel each way.
fn overlap(a: &[f64; 4], b: &[f64; 4]) -> bool {
    a[0] < b[1] - 0.5 && b[0] < a[1] - 0.5 && a[2] < b[3] - 0.5 && b[2] < a[3] - 0.5
}

/// Posts agent events through the agent API, as an agent would.
async fn agent_events(base: &str, token: &str, events: Value) {
    let res = reqwest::Client::new()
        .post(format!("{base}/api/v1/agent/events"))
        .bearer_auth(token)
        .json(&json!({ "events": events }))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.text().await.unwrap());
}

fn event(id: &str, transfer: &str, kind: &str, done: i64, extra: Value) -> Value {
    let mut e = json!({
        "id": id, "transfer_id": transfer, "poller": "news", "path": "show/EP101.mxf",
        "event": kind, "size": 1_000_000_000i64, "bytes_done": done, "attempt": 1,
        "at": dispatch_web::now_ms(), "host": "edge1.example",
    });
    if let (Some(e), Some(x)) = (e.as_object_mut(), extra.as_object()) {
        e.extend(x.clone());
    }
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_runs_dispatch_from_the_browser() {
    let app = app().await;
    let (_driver, c) = browser().await;
    let base = app.base.as_str();
    login(&c, base).await;
    shot(&c, "dashboard-empty").await;

    // Plugins: a bad upload is refused with the reason; a good one is listed.
    c.goto(&format!("{base}/plugins")).await.unwrap();
    let bad = tempfile::Builder::new().suffix(".wasm").tempfile().unwrap();
    std::fs::write(bad.path(), b"this is not a component").unwrap();
    c.find(Locator::Css("#file"))
        .await
        .unwrap()
        .send_keys(&bad.path().display().to_string())
        .await
        .unwrap();
    click(&c, "#upload").await;
    let refused = wait_text(&c, "#file-error", "Upload refused").await;
    assert!(
        refused.contains("WebAssembly") || refused.contains("wasm"),
        "{refused}"
    );
    shot(&c, "plugins-upload-refused").await;
    c.find(Locator::Css("#file"))
        .await
        .unwrap()
        .send_keys(&plugin_file("dir").display().to_string())
        .await
        .unwrap();
    click(&c, "#upload").await;
    let ok = wait_text(&c, "#upload-ok", "Stored dir 0.1.0").await;
    assert!(ok.contains("sha256"), "{ok}");
    let row = text(&c, "tr[data-plugin=dir]").await;
    assert!(row.contains("0.1.0"), "{row}");
    shot(&c, "plugins").await;
    click(&c, "tr[data-plugin=dir] a").await;
    wait_text(&c, "h1", "Plugin dir").await;
    let version = text(&c, "section.version").await;
    assert!(version.contains("markers") && version.contains("include_hidden"));
    assert!(version.contains("sha256") && version.contains("by admin"));
    shot(&c, "plugin-detail").await;

    // Agents: the token is shown once.
    c.goto(&format!("{base}/agents")).await.unwrap();
    fill(&c, "#agent-name", "edge1").await;
    click(&c, "#create-agent").await;
    let token = wait_text(&c, "#token", "dsp_").await.trim().to_string();
    shot(&c, "agents-token-once").await;
    c.goto(&format!("{base}/agents")).await.unwrap();
    let page = c.source().await.unwrap();
    assert!(!page.contains(&token), "the token is shown only once");
    // It has not reported yet.
    let row = text(&c, "tr[data-agent=edge1]").await;
    assert!(row.contains("Offline") && row.contains("never"), "{row}");

    // The agent's settings: checked by the protocol's rules; the SMTP
    // password is never shown back.
    click(&c, "tr[data-agent=edge1] a").await;
    click(&c, "#settings").await;
    wait_text(&c, "h1", "Settings of agent edge1").await;
    fill(&c, "#f-rescan_interval", "soon").await;
    click(&c, "#save").await;
    let err = wait_text(&c, "#f-rescan_interval-error", "soon").await;
    assert!(err.contains("not a duration"), "{err}");
    fill(&c, "#f-rescan_interval", "30s").await;
    click(&c, "#smtp_on").await;
    fill(&c, "#f-alerts-smtp-host", "mail.example").await;
    fill(&c, "#f-alerts-smtp-from", "dispatch@example").await;
    fill(&c, "#f-alerts-smtp-to", "ops@example, tv@example").await;
    fill(&c, "#f-alerts-smtp-password", "Mail-Pw-77").await;
    click(&c, "#save").await;
    wait_text(&c, "#notice", "Settings saved").await;
    let to = c.find(Locator::Css("#f-alerts-smtp-to")).await.unwrap();
    assert_eq!(
        to.prop("value").await.unwrap().as_deref(),
        Some("ops@example tv@example")
    );
    let page = c.source().await.unwrap();
    assert!(page.contains("set — leave empty to keep") && !page.contains("Mail-Pw-77"));
    shot(&c, "agent-settings").await;

    // Targets: the form draws every setting of the kind; errors sit beside
    // their field; secrets are never shown back.
    c.goto(&format!("{base}/targets/new")).await.unwrap();
    c.find(Locator::Css("#kind"))
        .await
        .unwrap()
        .select_by_value("s3")
        .await
        .unwrap();
    wait_text(&c, "#target-settings", "bucket").await;
    c.find(Locator::Css("#kind"))
        .await
        .unwrap()
        .select_by_value("aspera")
        .await
        .unwrap();
    wait_text(&c, "#target-settings", "aspera settings").await;
    fill(&c, "#name", "aspera1").await;
    fill(&c, "#f-host", "aspera.example").await;
    fill(&c, "#f-user", "newsroom").await;
    click(&c, "#save").await;
    let err = wait_text(&c, "#f-password-error", "exactly one").await;
    assert!(err.contains("ssh_key"), "{err}");
    assert!(text(&c, "#form-error").await.contains("Not saved"));
    let name = c.find(Locator::Css("#name")).await.unwrap();
    assert_eq!(
        name.prop("value").await.unwrap().as_deref(),
        Some("aspera1")
    );
    shot(&c, "target-form-error").await;
    fill(&c, "#f-password", "S3cret-Word").await;
    click(&c, "#save").await;
    wait_text(&c, "#notice", "Target created").await;
    let row = text(&c, "tr[data-target=aspera1]").await;
    assert!(row.contains("newsroom@aspera.example"), "{row}");
    assert!(!c.source().await.unwrap().contains("S3cret-Word"));
    shot(&c, "targets").await;
    click(&c, "tr[data-target=aspera1] a").await;
    wait_text(&c, "h1", "Edit target aspera1").await;
    let pw = c.find(Locator::Css("#f-password")).await.unwrap();
    assert_eq!(pw.prop("value").await.unwrap().as_deref(), Some(""));
    let page = c.source().await.unwrap();
    assert!(page.contains("set — leave empty to keep") && !page.contains("S3cret-Word"));
    shot(&c, "target-edit").await;

    // Pollers: the plugin's fields come from its schema; errors sit beside
    // their field; the target is chosen from the list.
    c.goto(&format!("{base}/pollers/new")).await.unwrap();
    let params = text(&c, "#plugin-params").await;
    assert!(params.contains("dir settings") && params.contains("markers"));
    assert!(
        c.find(Locator::Css("#param-include_hidden[type=checkbox]"))
            .await
            .is_ok()
    );
    fill(&c, "#name", "news").await;
    fill(&c, "#path", "srv/news").await;
    click(&c, "input[name=agents][value=edge1]").await;
    click(&c, "#save").await;
    let err = wait_text(&c, "#target-error", "required").await;
    assert!(err.contains("target"), "{err}");
    assert!(text(&c, "#form-error").await.contains("Not saved"));
    // What was typed is kept.
    let name = c.find(Locator::Css("#name")).await.unwrap();
    assert_eq!(name.prop("value").await.unwrap().as_deref(), Some("news"));
    shot(&c, "poller-form-error").await;
    c.find(Locator::Css("#target"))
        .await
        .unwrap()
        .select_by_value("aspera1")
        .await
        .unwrap();
    click(&c, "#save").await;
    let err = wait_text(&c, "#path-error", "absolute").await;
    assert!(err.contains("srv/news"), "{err}");
    fill(&c, "#path", "/srv/news").await;
    click(&c, "#save").await;
    wait_text(&c, "#notice", "Poller created").await;
    assert_eq!(text(&c, "#poller-state").await, "Disabled");
    assert!(text(&c, "#poller-target").await.contains("aspera1"));
    // A target in use cannot be deleted.
    c.goto(&format!("{base}/targets")).await.unwrap();
    click(&c, "#delete-aspera1").await;
    let refusal = wait_text(&c, "#page-error", "Cannot delete").await;
    assert!(refusal.contains("news"), "{refusal}");
    c.goto(&format!("{base}/pollers")).await.unwrap();
    click(&c, "tr[data-poller=news] a").await;
    wait_text(&c, "h1", "Poller news").await;
    click(&c, "#enable").await;
    wait_text(&c, "#notice", "Poller enabled").await;
    assert_eq!(text(&c, "#poller-state").await, "Enabled");
    // An enabled poller cannot be deleted.
    click(&c, "#delete").await;
    let refusal = wait_text(&c, "#page-error", "Cannot delete").await;
    assert!(refusal.contains("disable the poller"), "{refusal}");
    shot(&c, "poller-delete-refused").await;
    fill(&c, "#reason", "maintenance window").await;
    click(&c, "#disable").await;
    wait_text(&c, "#notice", "Poller disabled").await;
    assert_eq!(text(&c, "#poller-state").await, "Disabled");
    assert!(c.source().await.unwrap().contains("maintenance window"));
    click(&c, "#edit").await;
    let target = c.find(Locator::Css("#target")).await.unwrap();
    assert_eq!(
        target.prop("value").await.unwrap().as_deref(),
        Some("aspera1")
    );
    assert!(!c.source().await.unwrap().contains("S3cret-Word"));
    shot(&c, "poller-edit").await;
    c.goto(&format!("{base}/pollers")).await.unwrap();
    let row = text(&c, "tr[data-poller=news]").await;
    assert!(row.contains("Disabled") && row.contains("dir") && row.contains("edge1"));
    assert!(row.contains("latest (0.1.0)"), "{row}");
    shot(&c, "pollers").await;
    // Pin it to a version from the plugin's page.
    c.goto(&format!("{base}/plugins/dir")).await.unwrap();
    assert!(text(&c, "section.version").await.contains("Used by\nnews"));
    c.find(Locator::Css("#move-version"))
        .await
        .unwrap()
        .select_by_value("0.1.0")
        .await
        .unwrap();
    click(&c, "#move").await;
    wait_text(&c, "#notice", "news moved").await;
    c.goto(&format!("{base}/pollers")).await.unwrap();
    let row = text(&c, "tr[data-poller=news]").await;
    assert!(row.contains("0.1.0") && !row.contains("latest"), "{row}");

    // A transfer appears on the dashboard with its progress and finishes,
    // without the page being reloaded.
    c.goto(&format!("{base}/")).await.unwrap();
    c.execute("window.stillTheSamePage = true;", vec![])
        .await
        .unwrap();
    agent_events(
        base,
        &token,
        json!([
            event("e1", "t1", "queued", 0, json!({})),
            event("e2", "t1", "started", 0, json!({})),
        ]),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    agent_events(
        base,
        &token,
        json!([event("e3", "t1", "progress", 400_000_000, json!({}))]),
    )
    .await;
    let active = wait_text(&c, "#active-transfers", "EP101.mxf").await;
    assert!(
        active.contains("40%") && active.contains("400 MB of 1.0 GB"),
        "{active}"
    );
    assert!(active.contains("/s"), "a rate is shown: {active}");
    shot(&c, "dashboard-progress").await;
    agent_events(
        base,
        &token,
        json!([event("e4", "t1", "complete", 1_000_000_000, json!({}))]),
    )
    .await;
    let recent = wait_text(&c, "#recent-transfers", "Complete").await;
    assert!(recent.contains("EP101.mxf") && recent.contains("1.0 GB"));
    wait_text(&c, "#no-active", "Nothing is being sent").await;
    let same = c
        .execute("return window.stillTheSamePage === true;", vec![])
        .await
        .unwrap();
    assert_eq!(same, json!(true), "the dashboard was reloaded");
    // Its agent reported, so it shows as online.
    assert!(text(&c, "#agents").await.contains("Online"));
    shot(&c, "dashboard-finished").await;

    // A failed transfer, retried from the Transfers page.
    agent_events(
        base,
        &token,
        json!([event(
            "e5",
            "t2",
            "error",
            10,
            json!({"path": "show/EP102.mxf", "error": "connection reset by peer"})
        )]),
    )
    .await;
    // Search by a piece of the name.
    c.goto(&format!("{base}/transfers")).await.unwrap();
    fill(&c, "#q", "EP10").await;
    click(&c, "#search-form button[type=submit]").await;
    wait_query(&c, "q=EP10").await;
    let results = wait_text(&c, "#results", "EP101.mxf").await;
    assert!(results.contains("EP102.mxf") && results.contains("connection reset"));
    fill(&c, "#q", "P101").await;
    click(&c, "#search-form button[type=submit]").await;
    wait_query(&c, "q=P101").await;
    let results = wait_text(&c, "#results", "EP101.mxf").await;
    assert!(!results.contains("EP102"), "{results}");
    shot(&c, "transfers-search").await;
    // The CSV export of that search, with this browser's session.
    let href = c
        .find(Locator::Css("#csv-link"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    assert!(href.contains("q=P101"), "{href}");
    let cookie = c
        .get_all_cookies()
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.name() == dispatch_web::SESSION_COOKIE)
        .unwrap();
    let csv = reqwest::Client::new()
        .get(format!("{base}{href}"))
        .header("cookie", format!("{}={}", cookie.name(), cookie.value()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("id,agent,poller,path,status"), "{csv}");
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(lines[1].contains("show/EP101.mxf") && lines[1].contains("Complete"));
    // Retry the failed one.
    c.goto(&format!("{base}/transfers?status=Error"))
        .await
        .unwrap();
    let row = text(&c, "#results").await;
    assert!(row.contains("EP102.mxf") && row.contains("Retry now"));
    click(&c, "#results button[type=submit]").await;
    wait_text(&c, "#results", "retry requested").await;
    // The agent hears of it in its next heartbeat's answer.
    let reply: Value = reqwest::Client::new()
        .post(format!("{base}/api/v1/agent/heartbeat"))
        .bearer_auth(&token)
        .json(&json!({"version": "0.1.0", "host_name": "h"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let retry = &reply["commands"][0];
    assert_eq!(
        (retry["kind"].clone(), retry["transfer_id"].clone()),
        (json!("retry"), json!("t2")),
        "{reply}"
    );
    shot(&c, "transfers-retry").await;

    // Statistics over the range.
    c.goto(&format!("{base}/stats?last=24h")).await.unwrap();
    let totals = text(&c, "#totals").await;
    assert!(totals.contains("2\ntransfers") && totals.contains("1\ncomplete"));
    assert!(totals.contains("1\nerrors") && totals.contains("1.0 GB"));
    let per = text(&c, "#per-poller").await;
    assert!(per.contains("news"), "{per}");
    assert!(c.source().await.unwrap().contains("<svg class=\"chart\""));

    // 34 more pollers (the old system's count), their bytes spread over
    // the day: the time axis (25 hourly buckets) and the per-poller chart
    // stay legible, at a desktop's width and a phone's.
    let now = dispatch_web::now_ms();
    let many: Vec<Value> = (0..34i64)
        .map(|i| {
            let n = (i * 7919) % 34; // not in name order
            event(
                &format!("m{i}"),
                &format!("tm{i}"),
                "complete",
                (n + 1) * 10_000_000,
                json!({"poller": format!("poller-{i:02}"), "path": format!("f{i}.mxf"),
                       "size": (n + 1) * 10_000_000, "at": now - i * 2_400_000}),
            )
        })
        .collect();
    agent_events(base, &token, json!(many)).await;
    for (width, height) in [(1280, 1000), (390, 844)] {
        c.set_window_size(width, height).await.unwrap();
        c.goto(&format!("{base}/stats?last=24h")).await.unwrap();
        let charts = label_boxes(&c).await;
        assert_eq!(charts.len(), 3, "three charts");
        let time_labels = &charts[0];
        assert!(
            (6..=25).contains(&time_labels.len()),
            "{width} px: {} time labels",
            time_labels.len()
        );
        for (k, boxes) in charts.iter().enumerate() {
            for (i, a) in boxes.iter().enumerate() {
                for b in &boxes[i + 1..] {
                    assert!(
                        !overlap(a, b),
                        "{width} px: chart {k}: labels overlap: {a:?} and {b:?}"
                    );
                }
            }
        }
        // Per poller: one row each, largest first.
        let rows = c
            .execute(
                "return Array.from(document.querySelectorAll('svg.hbars g.row')).map(function (g) {
                   return [Number(g.dataset.value), g.querySelector('rect').getBoundingClientRect().width,
                           g.querySelector('title').textContent]; });",
                vec![],
            )
            .await
            .unwrap();
        let rows: Vec<(f64, f64, String)> = serde_json::from_value(rows).unwrap();
        assert_eq!(rows.len(), 35, "{width} px: 34 pollers and news: {rows:?}");
        assert!(
            rows.windows(2)
                .all(|w| w[0].0 >= w[1].0 && w[0].1 >= w[1].1 - 0.5),
            "{width} px: per-poller bars not sorted by value: {rows:?}"
        );
        assert!(rows[0].2.starts_with("news:"), "{rows:?}");
        assert!(rows[1].2.starts_with("poller-"), "{rows:?}");
    }
    c.set_window_size(1280, 1000).await.unwrap();
    shot(&c, "stats").await;

    // On a phone: the same dashboard, nothing cut off sideways.
    c.set_window_size(390, 844).await.unwrap();
    c.goto(&format!("{base}/")).await.unwrap();
    let overflow = c
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth + 1;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        overflow,
        json!(true),
        "the dashboard scrolls sideways on a phone"
    );
    shot(&c, "dashboard-phone").await;
    c.set_window_size(1280, 1000).await.unwrap();

    // Logging out ends the session.
    click(&c, "form.logout button").await;
    wait_text(&c, "h1", "Dispatch").await;
    c.goto(&format!("{base}/pollers")).await.unwrap();
    assert!(c.current_url().await.unwrap().path().starts_with("/login"));
    c.close().await.unwrap();
}

/// The agent binary, built beside this test by the workspace build.
fn agent_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/browser-<hash> -> target/<profile>/dispatch-agent
    let bin = exe
        .parent()
        .and_then(|d| d.parent())
        .unwrap()
        .join("dispatch-agent");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo xtask test` (it builds the whole workspace)",
        bin.display()
    );
    bin
}

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real agent, reporting to the web app with the token the Agents page
/// showed: the dashboard shows its transfer moving and then finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_agents_transfer_shows_live_on_the_dashboard() {
    let app = app().await;
    let (_driver, c) = browser().await;
    let base = app.base.as_str();
    login(&c, base).await;
    c.goto(&format!("{base}/agents")).await.unwrap();
    fill(&c, "#agent-name", "edge2").await;
    click(&c, "#create-agent").await;
    let token = wait_text(&c, "#token", "dsp_").await.trim().to_string();

    let site = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(site.path().join("src")).unwrap();
    let data: Vec<u8> = (0..24_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(site.path().join("src/EP200.mxf"), &data).unwrap();
    std::fs::write(site.path().join("token"), format!("{token}\n")).unwrap();
    // A second poller whose destination cannot be made (`blocked` is a file):
    // its transfer fails and would wait 10 minutes for the next try.
    std::fs::create_dir_all(site.path().join("src2")).unwrap();
    std::fs::write(site.path().join("src2/EP300.mxf"), b"retry me").unwrap();
    std::fs::write(site.path().join("blocked"), b"in the way").unwrap();
    std::fs::write(
        site.path().join("agent.toml"),
        format!(
            "[agent]\nhost_name = \"edge2.example\"\njournal = \"journal.sqlite\"\ncache_dir = \"cache\"\n\
             [agent.retry]\ninitial = \"10m\"\nmax = \"10m\"\n\n\
             [report]\nurl = \"{base}\"\ntoken_file = \"token\"\ninterval = \"200ms\"\nheartbeat = \"1s\"\n\n\
             [[poller]]\nname = \"news\"\npath = \"src\"\nplugin = \"file\"\nstability = \"0s\"\n\
             target = {{ kind = \"local\", destination = \"out\", rate_limit_mbps = 40 }}\n\n\
             [[poller]]\nname = \"broken\"\npath = \"no-such-dir\"\nplugin = \"file\"\n\
             target = {{ kind = \"local\", destination = \"out-broken\" }}\n\n\
             [[poller]]\nname = \"blocked\"\npath = \"src2\"\nplugin = \"file\"\nstability = \"0s\"\n\
             target = {{ kind = \"local\", destination = \"blocked/out\" }}\n"
        ),
    )
    .unwrap();
    c.goto(&format!("{base}/")).await.unwrap();
    c.execute("window.stillTheSamePage = true;", vec![])
        .await
        .unwrap();
    let mut cmd = Command::new(agent_bin());
    cmd.arg("run")
        .arg("--config")
        .arg(site.path().join("agent.toml"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(site.path().join("agent.log")).unwrap());
    if let Some(dir) = std::env::var_os("DISPATCH_PLUGIN_DIR") {
        cmd.env("DISPATCH_PLUGIN_DIR", dir);
    } else {
        cmd.env(
            "DISPATCH_PLUGIN_DIR",
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins"),
        );
    }
    let _agent = Agent(cmd.spawn().unwrap());
    // 24 MB at 40 Mbps: about 5 s, long enough to be seen moving.
    let active = wait_text(&c, "#active-transfers", "EP200.mxf").await;
    assert!(
        active.contains("edge2") && active.contains("of 24.0 MB"),
        "{active}"
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        let bar = c
            .find(Locator::Css("#active-transfers [role=progressbar]"))
            .await;
        if let Ok(bar) = bar
            && let Ok(Some(v)) = bar.attr("aria-valuenow").await
        {
            let v: u32 = v.parse().unwrap();
            if seen.last() != Some(&v) {
                seen.push(v);
            }
            if v > 0 && v < 100 && seen.len() >= 2 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        seen.iter().any(|v| *v > 0 && *v < 100) && seen.len() >= 2,
        "the progress bar did not move: {seen:?}"
    );
    shot(&c, "dashboard-real-agent-progress").await;
    let recent = wait_text(&c, "#recent-transfers", "Complete").await;
    assert!(
        recent.contains("EP200.mxf") && recent.contains("24.0 MB"),
        "{recent}"
    );
    assert_eq!(
        std::fs::read(site.path().join("out/EP200.mxf")).unwrap(),
        data
    );
    assert!(!site.path().join("src/EP200.mxf").exists());
    // A poller the agent runs from its own file, failing: its heartbeat says so.
    let problems = wait_text(&c, "#problems", "broken").await;
    assert!(
        problems.contains("Failing") && problems.contains("on edge2"),
        "{problems}"
    );
    // The heartbeat's host name and version reach the Agents page.
    let agents = wait_text(&c, "#agents", "Online").await;
    assert!(agents.contains("edge2"), "{agents}");
    let same = c
        .execute("return window.stillTheSamePage === true;", vec![])
        .await
        .unwrap();
    assert_eq!(same, json!(true), "the dashboard was reloaded");
    c.goto(&format!("{base}/agents")).await.unwrap();
    let row = text(&c, "tr[data-agent=edge2]").await;
    assert!(
        row.contains("edge2.example") && row.contains(env!("CARGO_PKG_VERSION")),
        "{row}"
    );
    // The failed one, retried from the Transfers page once the way is clear.
    c.goto(&format!("{base}/transfers?q=EP300")).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !c.source().await.unwrap().contains("Retry now") {
        assert!(Instant::now() < deadline, "EP300 never failed");
        tokio::time::sleep(Duration::from_millis(500)).await;
        c.goto(&format!("{base}/transfers?q=EP300")).await.unwrap();
    }
    let row = text(&c, "#results").await;
    assert!(row.contains("Error"), "{row}");
    std::fs::remove_file(site.path().join("blocked")).unwrap();
    click(&c, "#results button[type=submit]").await;
    wait_text(&c, "#results", "retry requested").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        c.goto(&format!("{base}/transfers?q=EP300")).await.unwrap();
        let row = text(&c, "#results").await;
        if row.contains("Complete") {
            // Two attempts: the failed one and the one asked for.
            assert!(row.contains("EP300.mxf"), "{row}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the retry did not happen: {row}\nagent log:\n{}",
            std::fs::read_to_string(site.path().join("agent.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        std::fs::read(site.path().join("blocked/out/EP300.mxf")).unwrap(),
        b"retry me"
    );
    shot(&c, "transfers-retried-by-agent").await;
    // The agent's log never shows its token.
    let log = std::fs::read_to_string(site.path().join("agent.log")).unwrap();
    assert!(log.contains("reporting transfers to the web app"), "{log}");
    assert!(!log.contains(&token));
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_pages_and_stale_forms_get_a_clear_page() {
    let app = app().await;
    let (_driver, c) = browser().await;
    let base = app.base.as_str();
    login(&c, base).await;
    // Pages cannot be framed and load nothing from elsewhere.
    let res = reqwest::get(format!("{base}/login")).await.unwrap();
    assert_eq!(res.headers()["x-frame-options"], "DENY");
    let csp = res.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"));
    c.goto(&format!("{base}/no/such/page")).await.unwrap();
    assert!(text(&c, "h1").await.contains("404"));
    assert!(text(&c, "#error-message").await.contains("/no/such/page"));
    shot(&c, "not-found").await;
    // A form whose CSRF token is wrong is refused, and says what to do.
    c.goto(&format!("{base}/agents")).await.unwrap();
    c.execute(
        "document.querySelector('#agent-form input[name=csrf]').value = 'forged';",
        vec![],
    )
    .await
    .unwrap();
    fill(&c, "#agent-name", "sneaky").await;
    click(&c, "#create-agent").await;
    let msg = wait_text(&c, "#error-message", "CSRF").await;
    assert!(msg.contains("reload the page"), "{msg}");
    shot(&c, "error-csrf").await;
    c.goto(&format!("{base}/agents")).await.unwrap();
    assert!(!c.source().await.unwrap().contains("sneaky"));
    // A bad search field names itself.
    c.goto(&format!("{base}/transfers?from=yesterday"))
        .await
        .unwrap();
    assert!(text(&c, "#error-message").await.contains("from"));
    c.close().await.unwrap();
}

/// The whole path a person takes, with a real connected agent: a target
/// and a poller made in the pages, the agent started with its token, a
/// folder dropped into the poller's directory, the transfer on the
/// dashboard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poller_made_in_the_pages_runs_on_a_connected_agent() {
    let app = app().await;
    let (_driver, c) = browser().await;
    let base = app.base.as_str();
    login(&c, base).await;
    c.goto(&format!("{base}/plugins")).await.unwrap();
    c.find(Locator::Css("#file"))
        .await
        .unwrap()
        .send_keys(&plugin_file("dir").display().to_string())
        .await
        .unwrap();
    click(&c, "#upload").await;
    wait_text(&c, "#upload-ok", "Stored dir").await;
    c.goto(&format!("{base}/agents")).await.unwrap();
    fill(&c, "#agent-name", "edge3").await;
    click(&c, "#create-agent").await;
    let token = wait_text(&c, "#token", "dsp_").await.trim().to_string();

    let site = tempfile::tempdir().unwrap();
    let (src, out) = (site.path().join("src"), site.path().join("out"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    c.goto(&format!("{base}/targets/new")).await.unwrap();
    c.find(Locator::Css("#kind"))
        .await
        .unwrap()
        .select_by_value("local")
        .await
        .unwrap();
    wait_text(&c, "#target-settings", "Destination directory").await;
    fill(&c, "#name", "affiliate").await;
    fill(&c, "#f-destination", &out.display().to_string()).await;
    click(&c, "#save").await;
    wait_text(&c, "#notice", "Target created").await;

    c.goto(&format!("{base}/pollers/new")).await.unwrap();
    wait_text(&c, "#plugin-params", "markers").await;
    fill(&c, "#name", "newsroom").await;
    fill(&c, "#path", &src.display().to_string()).await;
    fill(&c, "#param-markers", "READY").await;
    fill(&c, "#stability_secs", "0.2").await;
    c.find(Locator::Css("#target"))
        .await
        .unwrap()
        .select_by_value("affiliate")
        .await
        .unwrap();
    click(&c, "input[name=agents][value=edge3]").await;
    click(&c, "#save").await;
    wait_text(&c, "#notice", "Poller created").await;
    click(&c, "#enable").await;
    wait_text(&c, "#notice", "Poller enabled").await;

    std::fs::write(site.path().join("token"), &token).unwrap();
    let mut cmd = Command::new(agent_bin());
    cmd.args(["run", "--server", base, "--token-file"])
        .arg(site.path().join("token"))
        .arg("--state-dir")
        .arg(site.path().join("state"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(site.path().join("agent.log")).unwrap())
        .env(
            "DISPATCH_PLUGIN_DIR",
            std::env::var_os("DISPATCH_PLUGIN_DIR").unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("../target/plugins")
                    .into_os_string()
            }),
        );
    let _agent = Agent(cmd.spawn().unwrap());
    c.goto(&format!("{base}/")).await.unwrap();
    std::fs::create_dir_all(src.join("EP400")).unwrap();
    std::fs::write(src.join("EP400/EP400.mxf"), b"programme").unwrap();
    std::fs::write(src.join("EP400/READY"), b"").unwrap();
    let recent = wait_text(&c, "#recent-transfers", "EP400").await;
    assert!(
        recent.contains("Complete") && recent.contains("newsroom"),
        "{recent}"
    );
    assert_eq!(
        std::fs::read(out.join("EP400/EP400.mxf")).unwrap(),
        b"programme"
    );
    assert!(!src.join("EP400").exists());
    shot(&c, "dashboard-connected-agent").await;
}
