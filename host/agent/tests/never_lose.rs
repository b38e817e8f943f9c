//! Never lose a file, never send one twice: real `dispatch-agent run`
//! processes against real directories, with the interference scripted.
//! Each race is made wide on purpose with `DISPATCH_TEST_PAUSE` (a pause
//! at a named point of the agent), and every test waits for the agent to
//! say it reached that point, never for a time. Each test is named after
//! the case of the issue it covers.
#![allow(clippy::unwrap_used)] // a test helper that fails panics

mod common;
use common::{AgentSite, Live, add, wait_limited, wait_until};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The agent's settings for these tests: quick retries and rescans.
fn config(site: &AgentSite, pollers: &str) {
    let cache = std::env::temp_dir().join("dispatch-test-cache");
    let text = format!(
        "[agent]\ncache_dir = {:?}\nrescan_interval = \"1s\"\nshutdown_grace = \"5s\"\n\n[agent.retry]\ninitial = \"100ms\"\nmax = \"400ms\"\n\n{pollers}",
        cache.display().to_string()
    );
    std::fs::write(site.path("agent.toml"), text).unwrap();
}

/// One poller `name` of `plugin` on `src/<name>`, to `dst/<name>`.
fn poller(name: &str, plugin: &str, extra: &str) -> String {
    format!(
        "[[poller]]\nname = \"{name}\"\npath = \"src/{name}\"\nplugin = \"{plugin}\"\nstability = \"200ms\"\n{extra}\ntarget = {{ kind = \"local\", destination = \"dst/{name}\" }}\n\n"
    )
}

/// `dispatch-agent run` on the site, `--until-idle` or not, with pauses.
fn agent(site: &AgentSite, until_idle: bool, pauses: &str) -> Command {
    let mut args = vec!["run", "--config", "agent.toml"];
    if until_idle {
        args.push("--until-idle");
    }
    let mut cmd = site.command(&args);
    cmd.env("DISPATCH_TEST_PAUSE", pauses);
    cmd
}

/// Runs until idle, asserting a clean exit; gives the log.
fn until_idle(site: &AgentSite) -> String {
    let out = wait_limited(
        agent(site, true, "")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        Duration::from_secs(60),
    );
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{log}");
    log
}

/// The journal's rows, newest first.
fn rows(site: &AgentSite) -> Vec<serde_json::Value> {
    site.transfers().as_array().unwrap().clone()
}

fn complete(site: &AgentSite, path: &str) -> usize {
    rows(site)
        .iter()
        .filter(|r| r["path"] == path && r["status"] == "Complete")
        .count()
}

/// Every entry under `dir` (relative), sorted, with `/` after directories.
fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let Ok(read) = std::fs::read_dir(dir.join(&rel)) else {
            continue;
        };
        for e in read.flatten() {
            let child = rel.join(e.file_name());
            let name = child.to_string_lossy().into_owned();
            if e.file_type().unwrap().is_dir() {
                out.push(format!("{name}/"));
                stack.push(child);
            } else {
                out.push(name);
            }
        }
    }
    out.sort();
    out
}

