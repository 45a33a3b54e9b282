//! A session with the server: connect (TCP, TLS with the pinned fingerprint), handshake,
//! authentication, and typed calls.

use std::time::Duration;

use ft_protocol::{
    codec::{self, MessageReader, MessageWriter},
    Authenticate, Authenticated, CatalogEntry, Delete, Deleted, DirMade, ErrorResponse, Failed,
    FileIntent, FilePlan, Hello, InfoRequest, List, MakeDir, Prepare, ProtocolError, Request,
    Response, ServerInfo, Welcome, CAPABILITY_ZSTD, PROTOCOL_VERSION,
};
use futures::{SinkExt, StreamExt};
use tokio::{
    io::{ReadHalf, WriteHalf},
    net::TcpStream,
};

use crate::{
    access::Access,
    address::ServerAddress,
    error::ClientError,
    tls::{self, TlsError, TlsStream},
};

/// Time allowed for the server to answer a request that needs no disk work.
pub(crate) const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// Time allowed for a `Prepare`: the server re-reads the partial uploads it offers to resume,
/// which can be gigabytes.
const PREPARE_TIMEOUT: Duration = Duration::from_secs(600);

/// After a failed write, how long to keep reading for the server's explanation.
pub(crate) const SEND_FAILURE_GRACE: Duration = Duration::from_secs(5);

/// Messages from the server.
pub(crate) type Reader = MessageReader<ReadHalf<TlsStream>, Response>;

/// Messages to the server.
pub(crate) type Writer = MessageWriter<WriteHalf<TlsStream>, Request>;

/// An open session with a server.
#[derive(Debug)]
pub struct Client {
    /// Messages from the server.
    pub(crate) reader: Reader,
    /// Messages to the server.
    pub(crate) writer: Writer,
    welcome: Welcome,
    authenticated: Authenticated,
    fingerprint: ft_protocol::Fingerprint,
}

impl Client {
    /// Resolves `address`, connects to the first address that answers, checks the server's
    /// certificate against the fingerprint `access` expects (recording it on first use),
    /// then performs the version handshake and logs in.
    pub async fn connect(address: &ServerAddress, access: &Access) -> Result<Self, ClientError> {
        let expectation = access.expectation(address)?;
        let timeout = access.connect_timeout();
        let tcp = open_tcp(address, timeout).await?;
        let _ = tcp.set_nodelay(true);
        let handshake = tls::connect(tcp, &address.host, expectation.fingerprint);
        let (stream, fingerprint) = match tokio::time::timeout(timeout, handshake).await {
            Err(_) => return Err(ClientError::Timeout(timeout, "in the TLS handshake")),
            Ok(Ok((stream, presented))) => {
                if expectation.fingerprint.is_none() {
                    access.trusted_first_time(address, presented)?;
                }
                (stream, presented)
            }
            Ok(Err(TlsError::Mismatch {
                expected,
                presented,
            })) => {
                return Err(ClientError::CertificateChanged(Box::new(
                    crate::error::CertificateChange {
                        address: address.clone(),
                        expected,
                        presented,
                        pinned_by: expectation.pinned_by,
                        known_servers: access.known_servers_shown(),
                    },
                )))
            }
            Ok(Err(TlsError::Handshake(source))) => {
                return Err(ClientError::Tls {
                    address: address.clone(),
                    source,
                })
            }
        };
        let (read_half, write_half) = tokio::io::split(stream);
        let mut client = Self {
            reader: codec::message_reader(read_half),
            writer: codec::message_writer(write_half),
            welcome: Welcome {
                protocol_version: 0,
                software: String::new(),
                capabilities: Vec::new(),
                max_file_size: 0,
            },
            authenticated: Authenticated {
                user: String::new(),
                role: ft_protocol::Role::Read,
            },
            fingerprint,
        };
        client
            .writer
            .send(Request::Hello(Hello {
                protocol_version: PROTOCOL_VERSION,
                software: format!("ftc {}", env!("CARGO_PKG_VERSION")),
                // Asked for always; used only when a send wants compression.
                capabilities: vec![CAPABILITY_ZSTD.to_owned()],
            }))
            .await?;
        match client.receive(timeout, "waiting for the handshake").await? {
            Response::Welcome(welcome) if welcome.protocol_version == PROTOCOL_VERSION => {
                client.welcome = welcome;
                client.authenticate(access).await?;
                Ok(client)
            }
            Response::Welcome(welcome) => Err(ClientError::Refused {
                code: ft_protocol::ErrorCode::VersionMismatch,
                message: format!(
                    "server speaks protocol version {}, this client speaks {PROTOCOL_VERSION}",
                    welcome.protocol_version
                ),
            }),
            other => Err(unexpected(other)),
        }
    }

