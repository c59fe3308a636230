//! The SMTP transport of the alerts, and the hints its errors come with.

use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, Tokio1Executor};

use super::{AlertsError, CONNECT_TIMEOUT};
use crate::config::{AlertsConfig, SmtpTls};

/// This machine's name, for subjects and `EHLO`.
pub(super) fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

pub(super) fn transport(
    config: &AlertsConfig,
    host: &str,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, AlertsError> {
    let tls_error = |error: String| AlertsError::Tls {
        host: config.smtp_host.clone(),
        error,
    };
    let parameters = || -> Result<TlsParameters, AlertsError> {
        let mut builder = TlsParameters::builder(config.smtp_host.clone());
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| tls_error(format!("cannot read `{}`: {e}", path.display())))?;
            let ca = Certificate::from_pem(&pem)
                .map_err(|e| tls_error(format!("`{}`: {e}", path.display())))?;
            builder = builder.add_root_certificate(ca);
        }
        builder.build_rustls().map_err(|e| tls_error(e.to_string()))
    };
    let tls = match config.tls {
        SmtpTls::StartTls => Tls::Required(parameters()?),
        SmtpTls::Implicit => Tls::Wrapper(parameters()?),
        SmtpTls::None => Tls::None,
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.smtp_host)
        .port(config.smtp_port)
        .tls(tls)
        .timeout(Some(CONNECT_TIMEOUT))
        .hello_name(ClientId::Domain(host.to_owned()));
    if let Some(c) = &config.credentials {
        builder = builder.credentials(Credentials::new(
            c.username.clone(),
            c.password.expose().to_owned(),
        ));
    }
    Ok(builder.build())
}

pub(super) fn hint(e: &lettre::transport::smtp::Error) -> String {
    let code = e.status().map(|c| c.to_string()).unwrap_or_default();
    if e.is_timeout() {
        hint_timeout()
    } else if e.is_tls() {
        "check that `alerts.tls` fits the port (\"starttls\" on 587, \"implicit\" on 465) and that the server's certificate is trusted (`alerts.ca_file` for a private certificate authority)".to_owned()
    } else if code == "535" || code == "530" || code == "534" {
        "check the user name and password in the environment variables `alerts.username_env` and `alerts.password_env` name".to_owned()
    } else if e.is_permanent() {
        "the server refused the mail: check `alerts.from` and the recipients, and the server's log"
            .to_owned()
    } else {
        hint_general()
    }
}

pub(super) fn hint_general() -> String {
    "check that `alerts.smtp_host` and `alerts.smtp_port` name a mail server that is up and reachable from this machine".to_owned()
}

pub(super) fn hint_timeout() -> String {
    "check that `alerts.smtp_host` and `alerts.smtp_port` name a mail server that answers from this machine, and that `alerts.tls` fits the port (\"implicit\" on a STARTTLS port waits forever)".to_owned()
}