/// Writes `content` to `path` through a temporary name, then renames it
/// over `path` with the old file's mtime: same size and mtime as before,
/// only the inode (and ctime) tell the new version apart.
fn rename_over_same_mtime(path: &Path, content: &[u8]) {
    let old = std::fs::metadata(path).unwrap();
    let tmp = path.with_file_name("incoming.tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&tmp)
        .unwrap()
        .set_modified(old.modified().unwrap())
        .unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn mkfifo(path: &Path) {
    assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
}

#[test]
fn case1_a_new_version_renamed_over_a_file_after_its_check_is_sent_not_deleted() {
    let site = AgentSite::new();
    let src = site.path("src/clips");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("clip.mxf"), b"version one").unwrap();
    config(&site, &poller("clips", "file", ""));
    let live = Live::spawn(agent(&site, true, "before-remove=1500"));
    // Sent, checked, recorded Complete: now the source is about to go.
    live.wait_for("test pause before-remove", 1, Duration::from_secs(30));
    rename_over_same_mtime(&src.join("clip.mxf"), b"version two");
    let (ok, log) = live.wait(Duration::from_secs(60));
    assert!(ok, "{log}");
    assert_eq!(
        std::fs::read(site.path("dst/clips/clip.mxf")).unwrap(),
        b"version two",
        "the new version reached the destination: {log}"
    );
    assert!(!src.join("clip.mxf").exists());
    assert_eq!(complete(&site, "clip.mxf"), 2, "each version sent once");
}

#[test]
fn case1_a_file_added_to_a_directory_item_after_its_check_stays_at_the_source() {
    let site = AgentSite::new();
    add(
        &site.path("src/assets"),
        &["A/ADI.XML", "A/ADI.DTD", "A/a.mxf"],
    );
    config(&site, &poller("assets", "dir", ""));
    let live = Live::spawn(agent(&site, true, "before-remove=1500"));
    live.wait_for("test pause before-remove", 1, Duration::from_secs(30));
    std::fs::write(site.path("src/assets/A/late.mxf"), b"arrived late").unwrap();
    let (ok, log) = live.wait(Duration::from_secs(60));
    assert!(ok, "{log}");
    assert_eq!(
        listing(&site.path("src/assets")),
        ["A/", "A/late.mxf"],
        "only what was sent is gone: {log}"
    );
    assert_eq!(
        std::fs::read(site.path("src/assets/A/late.mxf")).unwrap(),
        b"arrived late"
    );
    assert_eq!(
        listing(&site.path("dst/assets")),
        ["A/", "A/ADI.DTD", "A/ADI.XML", "A/a.mxf"]
    );
    assert!(
        log.contains("1 entry that was never sent: `late.mxf`"),
        "{log}"
    );
}

#[test]
fn case2_google_remove_dir_keeps_what_it_never_sent() {
    let site = AgentSite::new();
    let root = site.path("src/google");
    add(
        &root,
        &[
            "D/ADI.XML",
            "D/ADI.DTD",
            "D/a.mxf",
            "D/.hidden",
            "D/.cache/x",
        ],
    );
    std::os::unix::fs::symlink("/etc/hostname", root.join("D/.link")).unwrap();
    mkfifo(&root.join("D/.fifo"));
    config(&site, &poller("google", "google", ""));
    let log = until_idle(&site);
    assert_eq!(
        listing(&site.path("dst/google")),
        [
            "D/",
            "D/ADI.DTD",
            "D/ADI.XML",
            "D/a.mxf",
            "D/delivery.complete"
        ],
        "{log}"
    );
    // Delivered, and everything it never sent is still there, with D.
    assert_eq!(
        listing(&root),
        [
            "D/",
            "D/.cache/",
            "D/.cache/x",
            "D/.fifo",
            "D/.hidden",
            "D/.link",
            "D/dispatch.done"
        ],
        "{log}"
    );
    assert!(
        log.contains("not removed: it holds 5 entries that were never sent"),
        "the reason is given: {log}"
    );
    // And it stays so: a second run removes nothing and sends nothing.
    until_idle(&site);
    assert!(root.join("D/.hidden").exists());
    assert_eq!(rows(&site).len(), 4);
}

#[test]
fn case3_a_directory_items_skipped_entries_are_never_deleted() {
    let site = AgentSite::new();
    let root = site.path("src/assets");
    add(
        &root,
        &[
            "A/ADI.XML",
            "A/ADI.DTD",
            "A/a.mxf",
            "A/sub/b.mxf",
            "A/x.tmp",
            "A/sub/y.tmp",
        ],
    );
    std::os::unix::fs::symlink("/etc/hostname", root.join("A/link")).unwrap();
    mkfifo(&root.join("A/sub/fifo"));
    config(&site, &poller("assets", "dir", "excludes = [\"*.tmp\"]"));
    let log = until_idle(&site);
    assert_eq!(
        listing(&site.path("dst/assets")),
        [
            "A/",
            "A/ADI.DTD",
            "A/ADI.XML",
            "A/a.mxf",
            "A/sub/",
            "A/sub/b.mxf"
        ],
        "{log}"
    );
    assert_eq!(
        listing(&root),
        [
            "A/",
            "A/link",
            "A/sub/",
            "A/sub/fifo",
            "A/sub/y.tmp",
            "A/x.tmp"
        ],
        "what was not sent stays: {log}"
    );
    // What is left is held back, not sent again as a new item.
    let log = until_idle(&site);
    assert_eq!(rows(&site).len(), 1, "{log}");
    assert!(root.join("A/x.tmp").exists());
}

#[test]
fn case4_two_pollers_delivering_into_one_place_are_refused() {
    let site = AgentSite::new();
    add(&site.path("src/one"), &["clip.mxf"]);
    add(&site.path("src/two"), &["clip.mxf"]);
    let two = poller("two", "file", "").replace("dst/two", "dst/one");
    config(&site, &format!("{}{two}", poller("one", "file", "")));
    let out = wait_limited(
        agent(&site, true, "")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        Duration::from_secs(30),
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{log}");
    assert!(
        log.contains("poller `two`") && log.contains("`one`"),
        "the error names both pollers: {log}"
    );
    assert!(site.path("src/one/clip.mxf").exists() && site.path("src/two/clip.mxf").exists());
}

#[test]
fn case5_a_directory_changed_before_its_final_rename_never_appears_incomplete() {
    let site = AgentSite::new();
    add(
        &site.path("src/assets"),
        &["A/ADI.XML", "A/ADI.DTD", "A/a.mxf"],
    );
    config(&site, &poller("assets", "dir", ""));
    let live = Live::spawn(agent(&site, true, "before-rename=1000"));
    live.wait_for("test pause before-rename", 1, Duration::from_secs(30));
    std::fs::write(site.path("src/assets/A/b.mxf"), b"added").unwrap();
    // The directory appears at its final name in one rename: whole.
    let dst = site.path("dst/assets/A");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dst.exists() {
        assert!(Instant::now() < deadline, "never delivered: {}", live.log());
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(dst.join("b.mxf").exists(), "incomplete at its final name");
    let (ok, log) = live.wait(Duration::from_secs(60));
    assert!(ok, "{log}");
    assert_eq!(
        listing(&site.path("dst/assets")),
        ["A/", "A/ADI.DTD", "A/ADI.XML", "A/a.mxf", "A/b.mxf"]
    );
    assert_eq!(listing(&site.path("src/assets")), Vec::<String>::new());
    assert!(
        common::dot_files(&site.path("dst/assets")).is_empty(),
        "no temporary tree left"
    );
    assert_eq!(complete(&site, "A"), 1);
}

#[test]
fn case5_a_directory_is_never_merged_into_one_already_delivered() {
    let site = AgentSite::new();
    add(
        &site.path("src/assets"),
        &["A/ADI.XML", "A/ADI.DTD", "A/a.mxf"],
    );
    add(&site.path("dst/assets"), &["A/old.mxf"]);
    config(&site, &poller("assets", "dir", ""));
    let live = Live::spawn(agent(&site, false, ""));
    live.wait_for("a directory is never merged", 1, Duration::from_secs(30));
    live.signal("-TERM");
    let (ok, log) = live.wait(Duration::from_secs(30));
    assert!(ok, "{log}");
    assert_eq!(listing(&site.path("dst/assets")), ["A/", "A/old.mxf"]);
    assert_eq!(
        listing(&site.path("src/assets")),
        ["A/", "A/ADI.DTD", "A/ADI.XML", "A/a.mxf"]
    );
    // The item's own error: the poller was not disabled for it.
    assert!(!log.contains("disabled after"), "{log}");
}

/// Directories whose fsync(2) the agent made, from an strace log, each
/// under its final name (a tree is synced under its temporary name
/// `.<name>.<id>.dispatch-part`, before the rename its parent's sync holds).
fn fsynced_dirs(trace: &str) -> Vec<PathBuf> {
    let final_name = |c: &str| -> String {
        match c
            .strip_prefix('.')
            .and_then(|c| c.strip_suffix(".dispatch-part"))
            .and_then(|c| c.rsplit_once('.'))
        {
            Some((name, id)) if id.len() == 16 => name.to_string(),
            _ => c.to_string(),
        }
    };
    trace
        .lines()
        // A call another thread interrupted is printed in two lines, the
        // path on the first (`<unfinished ...>`).
        .filter(|l| l.contains("fsync(") && !l.contains("= -1"))
        .filter_map(|l| {
            let start = l.find('<')? + 1;
            let end = l[start..].find('>')? + start;
            let path = &l[start..end];
            Some(
                path.split('/')
                    .map(final_name)
                    .collect::<Vec<_>>()
                    .join("/")
                    .into(),
            )
        })
        .collect()
}

/// Runs the agent until idle under `strace`; gives what it fsynced, as
/// [`fsynced_dirs`] names it.
fn fsyncs_until_idle(site: &AgentSite) -> Vec<PathBuf> {
    let trace = site.path("trace.txt");
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-y", "-e", "trace=fsync", "-o"])
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_dispatch-agent"))
        .args(["run", "--config", "agent.toml", "--until-idle"])
        .current_dir(site.dir.path())
        .env(
            "DISPATCH_PLUGIN_DIR",
            common::component("plugin", "file").parent().unwrap(),
        );
    let out = wait_limited(
        cmd.stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    fsynced_dirs(&std::fs::read_to_string(&trace).unwrap())
}

#[test]
fn case6_every_directory_created_or_renamed_into_is_synced_before_complete() {
    let site = AgentSite::new();
    add(
        &site.path("src/assets"),
        &["A/ADI.XML", "A/ADI.DTD", "A/sub/deep/b.mxf"],
    );
    add(&site.path("src/clips"), &["x/clip.mxf"]);
    let clips = poller("clips", "subdir", "").replace("dst/clips", "dst/new/clips");
    config(&site, &format!("{}{clips}", poller("assets", "dir", "")));
    let synced = fsyncs_until_idle(&site);
    let dst = site.path("dst").canonicalize().unwrap();
    assert!(
        dst.join("new/clips/x/clip.mxf").exists() && dst.join("assets/A/sub/deep/b.mxf").exists()
    );
    for dir in [
        dst.parent().unwrap().to_path_buf(),
        dst.clone(),
        dst.join("assets"),
        dst.join("assets/A"),
        dst.join("assets/A/sub"),
        dst.join("assets/A/sub/deep"),
        dst.join("new"),
        dst.join("new/clips"),
        dst.join("new/clips/x"),
    ] {
        assert!(
            synced.contains(&dir),
            "{} was never synced: {synced:?}",
            dir.display()
        );
    }
}

#[test]
fn case6_small_files_sharing_a_slot_share_their_folders_fsync() {
    let site = AgentSite::new();
    let names: Vec<String> = (0..200).map(|i| format!("f{i:03}.dpx")).collect();
    add(
        &site.path("src/frames"),
        &names.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    config(&site, &poller("frames", "file", ""));
    let synced = fsyncs_until_idle(&site);
    let dst = site.path("dst/frames").canonicalize().unwrap();
    assert_eq!(listing(&dst), names, "every file arrived");
    let files = synced.iter().filter(|p| p.parent() == Some(&dst)).count();
    let folder = synced.iter().filter(|p| **p == dst).count();
    assert!(files >= names.len(), "each file was flushed: {files}");
    // Up to 64 small files go to a slot (four batches here), and each
    // batch flushes the folder once after its renames; one by one, the
    // folder was flushed about once for every three files.
    assert!(
        (1..=8).contains(&folder),
        "{folder} fsyncs of the folder for {} files",
        names.len()
    );
}

#[test]
fn case7_a_failed_journal_commit_keeps_the_source_and_fails_the_transfer() {
    let site = AgentSite::new();
    add(&site.path("src/clips"), &["clip.mxf"]);
    config(&site, &poller("clips", "file", ""));
    let live = Live::spawn(agent(&site, true, "after-send=2000"));
    live.wait_for("test pause after-send", 1, Duration::from_secs(30));
    // Another process holds the journal's write lock past the agent's
    // busy timeout: the Complete record cannot be committed.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let journal = site.path("dispatch-journal.sqlite");
    let mut lock = rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", journal.display()))
            .await
            .unwrap();
        sqlx::query("BEGIN EXCLUSIVE")
            .execute(&mut c)
            .await
            .unwrap();
        c
    });
    live.wait_for(
        "Complete record could not be written",
        1,
        Duration::from_secs(60),
    );
    assert!(
        site.path("src/clips/clip.mxf").exists(),
        "the source is kept while its record is not on disk"
    );
    rt.block_on(async {
        sqlx::query("COMMIT").execute(&mut lock).await.unwrap();
    });
    drop(lock);
    let (ok, log) = live.wait(Duration::from_secs(60));
    assert!(ok, "{log}");
    assert!(!site.path("src/clips/clip.mxf").exists());
    assert_eq!(
        std::fs::read_to_string(site.path("dst/clips/clip.mxf")).unwrap(),
        "clip.mxf"
    );
    assert_eq!(complete(&site, "clip.mxf"), 1, "{log}");
}

/// One `clip.mxf` in the `clips` poller's folder, the agent killed (-9)
/// while paused at `point`; gives the site.
fn killed_at(point: &str) -> AgentSite {
    let site = AgentSite::new();
    add(&site.path("src/clips"), &["clip.mxf"]);
    config(&site, &poller("clips", "file", ""));
    let live = Live::spawn(agent(&site, false, &format!("{point}=5000")));
    live.wait_for(&format!("test pause {point}"), 1, Duration::from_secs(30));
    live.signal("-KILL");
    let _ = live.wait(Duration::from_secs(10));
    site
}

#[test]
fn case8_kill_9_between_the_final_rename_and_the_complete_record_does_not_send_twice() {
    let site = killed_at("before-complete");
    let delivered = site.path("dst/clips/clip.mxf");
    let ino = std::fs::metadata(&delivered).unwrap().ino();
    assert!(site.path("src/clips/clip.mxf").exists());

    let log = until_idle(&site);
    assert!(log.contains("found whole at the destination"), "{log}");
    assert_eq!(
        std::fs::metadata(&delivered).unwrap().ino(),
        ino,
        "the receiver's copy was not replaced by a second one"
    );
    assert!(!site.path("src/clips/clip.mxf").exists());
    let rows = rows(&site);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["status"], "Complete");
}

#[test]
fn case8_kill_9_between_the_complete_record_and_the_removal_removes_it_at_restart() {
    let site = killed_at("before-remove");
    assert!(site.path("src/clips/clip.mxf").exists());
    assert_eq!(rows(&site)[0]["status"], "Complete");

    let log = until_idle(&site);
    assert!(
        log.contains("removed a source sent before the last shutdown"),
        "{log}"
    );
    assert!(!site.path("src/clips/clip.mxf").exists());
    assert_eq!(rows(&site).len(), 1, "not sent a second time");
}

#[test]
fn case8_kill_9_before_the_final_rename_then_a_changed_source_leaves_no_temporary_copy() {
    let site = killed_at("after-send");
    let dst = site.path("dst/clips");
    let parts = || -> Vec<String> {
        listing(&dst)
            .into_iter()
            .filter(|n| n.starts_with('.'))
            .collect()
    };
    assert_eq!(
        parts().len(),
        1,
        "the killed attempt left its copy: {:?}",
        listing(&dst)
    );
    // While the agent is down the source changes: the killed transfer is
    // never resumed under its id, and its copy must not stay behind.
    std::fs::write(site.path("src/clips/clip.mxf"), b"the second version").unwrap();

    let log = until_idle(&site);
    assert_eq!(listing(&dst), ["clip.mxf"], "{log}");
    assert_eq!(
        std::fs::read(dst.join("clip.mxf")).unwrap(),
        b"the second version"
    );
    let statuses: Vec<_> = rows(&site).iter().map(|r| r["status"].clone()).collect();
    assert_eq!(statuses.len(), 2, "{statuses:?}");
    assert!(
        statuses.contains(&"Cancelled".into()) && statuses.contains(&"Complete".into()),
        "{statuses:?}"
    );
}

/// The agent in a namespace of its own after `script` (see
/// [`common::in_namespace`]).
fn in_namespace(site: &AgentSite, script: &str, until_idle: bool) -> Command {
    common::in_namespace(&agent(site, until_idle, ""), script)
}

#[test]
fn case9_a_source_that_cannot_be_removed_is_not_sent_again_after_a_restart() {
    let site = AgentSite::new();
    add(&site.path("src/clips"), &["clip.mxf"]);
    config(&site, &poller("clips", "file", ""));
    // A file that is a mount point cannot be renamed or unlinked (EBUSY).
    let pin = "mount --bind src/clips/clip.mxf src/clips/clip.mxf";
    for run in 0..2 {
        let out = wait_limited(
            in_namespace(&site, pin, true)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
            Duration::from_secs(60),
        );
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "run {run}: {log}");
        assert!(
            log.contains("sent, but the source cannot be removed"),
            "run {run}: the poller says why: {log}"
        );
    }
    assert!(site.path("src/clips/clip.mxf").exists());
    assert_eq!(complete(&site, "clip.mxf"), 1, "sent once over two runs");
}

#[test]
fn case10_google_a_file_added_during_the_delivery_blocks_delivery_complete_with_a_reason() {
    let site = AgentSite::new();
    let root = site.path("src/google");
    add(&root, &["D/ADI.XML", "D/ADI.DTD"]);
    // Larger than what shares a slot: it goes on its own, before or after
    // the two small files' batch.
    std::fs::write(root.join("D/a.mxf"), vec![b'm'; 2 << 20]).unwrap();
    config(&site, &poller("google", "google", "max_transfers = 1"));
    let live = Live::spawn(agent(&site, true, "after-send=500"));
    // Part of the group is sent (and gone at the source); the rest is in
    // flight when another file arrives.
    live.wait_for("test pause after-send", 2, Duration::from_secs(30));
    std::fs::write(root.join("D/late.mxf"), b"late").unwrap();
    let (ok, log) = live.wait(Duration::from_secs(60));
    assert!(ok, "{log}");
    assert!(
        !site.path("dst/google/D/delivery.complete").exists(),
        "the receiver is never told a delivery is whole while a file is missing"
    );
    assert!(!root.join("D/delivery.complete").exists(), "{log}");
    assert!(root.join("D/late.mxf").exists());
    assert!(
        log.contains("`D/late.mxf` arrived during the delivery and was not sent"),
        "{log}"
    );
}

#[test]
fn case10_google_an_excluded_name_inside_a_group_is_an_error_not_a_silent_skip() {
    let site = AgentSite::new();
    let root = site.path("src/google");
    add(&root, &["D/ADI.XML", "D/ADI.DTD", "D/a.mxf", "D/notes.tmp"]);
    config(&site, &poller("google", "google", "excludes = [\"*.tmp\"]"));
    let log = until_idle(&site);
    assert!(
        log.contains("`D/notes.tmp` matches `excludes`"),
        "the reason is given: {log}"
    );
    assert_eq!(listing(&site.path("dst/google")), Vec::<String>::new());
    assert_eq!(
        listing(&root),
        ["D/", "D/ADI.DTD", "D/ADI.XML", "D/a.mxf", "D/notes.tmp"]
    );
}

#[test]
fn case11_google_restart_mid_delivery_resumes_the_group() {
    // Killed while a clip's send pauses, before its Complete.
    google_killed_mid_delivery("after-send=300", "test pause after-send");
}

#[test]
fn case11_google_restart_after_a_clips_complete_finishes_the_group() {
    // Killed after a clip's Complete was recorded, before the group's save
    // could drop it from what the group waits for.
    google_killed_mid_delivery("before-remove=3000", "test pause before-remove");
}

/// An asset of two ADI files and two clips, the agent killed at the second
/// `pause` (the first is the ADI files' batch, the second the first clip):
/// a restart delivers the rest and writes the marker.
fn google_killed_mid_delivery(pauses: &str, pause: &str) {
    let site = AgentSite::new();
    let root = site.path("src/google");
    add(&root, &["D/ADI.DTD", "D/ADI.XML"]);
    // Larger than what shares a slot: each goes on its own, after the two
    // small files' batch.
    for clip in ["D/a.mxf", "D/b.mxf"] {
        std::fs::write(root.join(clip), vec![b'm'; 2 << 20]).unwrap();
    }
    config(&site, &poller("google", "google", "max_transfers = 1"));
    let live = Live::spawn(agent(&site, false, pauses));
    // The ADI files' batch, then a clip, reached the pause.
    live.wait_for(pause, 2, Duration::from_secs(30));
    live.signal("-KILL");
    let _ = live.wait(Duration::from_secs(10));
    let log = until_idle(&site);
    assert_eq!(
        listing(&site.path("dst/google")),
        [
            "D/",
            "D/ADI.DTD",
            "D/ADI.XML",
            "D/a.mxf",
            "D/b.mxf",
            "D/delivery.complete"
        ],
        "{log}"
    );
    assert_eq!(
        listing(&root),
        Vec::<String>::new(),
        "D done and removed: {log}"
    );
}

#[test]
fn case12_a_name_of_250_bytes_is_sent() {
    let site = AgentSite::new();
    let name = format!("{}.mxf", "n".repeat(246));
    assert_eq!(name.len(), 250);
    let src = site.path("src/clips");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join(&name), b"long").unwrap();
    config(&site, &poller("clips", "file", ""));
    let log = until_idle(&site);
    assert_eq!(
        std::fs::read(site.path("dst/clips").join(&name)).unwrap(),
        b"long",
        "{log}"
    );
    assert!(!src.join(&name).exists());
}

