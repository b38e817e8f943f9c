//! `dispatch-agent` as a user runs it: output formats, one-line errors and
//! exit codes, and the plugin's stderr in the agent's log.
#![allow(clippy::unwrap_used)] // a test helper that fails panics

mod common;
use common::{agent_output as agent, component, one_line_error, tree};
use std::process::Output;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn poll_json_lists_actions_with_paths_relative_to_the_root() {
    let root = tree(&["a/ADI.XML", "a/ADI.DTD", "b/ADI.XML"]);
    let out = agent(&[
        "poll",
        "--plugin",
        "dir",
        "--root",
        root.path().to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        v,
        serde_json::json!([{"action": "transfer", "path": "a", "kind": "dir"}])
    );
}

#[test]
fn poll_json_nests_follow_ups_under_their_group() {
    let root = tree(&["d/ADI.XML", "d/ADI.DTD", "e/dispatch.done"]);
    let out = agent(&[
        "poll",
        "--plugin",
        "google",
        "--root",
        root.path().to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        v,
        serde_json::json!([
            {
                "action": "group",
                "transfers": [
                    {"action": "transfer", "path": "d/ADI.DTD", "kind": "file"},
                    {"action": "transfer", "path": "d/ADI.XML", "kind": "file"}
                ],
                "then": [{"action": "touch", "path": "d/delivery.complete"}]
            },
            {"action": "remove", "path": "e"}
        ])
    );
}

#[test]
fn poll_prints_a_table_by_default() {
    let root = tree(&["x.mpg", "y.mpg"]);
    let out = agent(&[
        "poll",
        "--plugin",
        "file",
        "--root",
        root.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["ACTION", "KIND", "PATH"]
    );
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["transfer", "file", "x.mpg"]
    );
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        ["transfer", "file", "y.mpg"]
    );
    let empty = tree(&[]);
    let out = agent(&[
        "poll",
        "--plugin",
        "file",
        "--root",
        empty.path().to_str().unwrap(),
    ]);
    assert_eq!(stdout(&out), "nothing to do\n");
}

#[test]
fn params_reach_the_plugin() {
    let root = tree(&["D/a.tar", "D/b.zip"]);
    let r = root.path().to_str().unwrap();
    let out = agent(&[
        "poll",
        "--plugin",
        "dirtar",
        "--root",
        r,
        "--param",
        "suffix=.zip",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v[0]["path"], "D/b.zip");
}

#[test]
fn bad_input_gets_one_line_errors() {
    let dir = tree(&["file.txt"]);
    let d = dir.path().to_str().unwrap();
    let missing = format!("{d}/missing");
    let err = one_line_error(&agent(&["poll", "--plugin", "dir", "--root", &missing]));
    assert!(
        err.contains("root") && err.contains("does not exist"),
        "{err}"
    );

    let file = format!("{d}/file.txt");
    let err = one_line_error(&agent(&["poll", "--plugin", "dir", "--root", &file]));
    assert!(err.contains("is not a directory"), "{err}");

    let err = one_line_error(&agent(&["poll", "--plugin", "nope", "--root", d]));
    assert!(err.contains("unknown plugin `nope`"), "{err}");

    let err = one_line_error(&agent(&["poll", "--plugin", &file, "--root", d]));
    assert!(err.contains("is not a WebAssembly file"), "{err}");

    let future = component("test", "future-version");
    let err = one_line_error(&agent(&["describe", "--plugin", future.to_str().unwrap()]));
    assert!(
        err.contains("built for dispatch:poller@0.3.0")
            && err.contains("supports dispatch:poller@0.1.0, @0.2.0"),
        "{err}"
    );

    let err = one_line_error(&agent(&[
        "poll",
        "--plugin",
        "dir",
        "--root",
        d,
        "--param",
        "colour=red",
    ]));
    assert!(err.contains("unknown parameter `colour`"), "{err}");

    let hostile = component("test", "hostile");
    let h = hostile.to_str().unwrap();
    let err = one_line_error(&agent(&[
        "poll",
        "--plugin",
        h,
        "--root",
        d,
        "--param",
        "mode=panic",
    ]));
    assert!(
        err.contains("crashed") && err.contains("panicked on purpose"),
        "{err}"
    );
}

#[test]
fn the_plugins_stderr_goes_to_the_log() {
    let root = tree(&[]);
    let hostile = component("test", "hostile");
    let out = agent(&[
        "poll",
        "--plugin",
        hostile.to_str().unwrap(),
        "--root",
        root.path().to_str().unwrap(),
        "--param",
        "mode=stderr",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let log = stderr(&out);
    assert!(
        log.contains("hello from the plugin's stderr") && log.contains("plugin=hostile"),
        "{log}"
    );
}

/// A plugin cannot forge log records (a newline in a message), write
/// huge ones, or fill the disk through its log.
#[test]
fn a_plugins_log_is_bounded_and_cannot_forge_records() {
    let root = tree(&[]);
    let hostile = component("test", "hostile");
    let out = agent(&[
        "poll",
        "--plugin",
        hostile.to_str().unwrap(),
        "--root",
        root.path().to_str().unwrap(),
        "--param",
        "mode=log-flood",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let log = stderr(&out);
    assert!(log.len() < 512 * 1024, "{} bytes of log", log.len());
    let forged = log.lines().any(|l| l.starts_with("2026-11-30T00:00:00"));
    assert!(!forged, "a record was forged");
    assert!(
        log.lines()
            .any(|l| l.contains("line one\\n2026-11-30T00:00:00.000000Z ERROR")),
        "the message is kept, its newline escaped"
    );
    let huge = log.lines().find(|l| l.contains("xxxx")).unwrap();
    assert!(
        huge.len() < 5000 && huge.contains("more bytes)"),
        "{} bytes",
        huge.len()
    );
    let flood = log.lines().filter(|l| l.contains("flood ")).count();
    assert!(flood < 1000, "{flood} flood records");
    assert!(
        log.contains("more log records dropped (at most 1000 per call)"),
        "the drop is said"
    );
}

#[test]
fn describe_prints_the_schema() {
    let out = agent(&["describe", "--plugin", "dir"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("dir 0.1.0\n"), "{text}");
    assert!(text.contains("contract: dispatch:poller@0.2.0"), "{text}");
    assert!(
        text.contains("markers (text-list, default `ADI.XML,ADI.DTD`)"),
        "{text}"
    );
    let out = agent(&["describe", "--plugin", "dir", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["params"][1]["name"], "include_hidden");
    assert_eq!(v["params"][1]["type"], "boolean");
}

#[test]
fn a_memory_limit_error_is_said_once() {
    let err = one_line_error(&agent(&[
        "describe",
        "--plugin",
        "dir",
        "--memory-limit",
        "1",
    ]));
    assert_eq!(
        err.matches("over its limit of 1048576 bytes").count(),
        1,
        "{err}"
    );
    assert!(err.contains("describe() failed"), "{err}");
}
