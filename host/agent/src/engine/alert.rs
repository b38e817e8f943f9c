//! Alerts when a poller is disabled by repeated failures: a webhook (a JSON
//! POST) and/or an e-mail through SMTP. Off unless configured; a failed
//! alert is logged, never fatal.

use dispatch_protocol::{AlertSettings, SmtpSettings};
use serde::Serialize;

/// What an alert says.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    pub poller: String,
    pub host: String,
    pub failures: u32,
    pub reason: String,
    pub reenable_in_secs: u64,
}

impl Alert {
    fn subject(&self) -> String {
        format!("Dispatch: poller {} disabled on {}", self.poller, self.host)
    }

    fn body(&self) -> String {
        format!(
            "Poller {} on {} was disabled after {} consecutive failed transfers.\nLast error: {}\nIt will be re-enabled in {} s.\n",
            self.poller, self.host, self.failures, self.reason, self.reenable_in_secs
        )
    }
}

/// Sends `alert` everywhere configured.
pub async fn send(settings: &AlertSettings, alert: Alert) {
    if let Some(url) = &settings.webhook {
        if let Err(e) = webhook(url, &alert).await {
            tracing::error!(poller = %alert.poller, "alert webhook failed: {e}");
        } else {
            tracing::info!(poller = %alert.poller, "alert sent to the webhook");
        }
    }
    if let Some(smtp) = &settings.smtp {
        if let Err(e) = mail(smtp, &alert).await {
            tracing::error!(poller = %alert.poller, "alert e-mail failed: {e}");
        } else {
            tracing::info!(poller = %alert.poller, "alert e-mail sent");
        }
    }
}

async fn webhook(url: &str, alert: &Alert) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()?;
    client
        .post(url)
        .json(alert)
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

async fn mail(smtp: &SmtpSettings, alert: &Alert) -> anyhow::Result<()> {
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let mut builder = Message::builder()
        .from(smtp.from.parse()?)
        .subject(alert.subject());
    for to in &smtp.to {
        builder = builder.to(to.parse()?);
    }
    let message = builder.body(alert.body())?;
    let mut transport = match smtp.security.as_str() {
        "tls" => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host)?,
        "starttls" => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)?,
        _ => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host),
    }
    .port(smtp.port)
    .timeout(Some(std::time::Duration::from_secs(10)));
    if let (Some(user), Some(pass)) = (&smtp.username, &smtp.password) {
        transport =
            transport.credentials(Credentials::new(user.clone(), pass.expose().to_string()));
    }
    transport.build().send(message).await?;
    Ok(())
}