#[test]
fn case13_a_name_that_is_not_utf8_is_an_error_in_the_journal_and_stays() {
    let site = AgentSite::new();
    let src = site.path("src/clips");
    add(&src, &["good.mxf"]);
    let bad = src.join(OsStr::from_bytes(b"caf\xe9.mxf"));
    std::fs::write(&bad, b"latin-1 name").unwrap();
    config(&site, &poller("clips", "file", ""));
    let log = until_idle(&site);
    assert!(site.path("dst/clips/good.mxf").exists(), "{log}");
    assert!(bad.exists(), "kept");
    let rows = rows(&site);
    let row = rows
        .iter()
        .find(|r| r["path"] == "caf\u{fffd}.mxf")
        .unwrap_or_else(|| panic!("no journal row for the name: {rows:?}"));
    assert_eq!(row["status"], "Error");
    assert!(
        row["error"].as_str().unwrap().contains("not valid UTF-8"),
        "{row}"
    );
    // Once per name, not once per poll.
    until_idle(&site);
    assert_eq!(self::rows(&site).len(), 2);
}

#[test]
fn case14_a_full_destination_is_not_kept_full_by_part_files() {
    let site = AgentSite::new();
    let src = site.path("src/clips");
    std::fs::create_dir_all(&src).unwrap();
    // 3 MiB at the destination: the first file never fits, the others do.
    std::fs::write(src.join("a-big.mxf"), common::pattern(4 << 20, 1)).unwrap();
    std::fs::write(src.join("b.mxf"), common::pattern(1 << 20, 2)).unwrap();
    std::fs::write(src.join("c.mxf"), common::pattern(1 << 20, 3)).unwrap();
    std::fs::create_dir_all(site.path("dst/clips")).unwrap();
    config(&site, &poller("clips", "file", "max_transfers = 1"));
    let live = Live::spawn(in_namespace(
        &site,
        "mount -t tmpfs -o size=3m tmpfs dst/clips",
        false,
    ));
    let deadline = Instant::now() + Duration::from_secs(60);
    let journal = site.path("dispatch-journal.sqlite");
    while !journal.exists() || complete(&site, "b.mxf") + complete(&site, "c.mxf") < 2 {
        assert!(
            Instant::now() < deadline,
            "the files that fit were never sent: {}",
            live.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The agent's own view of the destination (its mount namespace).
    let dst = PathBuf::from(format!("/proc/{}/root", live.pid()))
        .join(site.path("dst/clips").strip_prefix("/").unwrap());
    // Nothing but the two files, and at most the part of the big one's
    // attempt under way.
    let mut names: Vec<String> = std::fs::read_dir(&dst)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".a-big.mxf."))
        .collect();
    names.sort();
    assert_eq!(names, ["b.mxf", "c.mxf"]);
    assert!(
        src.join("a-big.mxf").exists(),
        "the file that cannot fit is kept"
    );
    live.signal("-TERM");
    let (_, log) = live.wait(Duration::from_secs(30));
    assert!(log.contains("No space left on device"), "{log}");
}

