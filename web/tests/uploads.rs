//! Checking an uploaded module cannot take the server: one upload is
//! compiled at a time, on one thread, within a time limit.
#![allow(clippy::unwrap_used)] // a test that fails panics

mod support;

use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;
use support::{Site, test_plugin, wait_until};

async fn upload(site: &Site, bytes: Vec<u8>) -> (StatusCode, Value) {
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(bytes).file_name("p.wasm"),
    );
    let res = site
        .http
        .post(format!("{}/api/v1/plugins", site.base()))
        .header("cookie", site.cookie())
        .header("x-csrf-token", site.csrf())
        .multipart(form)
        .send()
        .await
        .unwrap();
    (res.status(), res.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_too_slow_to_check_is_refused_and_holds_the_one_slot_until_done() {
    let site = Site::start_with(|_| vec!["--upload-check-secs".into(), "1".into()]).await;
    // CPython in a component: seconds of compiling on one thread.
    let python = test_plugin("manifest-python");
    let sha = dispatch_runtime::cache::sha256_hex(&python);
    let (status, body) = upload(&site, python).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("took longer than 1 s: refused"),
        "{body}"
    );
    // Its compile goes on, holding the one slot: the next upload waits
    // for it (up to the limit), then hears the server is busy.
    let small = test_plugin("stamp-v1");
    let (status, body) = upload(&site, small.clone()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("another upload"),
        "{body}"
    );
    // Once it is done, uploads are checked again, and the refused one left
    // no compiled artifact behind.
    wait_until(
        "the slot is free again",
        Duration::from_secs(300),
        async || upload(&site, small.clone()).await.0 == StatusCode::CREATED,
    )
    .await;
    let compiled: Vec<String> = std::fs::read_dir(site.path("web/compiled"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !compiled.iter().any(|n| n.starts_with(&sha)),
        "{compiled:?}"
    );
}
