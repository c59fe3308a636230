//! A fake SMTP server for tests, on 127.0.0.1: enough of RFC 5321 for a mail client such as the
//! daemon's (`EHLO`/`HELO`, `STARTTLS`, `AUTH PLAIN` and `AUTH LOGIN`, `MAIL`, `RCPT`, `DATA`,
//! `RSET`, `NOOP`, `QUIT`), recording every message it accepts with its envelope and its decoded
//! subject and body for assertions.
//!
//! * [`SmtpOptions::tls`] chooses plain TCP, `STARTTLS`, or TLS from the first byte. The certificate
//!   is made when the server starts, signed by a throw-away certificate authority whose PEM
//!   [`FakeSmtp::ca_pem`] gives (write it to a file for the client's `ca_file`).
//! * [`SmtpOptions::login`] requires `AUTH` with that user name and password before `MAIL`.
//! * [`SmtpOptions::silent`] accepts connections and never says a word: a dead mail server, to
//!   show that a client never waits on it.
//! * [`FakeSmtp::fail_next`] answers the next messages' `DATA` with a temporary failure (451).
//!
//! # Theory of operation
//!
//! One acceptor thread hands each connection to a thread of its own, which speaks SMTP line by
//! line over plain TCP or a rustls server stream. Everything the test reads sits in one [`Mutex`]
//! with a [`Condvar`] that is notified on every change, so the `wait_for_*` methods wake as soon as
//! what they wait for happens. Dropping the [`FakeSmtp`] stops the acceptor and shuts every open
//! connection down, silent ones included.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

/// How a [`FakeSmtp`] secures its connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ServerTls {
    /// Plain TCP only.
    #[default]
    None,
    /// Plain TCP, upgraded by `STARTTLS` (offered in the `EHLO` answer).
    StartTls,
    /// TLS from the first byte (SMTPS, port 465 style).
    Implicit,
}

/// How a [`FakeSmtp`] is set up.
#[derive(Clone, Debug, Default)]
pub struct SmtpOptions {
    /// Plain, STARTTLS or implicit TLS.
    pub tls: ServerTls,
    /// A user name and password that `AUTH` must give before `MAIL`; `None` needs no login.
    pub login: Option<(String, String)>,
    /// Accept connections and never answer.
    pub silent: bool,
}

/// One message the server accepted.
#[derive(Clone, Debug)]
pub struct Received {
    /// The envelope sender (`MAIL FROM`), without the angle brackets.
    pub mail_from: String,
    /// The envelope recipients (`RCPT TO`), in order.
    pub rcpt_to: Vec<String>,
    /// The user name the client signed in as, if it did.
    pub login: Option<String>,
    /// Whether the message came over TLS.
    pub tls: bool,
    /// The headers, unfolded, in order.
    pub headers: Vec<(String, String)>,
    /// The `Subject` header, decoded (RFC 2047 encoded words).
    pub subject: String,
    /// The body, decoded (`quoted-printable` or `base64`), with `\n` line ends.
    pub body: String,
    /// The message as the client sent it (dot-stuffing undone).
    pub data: String,
}

impl Received {
    /// The first header called `name` (any case), unfolded and not decoded.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    messages: Vec<Received>,
    connections: usize,
    failed_logins: usize,
    fail_next: usize,
    refused: usize,
    /// A handle on every connection, to shut it down when the server is dropped.
    open: Vec<TcpStream>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    stop: AtomicBool,
    options: SmtpOptions,
    tls: Option<Arc<ServerConfig>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.lock());
        self.changed.notify_all();
    }
}

/// A fake SMTP server on 127.0.0.1; stops when dropped.
pub struct FakeSmtp {
    addr: SocketAddr,
    shared: Arc<Shared>,
    ca_pem: Option<String>,
    acceptor: Option<JoinHandle<()>>,
}

impl FakeSmtp {
    /// A plain server that accepts any message without a login.
    pub fn plain() -> FakeSmtp {
        FakeSmtp::start(SmtpOptions::default())
    }

    /// A server that accepts connections and never answers.
    pub fn silent() -> FakeSmtp {
        FakeSmtp::start(SmtpOptions {
            silent: true,
            ..SmtpOptions::default()
        })
    }

