//! The contract is not Rust-only: the Dir poller written in Python
//! (testing/python/dir_poller.py, built with componentize-py) runs through
//! the same runtime and gives the same actions as the Rust one.
#![allow(clippy::unwrap_used)] // a test helper that fails panics

mod common;
use common::{builtin, component, poll, runtime, tree};

#[test]
fn python_dir_poller_matches_its_rust_twin() {
    let python = runtime()
        .load_file(&component("test", "python-dir"))
        .unwrap();
    let rust = builtin("dir");
    assert_eq!(python.info().name, "dir-py");
    let root = tree(&[
        "ready/ADI.XML",
        "ready/ADI.DTD",
        "half/ADI.XML",
        "empty/",
        ".hidden/ADI.XML",
        ".hidden/ADI.DTD",
        "other/READY",
        "top.mpg",
    ]);
    for params in [
        vec![],
        vec![("include_hidden", "true")],
        vec![("markers", "READY")],
        vec![("markers", "ADI.XML")],
    ] {
        let want = poll(&rust, root.path(), &params);
        assert_eq!(
            poll(&python, root.path(), &params),
            want,
            "params {params:?}"
        );
    }
    assert_eq!(poll(&python, root.path(), &[]), ["dir ready"]);
}
