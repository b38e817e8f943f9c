//! Logins under abuse: failures back off, unknown names cost what known ones
//! do, and a burst of wrong passwords leaves the agents' API answering.
#![allow(clippy::unwrap_used)] // a test that fails panics

mod support;

use reqwest::StatusCode;
use serde_json::json;
use std::time::{Duration, Instant};
use support::Site;

async fn login(site: &Site, user: &str, password: &str) -> (StatusCode, Duration) {
    let t = Instant::now();
    let res = site
        .http
        .post(format!("{}/api/v1/login", site.base()))
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap();
    (res.status(), t.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_wrong_logins_backs_off_and_leaves_the_agent_api_answering() {
    let site = Site::start().await;
    let token = std::fs::read_to_string(site.agent_token("edge").await).unwrap();
    let config = format!("{}/api/v1/agent/config", site.base());
    // The agent API's latency while 50 wrong logins arrive at once.
    let (done_tx, mut done_rx) = tokio::sync::watch::channel(false);
    let probe = {
        let (http, config) = (site.http.clone(), config.clone());
        tokio::spawn(async move {
            let mut worst = Duration::ZERO;
            let mut calls = 0;
            while !*done_rx.borrow_and_update() || calls < 5 {
                let t = Instant::now();
                let res = http.get(&config).bearer_auth(&token).send().await.unwrap();
                assert_eq!(res.status(), StatusCode::OK);
                let _ = res.bytes().await;
                worst = worst.max(t.elapsed());
                calls += 1;
            }
            (worst, calls)
        })
    };
    let burst: Vec<_> = (0..50)
        .map(|i| {
            let user = if i % 2 == 0 {
                "admin".to_string()
            } else {
                format!("nobody{i}")
            };
            let (http, base) = (site.http.clone(), site.base());
            tokio::spawn(async move {
                http.post(format!("{base}/api/v1/login"))
                    .json(&json!({"username": user, "password": "wrong"}))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for b in burst {
        statuses.push(b.await.unwrap());
    }
    done_tx.send(true).unwrap();
    let (worst, calls) = probe.await.unwrap();
    assert!(
        worst < Duration::from_millis(100),
        "the agent API took {worst:?} at worst ({calls} calls) during the burst"
    );
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::UNAUTHORIZED || *s == StatusCode::TOO_MANY_REQUESTS)
    );
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "no backoff: {statuses:?}"
    );
    // While the account waits, even its right password is refused.
    let (status, _) = login(&site, "admin", support::ADMIN_PW).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_name_costs_what_a_wrong_password_does() {
    let site = Site::start().await;
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    // Eight of each, alternating, so a neighbour's burst of work slows both
    // alike, and the fastest of each is compared. 16 failures stay under the
    // address's free allowance (20); the account's (3) is reset by a right
    // password every second failure.
    for i in 0..8 {
        let (s, t) = login(&site, "admin", "wrong").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        known.push(t);
        let (s, t) = login(&site, &format!("nobody{i}"), "wrong").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        unknown.push(t);
        if i % 2 == 1 {
            let (s, _) = login(&site, "admin", support::ADMIN_PW).await;
            assert_eq!(s, StatusCode::OK);
        }
    }
    let (k, u) = (known.iter().min().unwrap(), unknown.iter().min().unwrap());
    let ratio = u.as_secs_f64() / k.as_secs_f64();
    assert!(
        (0.5..2.0).contains(&ratio),
        "unknown name {u:?}, known name with a wrong password {k:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_form_refuses_a_post_from_another_site() {
    let site = Site::start().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = site.base();
    let host = base.trim_start_matches("http://").to_string();
    let post = |headers: Vec<(&'static str, String)>| {
        // The admin's password is plain letters, digits and dashes: no
        // escaping needed in the form body.
        let mut req = http
            .post(format!("{base}/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "username=admin&password={}&next=%2Fpollers",
                support::ADMIN_PW
            ));
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send()
    };
    for refused in [
        vec![("origin", "http://evil.example".to_string())],
        vec![("origin", "null".to_string())],
        vec![("origin", format!("http://{host}.evil.example"))],
        vec![("sec-fetch-site", "cross-site".to_string())],
        vec![
            ("origin", format!("http://{host}")),
            ("sec-fetch-site", "same-site".to_string()),
        ],
    ] {
        let res = post(refused.clone()).await.unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{refused:?}");
        assert!(res.headers().get("set-cookie").is_none(), "{refused:?}");
        assert!(res.text().await.unwrap().contains("sent from another site"));
    }
    // This site's own form, and a client that is no browser, log in.
    for allowed in [
        vec![
            ("origin", format!("http://{host}")),
            ("sec-fetch-site", "same-origin".to_string()),
        ],
        vec![],
    ] {
        let res = post(allowed.clone()).await.unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{allowed:?}");
        assert_eq!(res.headers()["location"], "/pollers");
        assert!(res.headers().get("set-cookie").is_some(), "{allowed:?}");
    }
}