    /// Logs in with `access`'s credentials (or anonymously).
    async fn authenticate(&mut self, access: &Access) -> Result<(), ClientError> {
        self.writer
            .send(Request::Authenticate(Authenticate {
                credentials: access.credentials.clone(),
            }))
            .await?;
        // Longer than the handshake: the server answers failed logins slowly on purpose.
        match self.receive(REPLY_TIMEOUT, "logging in").await? {
            Response::Authenticated(authenticated) => {
                self.authenticated = authenticated;
                Ok(())
            }
            other => Err(unexpected(other)),
        }
    }

    /// The fingerprint of the certificate the server presented.
    pub fn fingerprint(&self) -> ft_protocol::Fingerprint {
        self.fingerprint
    }

    /// Who the server let the client in as, and with which role.
    pub fn authenticated(&self) -> &Authenticated {
        &self.authenticated
    }

    /// Whether the server accepts zstd-compressed chunks.
    pub fn accepts_zstd(&self) -> bool {
        self.welcome
            .capabilities
            .iter()
            .any(|capability| capability == CAPABILITY_ZSTD)
    }

    /// The server's handshake answer: its software, version and limits.
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// Fetches the catalog, sorted by stored name; with a pattern, only matching names
    /// (`*`, `?`, `[...]`, case-sensitive).
    pub async fn list(
        &mut self,
        pattern: Option<String>,
    ) -> Result<Vec<CatalogEntry>, ClientError> {
        self.writer.send(Request::List(List { pattern })).await?;
        let mut entries = Vec::new();
        loop {
            match self
                .receive(REPLY_TIMEOUT, "waiting for the listing")
                .await?
            {
                Response::Listing(page) => {
                    entries.extend(page.entries);
                    if page.last {
                        return Ok(entries);
                    }
                }
                Response::Failed(Failed { code, message }) => {
                    return Err(ClientError::Failed { code, message })
                }
                other => return Err(unexpected(other)),
            }
        }
    }

    /// Deletes a stored file; a name that does not exist is a [`ClientError::Failed`].
    pub async fn delete(&mut self, name: &str) -> Result<Deleted, ClientError> {
        let request = Request::Delete(Delete {
            name: name.to_owned(),
        });
        self.writer.send(request).await?;
        match self
            .receive(REPLY_TIMEOUT, "waiting for the deletion")
            .await?
        {
            Response::Deleted(deleted) => Ok(deleted),
            Response::Failed(Failed { code, message }) => {
                Err(ClientError::Failed { code, message })
            }
            other => Err(unexpected(other)),
        }
    }

    /// The server's version, limits and usage.
    pub async fn info(&mut self) -> Result<ServerInfo, ClientError> {
        self.writer.send(Request::Info(InfoRequest {})).await?;
        match self
            .receive(REPLY_TIMEOUT, "waiting for the server information")
            .await?
        {
            Response::ServerInfo(info) => Ok(info),
            Response::Failed(Failed { code, message }) => {
                Err(ClientError::Failed { code, message })
            }
            other => Err(unexpected(other)),
        }
    }

    /// Creates a folder (and its parents) on the server.
    pub async fn make_dir(&mut self, name: &str) -> Result<DirMade, ClientError> {
        let request = Request::MakeDir(MakeDir {
            name: name.to_owned(),
        });
        self.writer.send(request).await?;
        match self.receive(REPLY_TIMEOUT, "waiting for a folder").await? {
            Response::DirMade(made) => Ok(made),
            Response::Failed(Failed { code, message }) => {
                Err(ClientError::Failed { code, message })
            }
            other => Err(unexpected(other)),
        }
    }

