//! One conformance suite for every backend (the shape of rclone's
//! `fstests`): the scenarios of `scenarios.rs` run against each backend as
//! a row, through real `dispatch-agent` processes and real servers on
//! loopback. A scenario that does not apply to a row says so in the test's
//! output, with the reason. Backend-specific cases (host keys, TLS,
//! multipart, PROPFIND) stay in their backend's test file.
#![allow(clippy::unwrap_used)] // a test helper that fails panics

#[path = "../common/mod.rs"]
mod common;

mod backends;
mod scenarios;

use backends::{Kind, Row};

#[test]
fn local() {
    scenarios::run(Row::new("local", Kind::Local));
}

#[test]
fn sftp_password() {
    scenarios::run(Row::new("sftp (password)", Kind::Sftp { password: true }));
}

#[test]
fn sftp_key() {
    scenarios::run(Row::new("sftp (key)", Kind::Sftp { password: false }));
}

#[test]
fn ftp() {
    scenarios::run(Row::new("ftp", Kind::Ftp { tls: false }));
}

#[test]
fn ftps() {
    scenarios::run(Row::new("ftps", Kind::Ftp { tls: true }));
}

#[test]
fn webdav() {
    scenarios::run(Row::new("webdav", Kind::WebDav));
}

#[test]
fn s3_path_style() {
    scenarios::run(Row::new(
        "s3 (path style)",
        Kind::S3 {
            virtual_host: false,
        },
    ));
}

#[test]
fn s3_virtual_host_style() {
    scenarios::run(Row::new(
        "s3 (virtual-host style)",
        Kind::S3 { virtual_host: true },
    ));
}

#[test]
fn aspera() {
    scenarios::run(Row::new("aspera (stand-in)", Kind::Aspera));
}