    /// Starts a server on a free port of 127.0.0.1.
    pub fn start(options: SmtpOptions) -> FakeSmtp {
        let (tls, ca_pem) = match options.tls {
            ServerTls::None => (None, None),
            ServerTls::StartTls | ServerTls::Implicit => {
                let (config, ca) = tls_config();
                (Some(config), Some(ca))
            }
        };
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            options,
            tls,
        });
        let acceptor = {
            let shared = shared.clone();
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if shared.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let Ok(handle) = conn.try_clone() else {
                        continue;
                    };
                    shared.update(|s| {
                        s.connections += 1;
                        s.open.push(handle);
                    });
                    let shared = shared.clone();
                    std::thread::spawn(move || serve(conn, &shared));
                }
            })
        };
        FakeSmtp {
            addr,
            shared,
            ca_pem,
            acceptor: Some(acceptor),
        }
    }

    /// The port it listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The certificate authority that signed the server's certificate, as PEM; `None` without TLS.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// The messages accepted so far.
    pub fn messages(&self) -> Vec<Received> {
        self.shared.lock().messages.clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.lock().connections
    }

    /// `AUTH` attempts refused so far.
    pub fn failed_logins(&self) -> usize {
        self.shared.lock().failed_logins
    }

    /// Messages refused on purpose (see [`FakeSmtp::fail_next`]) so far.
    pub fn refused(&self) -> usize {
        self.shared.lock().refused
    }

    /// Answers the `DATA` of the next `n` messages with `451` (try again later).
    pub fn fail_next(&self, n: usize) {
        self.shared.update(|s| s.fail_next = n);
    }

    /// Waits until at least `n` messages were accepted and returns them all; panics after
    /// `timeout` with what it has.
    pub fn wait_for_messages(&self, n: usize, timeout: Duration) -> Vec<Received> {
        self.wait(
            timeout,
            |s| s.messages.len() >= n,
            |s| {
                format!(
                    "{n} message(s), got {}: {:#?}",
                    s.messages.len(),
                    s.messages.iter().map(|m| &m.subject).collect::<Vec<_>>()
                )
            },
        );
        self.messages()
    }

    /// Waits until at least `n` connections were accepted; panics after `timeout`.
    pub fn wait_for_connections(&self, n: usize, timeout: Duration) {
        self.wait(
            timeout,
            |s| s.connections >= n,
            |s| format!("{n} connection(s), got {}", s.connections),
        );
    }

    fn wait(
        &self,
        timeout: Duration,
        done: impl Fn(&State) -> bool,
        what: impl Fn(&State) -> String,
    ) {
        let end = Instant::now() + timeout;
        let mut state = self.shared.lock();
        while !done(&state) {
            let left = end.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "timed out waiting for {}", what(&state));
            state = self
                .shared
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl Drop for FakeSmtp {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor, which then sees `stop`.
        let _ = TcpStream::connect(self.addr);
        for conn in self.shared.lock().open.drain(..) {
            let _ = conn.shutdown(Shutdown::Both);
        }
        self.shared.changed.notify_all();
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// A server certificate for 127.0.0.1 and localhost, signed by a new certificate authority;
/// returns the server's TLS configuration and the authority's PEM.
fn tls_config() -> (Arc<ServerConfig>, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "sgevents fake SMTP test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let key = KeyPair::generate().expect("server key");
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("server params");
    params
        .distinguished_name
        .push(DnType::CommonName, "fake SMTP server");
    let cert = params
        .signed_by(&key, &ca, &ca_key)
        .expect("server certificate");
    let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone()];
    let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .expect("server TLS configuration");
    (Arc::new(config), ca.pem())
}

/// A connection, before or after TLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl Conn {
    fn upgrade(self, config: &Arc<ServerConfig>) -> io::Result<Conn> {
        match self {
            Conn::Plain(tcp) => {
                let server = ServerConnection::new(config.clone()).map_err(io::Error::other)?;
                let mut tls = StreamOwned::new(server, tcp);
                // Finish the handshake now, so that a failure shows here and not in a read.
                while tls.conn.is_handshaking() {
                    tls.conn.complete_io(&mut tls.sock)?;
                }
                Ok(Conn::Tls(Box::new(tls)))
            }
            tls => Ok(tls),
        }
    }

    fn is_tls(&self) -> bool {
        matches!(self, Conn::Tls(_))
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// Reads CRLF-terminated lines from a [`Conn`] that may change under it (STARTTLS).
struct Lines {
    buf: Vec<u8>,
}

impl Lines {
    /// The next line without its line end; `None` at the end of the stream.
    fn next(&mut self, conn: &mut Conn) -> io::Result<Option<String>> {
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(Some(String::from_utf8_lossy(&line).into_owned()));
            }
            let mut chunk = [0u8; 4096];
            let n = conn.read(&mut chunk)?;
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// The envelope being built.
#[derive(Default)]
struct Transaction {
    from: Option<String>,
    to: Vec<String>,
}

fn serve(tcp: TcpStream, shared: &Shared) {
    if shared.options.silent {
        // Hold the connection open without a word until the server is dropped (which shuts it
        // down, ending this read) or the client gives up.
        let mut tcp = tcp;
        let mut sink = [0u8; 1024];
        while !shared.stop.load(Ordering::SeqCst) {
            match tcp.read(&mut sink) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
        return;
    }
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(120)));
    let mut conn = Conn::Plain(tcp);
    if shared.options.tls == ServerTls::Implicit {
        let config = shared.tls.as_ref().expect("a TLS configuration");
        conn = match conn.upgrade(config) {
            Ok(c) => c,
            Err(_) => return,
        };
    }
    let _ = session(conn, shared);
}

fn session(mut conn: Conn, shared: &Shared) -> io::Result<()> {
    let mut lines = Lines { buf: Vec::new() };
    let mut login: Option<String> = None;
    let mut greeted = false;
    let mut txn = Transaction::default();
    reply(&mut conn, "220 fake-smtp ESMTP ready")?;
    while let Some(line) = lines.next(&mut conn)? {
        let upper = line.to_ascii_uppercase();
        let verb = upper.split_whitespace().next().unwrap_or("");
        match verb {
            "EHLO" => {
                greeted = true;
                txn = Transaction::default();
                let mut caps = vec!["fake-smtp".to_owned(), "8BITMIME".to_owned()];
                if shared.options.tls == ServerTls::StartTls && !conn.is_tls() {
                    caps.push("STARTTLS".to_owned());
                }
                if shared.options.login.is_some() {
                    caps.push("AUTH PLAIN LOGIN".to_owned());
                }
                let last = caps.len() - 1;
                let text: Vec<String> = caps
                    .iter()
                    .enumerate()
                    .map(|(i, c)| format!("250{}{c}", if i == last { ' ' } else { '-' }))
                    .collect();
                reply(&mut conn, &text.join("\r\n"))?;
            }
            "HELO" => {
                greeted = true;
                txn = Transaction::default();
                reply(&mut conn, "250 fake-smtp")?;
            }
            "STARTTLS" => {
                let Some(config) = shared.tls.as_ref().filter(|_| !conn.is_tls()) else {
                    reply(&mut conn, "502 5.5.1 STARTTLS not offered")?;
                    continue;
                };
                reply(&mut conn, "220 2.0.0 ready to start TLS")?;
                conn = conn.upgrade(config)?;
                // RFC 3207: forget everything learned before TLS.
                lines.buf.clear();
                greeted = false;
                login = None;
                txn = Transaction::default();
            }
            "AUTH" => {
                let Some((user, pass)) = &shared.options.login else {
                    reply(&mut conn, "502 5.5.1 AUTH not offered")?;
                    continue;
                };
                let words: Vec<&str> = line.split_whitespace().collect();
                let mechanism = words.get(1).map(|m| m.to_ascii_uppercase());
                let given = match mechanism.as_deref() {
                    Some("PLAIN") => {
                        let response = match words.get(2) {
                            Some(r) => r.to_string(),
                            None => {
                                reply(&mut conn, "334 ")?;
                                lines.next(&mut conn)?.unwrap_or_default()
                            }
                        };
                        let decoded = base64_decode(&response).unwrap_or_default();
                        let parts: Vec<&[u8]> = decoded.split(|&b| b == 0).collect();
                        match parts.as_slice() {
                            [_, u, p] => Some((
                                String::from_utf8_lossy(u).into_owned(),
                                String::from_utf8_lossy(p).into_owned(),
                            )),
                            _ => None,
                        }
                    }
                    Some("LOGIN") => {
                        let u = match words.get(2) {
                            Some(u) => u.to_string(),
                            None => {
                                reply(&mut conn, "334 VXNlcm5hbWU6")?;
                                lines.next(&mut conn)?.unwrap_or_default()
                            }
                        };
                        reply(&mut conn, "334 UGFzc3dvcmQ6")?;
                        let p = lines.next(&mut conn)?.unwrap_or_default();
                        let text = |s: &str| {
                            String::from_utf8_lossy(&base64_decode(s).unwrap_or_default())
                                .into_owned()
                        };
                        Some((text(&u), text(&p)))
                    }
                    _ => {
                        reply(&mut conn, "504 5.5.4 unknown mechanism")?;
                        continue;
                    }
                };
                match given {
                    Some((u, p)) if &u == user && &p == pass => {
                        login = Some(u);
                        reply(&mut conn, "235 2.7.0 authentication succeeded")?;
                    }
                    _ => {
                        shared.update(|s| s.failed_logins += 1);
                        reply(&mut conn, "535 5.7.8 authentication credentials invalid")?;
                    }
                }
            }
            "MAIL" => {
                if !greeted {
                    reply(&mut conn, "503 5.5.1 say EHLO first")?;
                } else if shared.options.login.is_some() && login.is_none() {
                    reply(&mut conn, "530 5.7.0 authentication required")?;
                } else {
                    txn = Transaction {
                        from: Some(address(&line)),
                        to: Vec::new(),
                    };
                    reply(&mut conn, "250 2.1.0 sender ok")?;
                }
            }
            "RCPT" => {
                if txn.from.is_none() {
                    reply(&mut conn, "503 5.5.1 need MAIL first")?;
                } else {
                    txn.to.push(address(&line));
                    reply(&mut conn, "250 2.1.5 recipient ok")?;
                }
            }
            "DATA" => {
                if txn.to.is_empty() {
                    reply(&mut conn, "503 5.5.1 need RCPT first")?;
                    continue;
                }
                reply(&mut conn, "354 end data with <CR><LF>.<CR><LF>")?;
                let mut data = String::new();
                loop {
                    let Some(l) = lines.next(&mut conn)? else {
                        return Ok(());
                    };
                    if l == "." {
                        break;
                    }
                    data.push_str(l.strip_prefix('.').unwrap_or(&l));
                    data.push('\n');
                }
                let txn = std::mem::take(&mut txn);
                let mut fail = false;
                shared.update(|s| {
                    if s.fail_next > 0 {
                        s.fail_next -= 1;
                        s.refused += 1;
                        fail = true;
                    }
                });
                if fail {
                    reply(&mut conn, "451 4.3.0 try again later")?;
                    continue;
                }
                let received = parse_message(
                    txn.from.unwrap_or_default(),
                    txn.to,
                    login.clone(),
                    conn.is_tls(),
                    data,
                );
                shared.update(|s| s.messages.push(received));
                reply(&mut conn, "250 2.0.0 queued")?;
            }
            "RSET" => {
                txn = Transaction::default();
                reply(&mut conn, "250 2.0.0 ok")?;
            }
            "NOOP" => reply(&mut conn, "250 2.0.0 ok")?,
            "QUIT" => {
                reply(&mut conn, "221 2.0.0 bye")?;
                return Ok(());
            }
            _ => reply(&mut conn, "502 5.5.2 command not recognized")?,
        }
    }
    Ok(())
}

fn reply(conn: &mut Conn, text: &str) -> io::Result<()> {
    conn.write_all(format!("{text}\r\n").as_bytes())?;
    conn.flush()
}

/// The address in `MAIL FROM:<a@b> SIZE=1` or `RCPT TO:<a@b>`.
fn address(line: &str) -> String {
    match (line.find('<'), line.find('>')) {
        (Some(start), Some(end)) if start < end => line[start + 1..end].to_owned(),
        _ => line
            .split_once(':')
            .map(|(_, a)| a.trim().to_owned())
            .unwrap_or_default(),
    }
}

fn parse_message(
    mail_from: String,
    rcpt_to: Vec<String>,
    login: Option<String>,
    tls: bool,
    data: String,
) -> Received {
    let (head, body) = data.split_once("\n\n").unwrap_or((data.as_str(), ""));
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = headers.last_mut() {
                // Unfolding removes the line break only, keeping the whitespace.
                value.push_str(line);
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let subject = decode_words(&get("Subject"));
    let body = match get("Content-Transfer-Encoding")
        .to_ascii_lowercase()
        .as_str()
    {
        "quoted-printable" => decode_quoted_printable(body),
        "base64" => String::from_utf8_lossy(
            &base64_decode(&body.split_whitespace().collect::<String>()).unwrap_or_default(),
        )
        .replace("\r\n", "\n"),
        _ => body.to_owned(),
    };
    Received {
        mail_from,
        rcpt_to,
        login,
        tls,
        headers,
        subject,
        body,
        data,
    }
}

/// Decodes RFC 2047 encoded words (`=?utf-8?b?...?=`, `=?utf-8?q?...?=`); whitespace between two
/// encoded words is dropped, as the RFC says.
fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    let mut last_was_word = false;
    while !rest.is_empty() {
        let Some(start) = rest.find("=?") else {
            out.push_str(rest);
            break;
        };
        let (before, word) = rest.split_at(start);
        let decoded = word[2..].splitn(3, '?').collect::<Vec<_>>();
        let parsed = match decoded.as_slice() {
            [charset, encoding, tail] => tail.find("?=").map(|end| {
                let text = &tail[..end];
                let bytes = match encoding.to_ascii_lowercase().as_str() {
                    "b" => base64_decode(text).unwrap_or_default(),
                    _ => decode_q(text),
                };
                let used = 2 + charset.len() + 1 + encoding.len() + 1 + end + 2;
                (String::from_utf8_lossy(&bytes).into_owned(), used)
            }),
            _ => None,
        };
        match parsed {
            Some((text, used)) => {
                if !(last_was_word && before.trim().is_empty()) {
                    out.push_str(before);
                }
                out.push_str(&text);
                rest = &word[used..];
                last_was_word = true;
            }
            None => {
                out.push_str(before);
                out.push_str("=?");
                rest = &word[2..];
                last_was_word = false;
            }
        }
    }
    out
}

fn decode_q(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'_' => out.push(b' '),
            b'=' => match hex_byte(bytes, i + 1) {
                Some(b) => {
                    out.push(b);
                    i += 2;
                }
                None => out.push(b'='),
            },
            b => out.push(b),
        }
        i += 1;
    }
    out
}