/// What the script of the property test did to the source, version by
/// version: each version's bytes are unique, so a delivered file tells
/// which version it is.
#[derive(Default)]
struct Script {
    /// Every version ever written under each name.
    versions: std::collections::HashMap<String, usize>,
    /// The version each name holds now, as the script left it (names the
    /// script deleted are gone from here).
    alive: std::collections::BTreeMap<String, Vec<u8>>,
    next: usize,
}

impl Script {
    fn content(&mut self, rng: &mut fastrand::Rng) -> Vec<u8> {
        self.next += 1;
        let mut c = format!("version {} ", self.next).into_bytes();
        c.extend(std::iter::repeat_n(b'x', rng.usize(0..200_000)));
        c
    }

    /// One random change to `dir`: a new file (sometimes written in two
    /// steps), a new version renamed over an old one (sometimes with the
    /// old mtime), or a deletion.
    fn step(&mut self, dir: &Path, rng: &mut fastrand::Rng) {
        let existing: Vec<String> = self.alive.keys().cloned().collect();
        match rng.u8(0..10) {
            0..=4 => {
                let name = format!("f{}.mxf", self.next);
                let content = self.content(rng);
                let path = dir.join(&name);
                if rng.bool() {
                    let half = content.len() / 2;
                    std::fs::write(&path, &content[..half]).unwrap();
                    std::thread::sleep(Duration::from_millis(rng.u64(0..30)));
                    use std::io::Write;
                    std::fs::File::options()
                        .append(true)
                        .open(&path)
                        .unwrap()
                        .write_all(&content[half..])
                        .unwrap();
                } else {
                    std::fs::write(&path, &content).unwrap();
                }
                *self.versions.entry(name.clone()).or_default() += 1;
                self.alive.insert(name, content);
            }
            5..=7 if !existing.is_empty() => {
                let name = &existing[rng.usize(..existing.len())];
                let path = dir.join(name);
                let content = self.content(rng);
                let tmp = dir.join(".incoming");
                std::fs::write(&tmp, &content).unwrap();
                if rng.bool()
                    && let Ok(old) = std::fs::metadata(&path)
                {
                    std::fs::File::options()
                        .write(true)
                        .open(&tmp)
                        .unwrap()
                        .set_modified(old.modified().unwrap())
                        .unwrap();
                }
                std::fs::rename(&tmp, &path).unwrap();
                *self.versions.entry(name.clone()).or_default() += 1;
                self.alive.insert(name.clone(), content);
            }
            8 if !existing.is_empty() => {
                let name = &existing[rng.usize(..existing.len())];
                let _ = std::fs::remove_file(dir.join(name));
                self.alive.remove(name);
            }
            _ => {}
        }
    }
}