    /// Announces a round of uploads, page by page (`Prepare`, then `Prepare` with `append`),
    /// and returns each page's plans, in order. At most [`ft_protocol::MAX_PREPARE_FILES`]
    /// intents per page and [`ft_protocol::MAX_ANNOUNCED_FILES`] per round; a new round
    /// lets the previous one's announcements lapse. Pages leave without waiting for the
    /// previous answer, while the answers are read: a round of eight pages costs one round
    /// trip, not eight. After an error the connection may hold half a page: drop it.
    pub async fn prepare_round(
        &mut self,
        pages: Vec<Vec<FileIntent>>,
        append: bool,
    ) -> Result<Vec<Vec<FilePlan>>, ClientError> {
        let expected: Vec<usize> = pages.iter().map(Vec::len).collect();
        let writer = &mut self.writer;
        let sending = async move {
            for (number, files) in pages.into_iter().enumerate() {
                let append = append || number > 0;
                writer
                    .send(Request::Prepare(Prepare { files, append }))
                    .await?;
            }
            Ok::<(), ClientError>(())
        };
        let reader = &mut self.reader;
        let receiving = async move {
            let mut plans = Vec::with_capacity(expected.len());
            for expected in expected {
                let answer = tokio::time::timeout(PREPARE_TIMEOUT, reader.next())
                    .await
                    .map_err(|_| {
                        ClientError::Timeout(PREPARE_TIMEOUT, "waiting for the upload plan")
                    });
                match interpret(answer?)? {
                    Response::Prepared(prepared) if prepared.plans.len() == expected => {
                        plans.push(prepared.plans)
                    }
                    Response::Prepared(prepared) => {
                        return Err(ClientError::Unexpected(format!(
                            "{} plans for {expected} files",
                            prepared.plans.len()
                        )))
                    }
                    other => return Err(unexpected(other)),
                }
            }
            Ok(plans)
        };
        tokio::pin!(sending, receiving);
        tokio::select! {
            // Answers can only complete once every page is out.
            received = &mut receiving => received,
            sent = &mut sending => match sent {
                Ok(()) => receiving.await,
                // The server may have said why it stopped reading: give its message a moment.
                Err(err) => match tokio::time::timeout(SEND_FAILURE_GRACE, receiving).await {
                    Ok(Err(explained)) => Err(explained),
                    _ => Err(err),
                },
            },
        }
    }

    /// The next response; a connection-level error from the server becomes `Refused`.
    pub(crate) async fn receive(
        &mut self,
        timeout: Duration,
        doing: &'static str,
    ) -> Result<Response, ClientError> {
        match tokio::time::timeout(timeout, self.reader.next()).await {
            Err(_) => Err(ClientError::Timeout(timeout, doing)),
            Ok(item) => interpret(item),
        }
    }
}

/// Turns what the reader yielded into a response; a hang-up, a broken stream and a
/// connection-level error from the server all become errors.
pub(crate) fn interpret(
    item: Option<Result<Response, ProtocolError>>,
) -> Result<Response, ClientError> {
    match item {
        None => Err(ClientError::ConnectionClosed),
        Some(Err(err)) => Err(err.into()),
        Some(Ok(Response::Error(ErrorResponse {
            id: None,
            code,
            message,
        }))) => Err(ClientError::Refused { code, message }),
        Some(Ok(response)) => Ok(response),
    }
}

/// Describes a response that the protocol does not allow here.
pub(crate) fn unexpected(response: Response) -> ClientError {
    let what = match response {
        Response::Welcome(_) => "Welcome".to_owned(),
        Response::Ack(ack) => format!("Ack for file {}", ack.id),
        Response::Error(err) => format!("Error {}: {}", err.code, err.message),
        Response::Listing(_) => "Listing".to_owned(),
        Response::Prepared(_) => "Prepared".to_owned(),
        Response::Sending(sending) => format!("Sending {}", sending.name),
        Response::Data(_) => "Data".to_owned(),
        Response::Deleted(deleted) => format!("Deleted {}", deleted.name),
        Response::ServerInfo(_) => "ServerInfo".to_owned(),
        Response::DirMade(made) => format!("DirMade {}", made.name),
        Response::Failed(failed) => format!("Failed {}: {}", failed.code, failed.message),
        Response::Authenticated(authenticated) => format!("Authenticated {}", authenticated.user),
        other => relay_message_name(&other).to_owned(),
    };
    ClientError::Unexpected(what)
}

