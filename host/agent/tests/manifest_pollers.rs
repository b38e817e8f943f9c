//! The `manifest` poller of each author template (sdk/templates: Rust,
//! Python, JavaScript; built by `cargo xtask test` with each language's own
//! tool) through the same runtime on the same tree: the same description,
//! the same actions, the same reasons for what is not ready.
#![allow(clippy::unwrap_used)] // a test helper that fails panics

mod common;
use common::{component, params, runtime, show};
use std::collections::BTreeMap;
use std::path::Path;

const LANGUAGES: &[&str] = &["rust", "python", "js"];

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

fn manifest(files: &[(&str, u64)]) -> String {
    let items: Vec<String> = files
        .iter()
        .map(|(n, s)| format!("{{\"name\": {n:?}, \"size\": {s}}}"))
        .collect();
    format!("{{\"files\": [{}]}}", items.join(", "))
}

/// Every case of the manifest rules, and the reason each folder that is
/// not ready must give (`None`: ready). A reason ending in `: ` is a prefix
/// (the parser's own words differ by language).
fn fixture(root: &Path, outside: &Path) -> BTreeMap<&'static str, Option<&'static str>> {
    let m = |dir: &str, files: &[(&str, u64)]| {
        write(
            root,
            &format!("{dir}/manifest.json"),
            manifest(files).as_bytes(),
        );
    };
    m("a_ready", &[("video.ts", 5), ("ADI.XML", 3)]);
    write(root, "a_ready/video.ts", b"12345");
    write(root, "a_ready/ADI.XML", b"xml");
    write(root, "a_ready/extra.txt", b"not listed, sent along");
    m("b_nested", &[("sub/part.bin", 2)]);
    write(root, "b_nested/sub/part.bin", b"ab");
    m("c_empty_list", &[]);
    m("d_missing", &[("video.ts", 1), ("ADI.XML", 1)]);
    write(root, "d_missing/video.ts", b"1");
    m("e_size", &[("video.ts", 5)]);
    write(root, "e_size/video.ts", b"1234");
    write(root, "f_bad_json/manifest.json", b"{\"files\": [");
    write(root, "g_no_manifest/video.ts", b"1");
    m(".h_hidden", &[]);
    m("i_dotdot", &[("../a_ready/video.ts", 5)]);
    m("j_absolute", &[("/etc/passwd", 1)]);
    write(root, "k_not_object/manifest.json", b"[1, 2]");
    write(
        root,
        "l_bad_size/manifest.json",
        b"{\"files\": [{\"name\": \"a\", \"size\": -1}]}",
    );
    m("p_not_file", &[("video.ts", 0)]);
    std::fs::create_dir_all(root.join("p_not_file/video.ts")).unwrap();
    std::fs::create_dir_all(root.join("q_manifest_dir/manifest.json")).unwrap();
    write(root, "u_big/manifest.json", &vec![b' '; (1 << 20) + 1]);
    std::fs::create_dir_all(root.join("z_link_out")).unwrap();
    write(outside, "manifest.json", manifest(&[]).as_bytes());
    std::os::unix::fs::symlink(
        outside.join("manifest.json"),
        root.join("z_link_out/manifest.json"),
    )
    .unwrap();
    write(root, "top.txt", b"a file at the root is not a folder");
    BTreeMap::from([
        ("a_ready", None),
        ("b_nested", None),
        ("c_empty_list", None),
        ("d_missing", Some("missing ADI.XML")),
        ("e_size", Some("video.ts is 4 bytes, the manifest says 5")),
        ("f_bad_json", Some("manifest.json is not valid: ")),
        ("g_no_manifest", Some("no manifest.json")),
        ("i_dotdot", Some("manifest.json is not valid: ")),
        ("j_absolute", Some("manifest.json is not valid: ")),
        ("k_not_object", Some("manifest.json is not valid: ")),
        ("l_bad_size", Some("manifest.json is not valid: ")),
        ("p_not_file", Some("video.ts is not a file")),
        (
            "q_manifest_dir",
            Some("cannot read `q_manifest_dir/manifest.json`: it is a directory"),
        ),
        (
            "u_big",
            Some(
                "cannot read `u_big/manifest.json`: it is 1048577 bytes, over the bound of 1048576 bytes",
            ),
        ),
        (
            "z_link_out",
            Some("path `z_link_out/manifest.json` leads outside the root through a symlink"),
        ),
    ])
}

#[test]
fn the_three_templates_behave_alike() {
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let want = fixture(root.path(), outside.path());
    let ready: Vec<String> = want
        .iter()
        .filter(|(_, why)| why.is_none())
        .map(|(dir, _)| format!("dir {dir}"))
        .collect();
    let mut descriptions = Vec::new();
    for lang in LANGUAGES {
        let plugin = runtime()
            .load_file(&component("test", &format!("manifest-{lang}")))
            .unwrap_or_else(|e| panic!("{lang}: {e}"));
        assert_eq!(plugin.wit_version(), "0.2.0", "{lang}");
        descriptions.push(format!("{:?}", plugin.info()));

        let polled = plugin.poll_full(root.path(), &[]).unwrap();
        let actions: Vec<String> = polled.actions.iter().map(show).collect();
        assert_eq!(actions, ready, "{lang}");
        let said: BTreeMap<String, String> = polled
            .not_ready
            .iter()
            .map(|n| (n.item.clone(), n.reason.clone()))
            .collect();
        let expected: Vec<&str> = want.iter().filter_map(|(d, why)| why.map(|_| *d)).collect();
        assert_eq!(
            said.keys().map(String::as_str).collect::<Vec<_>>(),
            expected,
            "{lang}: {said:?}"
        );
        for (dir, why) in &want {
            let Some(why) = why else { continue };
            let got = &said[*dir];
            let alike = if why.ends_with(": ") {
                got.starts_with(why) && got.len() > why.len()
            } else {
                got == why
            };
            assert!(alike, "{lang} {dir}: {got:?}, want {why:?}");
        }

        let hidden = plugin
            .poll(root.path(), &params(&[("include_hidden", "true")]))
            .unwrap();
        assert_eq!(show(&hidden[0]), "dir .h_hidden", "{lang}");
        let custom = plugin
            .poll(root.path(), &params(&[("manifest", "ADI.XML")]))
            .unwrap();
        assert!(custom.is_empty(), "{lang}: ADI.XML is not JSON");
    }
    assert!(
        descriptions.iter().all(|d| *d == descriptions[0]),
        "{descriptions:#?}"
    );
}