fn decode_quoted_printable(body: &str) -> String {
    let mut bytes = Vec::new();
    for line in body.lines() {
        let (line, soft) = match line.strip_suffix('=') {
            Some(l) => (l, true),
            None => (line, false),
        };
        let raw = line.as_bytes();
        let mut i = 0;
        while i < raw.len() {
            if raw[i] == b'=' {
                if let Some(b) = hex_byte(raw, i + 1) {
                    bytes.push(b);
                    i += 3;
                    continue;
                }
            }
            bytes.push(raw[i]);
            i += 1;
        }
        if !soft {
            bytes.push(b'\n');
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The byte written as two hex digits at `bytes[at..at + 2]`, if they are there.
fn hex_byte(bytes: &[u8], at: usize) -> Option<u8> {
    let digits = std::str::from_utf8(bytes.get(at..at + 2)?).ok()?;
    u8::from_str_radix(digits, 16).ok()
}

/// Standard base64 with or without padding; `None` on a character outside the alphabet.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in text.trim().bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoders() {
        assert_eq!(
            base64_decode("aGVsbG8gd29ybGQ=").as_deref(),
            Some(&b"hello world"[..])
        );
        assert_eq!(
            base64_decode("AHVzZXIAcGFzcw==").as_deref(),
            Some(&b"\0user\0pass"[..])
        );
        assert_eq!(
            decode_words("=?utf-8?b?w6l0w6k=?= =?utf-8?q?_and_more?= plain"),
            "été and more plain"
        );
        assert_eq!(decode_words("no words here"), "no words here");
        assert_eq!(
            decode_quoted_printable("a long line that was wrapp=\ned here =C3=A9\nnext\n"),
            "a long line that was wrapped here é\nnext\n"
        );
        assert_eq!(
            address("MAIL FROM:<a@b.example> BODY=8BITMIME"),
            "a@b.example"
        );
    }
}