/// The name of a relay message, for an "unexpected" error.
fn relay_message_name(response: &Response) -> &'static str {
    match response {
        Response::Users(_) => "Users",
        Response::Listening(_) => "Listening",
        Response::Presence(_) => "Presence",
        Response::Offered(_) => "Offered",
        Response::OfferAnswers(_) => "OfferAnswers",
        Response::RelayFileStart(_) => "RelayFileStart",
        Response::RelayData(_) => "RelayData",
        Response::RelayFileEnd(_) => "RelayFileEnd",
        Response::Delivered(_) => "Delivered",
        Response::OfferCancelled(_) => "OfferCancelled",
        Response::OfferClosed(_) => "OfferClosed",
        _ => "a message",
    }
}

/// The fingerprint of the certificate `address` presents, learned with a TLS handshake and
/// nothing else: no Hello, no login, so no credentials go to a server not yet trusted (for
/// asking the user whether to trust it).
pub async fn probe_fingerprint(
    address: &ServerAddress,
    timeout: Duration,
) -> Result<ft_protocol::Fingerprint, ClientError> {
    let tcp = open_tcp(address, timeout).await?;
    let handshake = tls::connect(tcp, &address.host, None);
    match tokio::time::timeout(timeout, handshake).await {
        Err(_) => Err(ClientError::Timeout(timeout, "in the TLS handshake")),
        Ok(Ok((_, presented))) => Ok(presented),
        Ok(Err(TlsError::Handshake(source))) => Err(ClientError::Tls {
            address: address.clone(),
            source,
        }),
        // Nothing was expected, so nothing can mismatch; say so if it ever does.
        Ok(Err(TlsError::Mismatch { .. })) => Err(ClientError::Tls {
            address: address.clone(),
            source: std::io::Error::other("a certificate mismatch without a pin"),
        }),
    }
}

async fn open_tcp(address: &ServerAddress, timeout: Duration) -> Result<TcpStream, ClientError> {
    let candidates = tokio::net::lookup_host((address.host.as_str(), address.port))
        .await
        .map_err(|source| ClientError::Resolve {
            address: address.clone(),
            source,
        })?;
    let mut last_error = std::io::Error::new(
        std::io::ErrorKind::NotFound,
        "the name resolved to no address",
    );
    for candidate in candidates {
        match tokio::time::timeout(timeout, TcpStream::connect(candidate)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(err)) => last_error = err,
            Err(_) => {
                last_error = std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {timeout:?}"),
                )
            }
        }
    }
    Err(ClientError::Connect {
        address: address.clone(),
        source: last_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ft_protocol::{FilePlan, Hash, Prepared};

    /// A stand-in server that welcomes the client, then reads two `Prepare` pages before it
    /// answers either: a client waiting for the first answer before sending the second page
    /// would wait forever. Returns each page's size and `append` flag.
    async fn two_pages_then_answers(stand_in: crate::stand_in::StandIn) -> Vec<(usize, bool)> {
        let (mut requests, mut responses) = stand_in.accept().await;
        let mut pages = Vec::new();
        for _ in 0..2 {
            let Some(Ok(Request::Prepare(prepare))) = requests.next().await else {
                panic!("expected Prepare");
            };
            pages.push((prepare.files.len(), prepare.append));
        }
        for &(files, _) in &pages {
            let plans = vec![FilePlan::Fresh; files];
            responses
                .send(Response::Prepared(Prepared { plans }))
                .await
                .unwrap();
        }
        pages
    }

    #[tokio::test]
    async fn a_rounds_pages_leave_before_their_answers() {
        let stand_in = crate::stand_in::StandIn::bind().await;
        let (address, access) = (stand_in.address.clone(), stand_in.access.clone());
        let server = tokio::spawn(two_pages_then_answers(stand_in));
        let intent = |n: usize| FileIntent::new(format!("f{n}"), 1, Hash([n as u8; 32]));
        let pages = vec![(0..3).map(intent).collect(), (3..5).map(intent).collect()];
        let mut client = Client::connect(&address, &access).await.unwrap();
        let plans =
            tokio::time::timeout(Duration::from_secs(10), client.prepare_round(pages, false))
                .await
                .expect("the second page was held back until the first was answered")
                .unwrap();
        assert_eq!(plans.iter().map(Vec::len).collect::<Vec<_>>(), [3, 2]);
        assert_eq!(server.await.unwrap(), [(3, false), (2, true)]);
    }
}
