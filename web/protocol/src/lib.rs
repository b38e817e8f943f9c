//! The protocol between Dispatch agents and the web app: the JSON types of
//! an agent's configuration (settings, pollers, targets, modules), its
//! transfer events, heartbeats and commands, with their validation and
//! OpenAPI schemas. Both sides depend on this crate; nothing re-declares
//! these types.
//!
//! Tolerance: no type refuses a field it does not know, so a newer agent
//! and an older web app (or the reverse) understand each other; a field
//! added later has a default. `PROTOCOL_VERSION` changes only when a
//! change is not compatible.

mod config;
pub mod duration;
mod error;
pub mod overlap;
mod report;
mod secret;
pub mod target;

pub use config::{
    AgentConfig, AgentSettings, AlertSettings, ModuleRef, ParamValue, PollerSpec, RetrySettings,
    SmtpSettings, valid_poller_name,
};
pub use error::FieldError;
pub use report::{
    Command, EVENT_KINDS, Event, EventBatch, Heartbeat, HeartbeatReply, Ingested, PollerState, cut,
    limits,
};
pub use secret::Secret;
pub use target::Target;

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u32 = 1;

fn version() -> u32 {
    PROTOCOL_VERSION
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_ignored_both_ways() {
        // A newer web app's configuration: fields this agent does not know.
        let json = r#"{"protocol":1,"agent":"a","future":{"x":1},
            "settings":{"rescan_interval":"30s","new_knob":true},
            "pollers":[{"id":"7","name":"p","path":"/in","plugin":"dir","later":[1],
              "target":{"kind":"local","destination":"/out","compression":"zstd"}}]}"#;
        let cfg: AgentConfig = serde_json::from_str(json).expect("tolerant");
        assert_eq!(cfg.pollers[0].id, "7");
        assert_eq!(cfg.settings.rescan_interval.as_secs(), 30);
        // A newer agent's heartbeat, to an older web app.
        let hb: Heartbeat = serde_json::from_str(
            r#"{"version":"9","host_name":"h","gpu":1,"pollers":[{"name":"p","temp":3}]}"#,
        )
        .expect("tolerant");
        assert_eq!(hb.pollers[0].name, "p");
    }

    #[test]
    fn an_older_peer_gets_defaults() {
        let cfg: AgentConfig = serde_json::from_str(r#"{"pollers":[]}"#).expect("defaults");
        assert_eq!(cfg.protocol, PROTOCOL_VERSION);
        assert_eq!(cfg.settings, AgentSettings::default());
    }

    #[test]
    fn a_configuration_round_trips() {
        let toml_text = r#"
            id = "p1"
            name = "news"
            path = "/in"
            plugin = "dir"
            params = { marker = "done", depth = 2, keep = true, kinds = ["a", "b"] }
            stability = "1m 30s"
            [target]
            kind = "sftp"
            host = "h"
            username = "u"
            password = "pw"
            insecure_skip_host_key_check = true
        "#;
        let p: PollerSpec = toml::from_str(toml_text).expect("parses");
        assert_eq!(p.params["kinds"].as_param(), "a,b");
        assert_eq!(p.params["depth"].as_param(), "2");
        assert_eq!(p.stability.as_secs(), 90);
        let back: PollerSpec =
            serde_json::from_str(&serde_json::to_string(&p).expect("json")).expect("back");
        assert_eq!(back, p);
        p.validate(true).expect("valid");
    }

    #[test]
    fn errors_name_the_field() {
        let mut p: PollerSpec = serde_json::from_str(
            r#"{"name":"p","path":"in","plugin":"dir","excludes":["a[","*.tmp"],
                "target":{"kind":"sftp","host":"h","username":"u","password":"x"}}"#,
        )
        .expect("parses");
        let e = p.validate(true).expect_err("relative path");
        assert_eq!(e.field, "path");
        p.path = "/in".into();
        assert_eq!(p.validate(true).expect_err("glob").field, "excludes[0]");
        p.excludes.clear();
        let e = p.validate(true).expect_err("no host key check");
        assert_eq!(e.field, "target.known_hosts");
        assert!(
            e.to_string()
                .starts_with("field `target.known_hosts`: give exactly one")
        );
    }

    #[test]
    fn secrets_are_listed_and_set() {
        let mut t: Target = serde_json::from_str(
            r#"{"kind":"s3","endpoint":"http://127.0.0.1:9000","bucket":"b","access_key":"a","secret_key":"s"}"#,
        )
        .expect("parses");
        assert_eq!(t.secrets(), vec![("secret_key", Some(&Secret::new("s")))]);
        assert!(t.set_secret("secret_key", None));
        assert_eq!(t.validate(true).expect_err("empty").field, "secret_key");
        assert!(!t.set_secret("bucket", None));
        assert!(!format!("{t:?}").contains("\"s\""));
    }
}
