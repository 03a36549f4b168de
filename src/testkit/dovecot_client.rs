//! A minimal Dovecot auth protocol client, for tests and the benchmark:
//! does the handshake, then PLAIN requests one at a time, like Postfix.

use std::net::IpAddr;

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UnixStream};

/// One connection, after the handshake: over TCP, or over a UNIX socket
/// (Postfix's usual `smtpd_sasl_path = private/auth`).
pub struct DovecotClient<S = TcpStream> {
    reader: BufReader<S>,
    next_id: u32,
    line: String,
}

/// What the server answered to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Ok {
        user: String,
    },
    Fail {
        line: String,
    },
    Cont {
        line: String,
    },
    /// The server closed the connection (a temporary failure).
    Closed,
}

impl DovecotClient {
    /// Connects over TCP; see [`DovecotClient::handshake`].
    pub async fn connect(address: std::net::SocketAddr) -> std::io::Result<DovecotClient> {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        DovecotClient::handshake(stream).await
    }
}

impl DovecotClient<UnixStream> {
    /// Connects over a UNIX socket; see [`DovecotClient::handshake`].
    pub async fn connect_unix(path: &std::path::Path) -> std::io::Result<DovecotClient<UnixStream>> {
        DovecotClient::handshake(UnixStream::connect(path).await?).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> DovecotClient<S> {
    /// Reads the server handshake up to `DONE`, checking that MECH lines
    /// come before SPID.
    pub async fn handshake(stream: S) -> std::io::Result<DovecotClient<S>> {
        let mut client = DovecotClient { reader: BufReader::new(stream), next_id: 1, line: String::new() };
        client.reader.get_mut().write_all(b"VERSION\t1\t0\nCPID\t4242\n").await?;
        let mut mech_seen = false;
        loop {
            client.line.clear();
            if client.reader.read_line(&mut client.line).await? == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed during handshake"));
            }
            let line = client.line.trim_end();
            if line.starts_with("MECH\t") {
                mech_seen = true;
            } else if line.starts_with("SPID\t") && !mech_seen {
                return Err(std::io::Error::other("SPID before MECH"));
            } else if line == "DONE" {
                return Ok(client);
            }
        }
    }

    /// Sends a raw line (must end in LF) and reads one reply line.
    pub async fn raw(&mut self, bytes: &[u8]) -> std::io::Result<Answer> {
        self.reader.get_mut().write_all(bytes).await?;
        self.read_answer().await
    }

    /// AUTH PLAIN with an initial response, from client address `rip`.
    pub async fn plain(&mut self, user: &str, password: &str, rip: IpAddr) -> std::io::Result<Answer> {
        let id = self.next_id;
        self.next_id += 1;
        let blob = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        let line = format!("AUTH\t{id}\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip={rip}\tresp={blob}\n");
        self.raw(line.as_bytes()).await
    }

    async fn read_answer(&mut self) -> std::io::Result<Answer> {
        self.line.clear();
        if self.reader.read_line(&mut self.line).await? == 0 {
            return Ok(Answer::Closed);
        }
        let line = self.line.trim_end_matches('\n');
        Ok(if let Some(rest) = line.strip_prefix("OK\t") {
            let user = rest.split('\t').find_map(|f| f.strip_prefix("user=")).unwrap_or_default().to_owned();
            Answer::Ok { user }
        } else if line.starts_with("FAIL\t") {
            Answer::Fail { line: line.to_owned() }
        } else {
            Answer::Cont { line: line.to_owned() }
        })
    }
}
