//! A hand-driven protocol client for tests of hostile or broken behaviour: TLS pinned to the
//! server's registered certificate, then whatever messages (or bytes) the test sends.

use std::{net::SocketAddr, time::Duration};

use ft_client::tls::TlsStream;
use ft_protocol::{
    codec::{self, MessageReader, MessageWriter},
    Authenticate, Credentials, Hello, Request, Response, PROTOCOL_VERSION,
};
use futures::{SinkExt, StreamExt};
use tokio::{
    io::{ReadHalf, WriteHalf},
    net::TcpStream,
};

use crate::registry;

/// Bound on every raw read, so a test never hangs on a silent server.
pub const RAW_READ_TIMEOUT: Duration = Duration::from_secs(20);

/// A protocol client that sends what it is told, in whatever order.
pub struct RawClient {
    pub reader: MessageReader<ReadHalf<TlsStream>, Response>,
    pub writer: MessageWriter<WriteHalf<TlsStream>, Request>,
}

impl RawClient {
    /// A TLS connection to the registered server at `addr`, its certificate checked against
    /// the registered fingerprint; nothing sent inside it yet (for tests of raw bytes).
    pub async fn tls(addr: SocketAddr) -> TlsStream {
        let login = registry::registered(&addr.to_string())
            .unwrap_or_else(|| panic!("no server registered at {addr}"));
        let tcp = tokio::time::timeout(RAW_READ_TIMEOUT, TcpStream::connect(addr))
            .await
            .unwrap_or_else(|_| panic!("connecting to {addr} timed out"))
            .unwrap_or_else(|err| panic!("cannot connect to {addr}: {err}"));
        let _ = tcp.set_nodelay(true);
        let host = addr.ip().to_string();
        let handshake = ft_client::tls::connect(tcp, &host, Some(login.fingerprint));
        let (stream, _) = tokio::time::timeout(RAW_READ_TIMEOUT, handshake)
            .await
            .unwrap_or_else(|_| panic!("the TLS handshake with {addr} timed out"))
            .unwrap_or_else(|err| panic!("TLS with {addr}: {err}"));
        stream
    }

    /// Connects (TLS) without the protocol's handshake: the next message is the test's.
    pub async fn connect(addr: SocketAddr) -> RawClient {
        let (read_half, write_half) = tokio::io::split(Self::tls(addr).await);
        RawClient {
            reader: codec::message_reader(read_half),
            writer: codec::message_writer(write_half),
        }
    }

    /// Connects, says Hello and logs in as the registered user.
    pub async fn handshake(addr: SocketAddr) -> RawClient {
        Self::handshake_with(addr, &[]).await
    }

    /// Connects, says Hello asking for `capabilities` and logs in as the registered user.
    pub async fn handshake_with(addr: SocketAddr, capabilities: &[&str]) -> RawClient {
        let credentials = registry::registered(&addr.to_string())
            .unwrap_or_else(|| panic!("no server registered at {addr}"))
            .credentials();
        let mut client = Self::welcomed(addr, capabilities).await;
        match client.authenticate(Some(credentials)).await {
            Some(Response::Authenticated(_)) => client,
            other => panic!("expected Authenticated, got {other:?}"),
        }
    }

    /// Connects, says Hello and sends `Authenticate` with `credentials`; returns the client
    /// and the server's answer to it (for tests of logins).
    pub async fn handshake_as(
        addr: SocketAddr,
        credentials: Option<Credentials>,
    ) -> (RawClient, Option<Response>) {
        let mut client = Self::welcomed(addr, &[]).await;
        let answer = client.authenticate(credentials).await;
        (client, answer)
    }

    /// Connects and says Hello; panics unless welcomed.
    async fn welcomed(addr: SocketAddr, capabilities: &[&str]) -> RawClient {
        let mut client = Self::connect(addr).await;
        client
            .send(Request::Hello(Hello {
                protocol_version: PROTOCOL_VERSION,
                software: "raw-test-client".into(),
                capabilities: capabilities.iter().map(|c| c.to_string()).collect(),
            }))
            .await;
        match client.recv().await {
            Some(Response::Welcome(_)) => client,
            other => panic!("expected Welcome, got {other:?}"),
        }
    }

    /// Sends `Authenticate` and returns the answer.
    pub async fn authenticate(&mut self, credentials: Option<Credentials>) -> Option<Response> {
        self.send(Request::Authenticate(Authenticate { credentials }))
            .await;
        self.recv().await
    }

    pub async fn send(&mut self, request: Request) {
        self.writer.send(request).await.unwrap();
    }

    /// The next response, or `None` once the server closed the connection.
    pub async fn recv(&mut self) -> Option<Response> {
        match tokio::time::timeout(RAW_READ_TIMEOUT, self.reader.next()).await {
            Ok(Some(Ok(response))) => Some(response),
            Ok(Some(Err(_)) | None) => None,
            Err(_) => panic!("no response within {RAW_READ_TIMEOUT:?}"),
        }
    }
}
