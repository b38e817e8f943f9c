//! Prometheus metrics in the text exposition format.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Metrics {
    pub requests: AtomicU64,
    pub client_errors: AtomicU64,
    pub server_errors: AtomicU64,
    pub events_ingested: AtomicU64,
    pub events_duplicate: AtomicU64,
    /// Agents' configuration long-polls waiting now.
    pub config_waits: AtomicU64,
}

/// Counts one waiting long-poll for as long as it lives.
pub struct Waiting<'a>(&'a AtomicU64);

impl<'a> Waiting<'a> {
    pub fn new(gauge: &'a AtomicU64) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        Self(gauge)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    pub fn count_response(&self, status: u16) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        match status {
            400..=499 => self.client_errors.fetch_add(1, Ordering::Relaxed),
            500..=599 => self.server_errors.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
    }

    /// The exposition text; `by_status` and `agents_online` come from the
    /// database at scrape time.
    pub fn render(
        &self,
        by_status: &[(String, i64)],
        agents_online: i64,
        agents_total: i64,
    ) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
            ));
        };
        counter(
            &mut out,
            "dispatch_http_requests_total",
            "HTTP requests answered.",
            self.requests.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "dispatch_http_client_errors_total",
            "Requests answered with a 4xx status.",
            self.client_errors.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "dispatch_http_server_errors_total",
            "Requests answered with a 5xx status.",
            self.server_errors.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "dispatch_events_ingested_total",
            "Transfer events ingested from agents.",
            self.events_ingested.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "dispatch_events_duplicate_total",
            "Replayed transfer events ignored.",
            self.events_duplicate.load(Ordering::Relaxed),
        );
        out.push_str(&format!(
            "# HELP dispatch_config_long_polls Agents' configuration long-polls waiting on this replica.\n# TYPE dispatch_config_long_polls gauge\ndispatch_config_long_polls {}\n",
            self.config_waits.load(Ordering::Relaxed)
        ));
        out.push_str("# HELP dispatch_transfers Transfers by status, from the statistics (those the log's retention removed stay counted).\n# TYPE dispatch_transfers gauge\n");
        for (status, n) in by_status {
            out.push_str(&format!("dispatch_transfers{{status=\"{status}\"}} {n}\n"));
        }
        out.push_str(&format!(
            "# HELP dispatch_agents_online Agents seen in the last 2 minutes.\n# TYPE dispatch_agents_online gauge\ndispatch_agents_online {agents_online}\n\
             # HELP dispatch_agents Agents registered.\n# TYPE dispatch_agents gauge\ndispatch_agents {agents_total}\n"
        ));
        out
    }
}