#[test]
fn case15_small_files_sharing_a_slot_keep_each_ones_guarantees() {
    let site = AgentSite::new();
    let src = site.path("src/frames");
    std::fs::create_dir_all(&src).unwrap();
    let names: Vec<String> = (0..20).map(|i| format!("f.{i:04}.dpx")).collect();
    for n in &names {
        std::fs::write(src.join(n), n.as_bytes()).unwrap();
    }
    config(&site, &poller("frames", "file", "max_transfers = 1"));
    let live = Live::spawn(agent(&site, true, "after-send=1500"));
    live.wait_for("test pause after-send", 1, Duration::from_secs(30));
    // One slot, and all twenty in flight: they share it.
    let log = live.log();
    assert_eq!(log.matches("transfer started").count(), 20, "{log}");
    let changed = b"changed while in flight";
    std::fs::write(src.join("f.0007.dpx"), changed).unwrap();
    let (ok, log) = live.wait(Duration::from_secs(60));
    assert!(ok, "{log}");
    assert!(
        log.contains("the source changed during the transfer"),
        "{log}"
    );
    for n in &names {
        let want: &[u8] = if n == "f.0007.dpx" {
            changed
        } else {
            n.as_bytes()
        };
        let got = std::fs::read(site.path("dst/frames").join(n)).unwrap();
        assert_eq!(got, want, "{n}: {log}");
        assert_eq!(complete(&site, n), 1, "{n} recorded as sent once: {log}");
    }
    assert_eq!(
        listing(&src),
        Vec::<String>::new(),
        "each source removed once sent"
    );
}

#[test]
fn case16_a_file_sent_while_a_poll_lists_is_not_queued_again_from_that_listing() {
    let site = AgentSite::new();
    let src = site.path("src/clips");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.mxf"), b"first").unwrap();
    config(
        &site,
        &poller("clips", "file", "").replace("\"200ms\"", "\"0s\""),
    );
    // Every poll waits after its listing, and a sent file's removal waits:
    // a poll that lists `a.mxf` while it is in flight resumes after its
    // source is gone.
    let live = Live::spawn(agent(&site, false, "after-list=1500,before-remove=1000"));
    live.wait_for("test pause before-remove", 1, Duration::from_secs(30));
    // A new file asks for the poll that lists both.
    std::fs::write(src.join("b.mxf"), b"second").unwrap();
    live.wait_for("test pause after-list", 2, Duration::from_secs(30));
    assert!(
        src.join("a.mxf").exists(),
        "the second poll listed a.mxf before its removal: {}",
        live.log()
    );
    // b.mxf is queued by that poll, so its Complete comes after whatever
    // that poll made of a.mxf.
    wait_until("b.mxf sent", Duration::from_secs(30), || {
        complete(&site, "b.mxf") == 1
    });
    let log = live.terminate();
    let of_a: Vec<_> = rows(&site)
        .into_iter()
        .filter(|r| r["path"] == "a.mxf")
        .collect();
    assert_eq!(of_a.len(), 1, "a.mxf was one transfer: {of_a:?}\n{log}");
    assert_eq!(of_a[0]["status"], "Complete", "{of_a:?}");
    assert!(!log.contains("transfer failed"), "{log}");
    assert!(!src.join("a.mxf").exists() && !src.join("b.mxf").exists());
}

#[test]
fn property_random_writes_renames_deletes_and_kills_never_lose_a_file_nor_send_one_twice() {
    let seed = std::env::var("DISPATCH_PROPERTY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("property seed {seed} (set DISPATCH_PROPERTY_SEED to replay)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let site = AgentSite::new();
    let src = site.path("src/clips");
    std::fs::create_dir_all(&src).unwrap();
    config(
        &site,
        &poller("clips", "file", "").replace("\"200ms\"", "\"100ms\""),
    );
    let mut script = Script::default();
    for _round in 0..5 {
        // Small pauses at the points where a race would hurt.
        let live = Live::spawn(agent(
            &site,
            false,
            "after-send=50,before-remove=150,before-rename=50",
        ));
        for _ in 0..rng.usize(10..30) {
            script.step(&src, &mut rng);
            std::thread::sleep(Duration::from_millis(rng.u64(0..100)));
        }
        live.signal(if rng.bool() { "-KILL" } else { "-TERM" });
        let _ = live.wait(Duration::from_secs(30));
    }
    let log = until_idle(&site);
    let context = || format!("seed {seed}; log of the last run:\n{log}");

    // Nothing lost: every version the script left is at the destination.
    for (name, content) in &script.alive {
        let got = std::fs::read(site.path("dst/clips").join(name))
            .unwrap_or_else(|e| panic!("{name} never arrived ({e}); {}", context()));
        assert!(
            &got == content,
            "{name}: another version arrived; {}",
            context()
        );
    }
    assert_eq!(listing(&src), Vec::<String>::new(), "{}", context());
    let leftovers: Vec<String> = listing(&site.path("dst/clips"))
        .into_iter()
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}; {}", context());
    // Never twice: no name was delivered more often than it had versions.
    for row in rows(&site).iter().filter(|r| r["status"] == "Complete") {
        let path = row["path"].as_str().unwrap().to_string();
        let sent = complete(&site, &path);
        let made = script.versions.get(&path).copied().unwrap_or(0);
        assert!(
            sent <= made,
            "{path}: {made} versions, sent {sent} times; {}",
            context()
        );
    }
}
