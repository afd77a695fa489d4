//! A test's WebSocket client of a flow's event stream.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::Server;

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects with a receive buffer of `bytes` (the kernel's minimum, about 4 KiB, for a client
/// that falls behind as fast as it can).
pub async fn connect_with_small_buffer(server: &Server, path: &str, bytes: u32) -> Socket {
    let url = format!("{}{path}", server.url.replace("http://", "ws://"));
    let addr: std::net::SocketAddr = server
        .url
        .trim_start_matches("http://")
        .parse()
        .expect("server address");
    let tcp = tokio::net::TcpSocket::new_v4().expect("socket");
    tcp.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
    let stream = tcp.connect(addr).await.expect("connect");
    let (socket, _) =
        tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(stream))
            .await
            .expect("upgrade");
    socket
}

pub async fn connect(server: &Server, path: &str) -> Result<Socket, u16> {
    let url = format!("{}{path}", server.url.replace("http://", "ws://"));
    match tokio_tungstenite::connect_async(url).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(e) => panic!("connect: {e}"),
    }
}

/// Reads events until one of type `last` for `execution`.
pub async fn events_until(socket: &mut Socket, execution: &str, last: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(20), socket.next())
            .await
            .expect("an event within 20 s")
            .expect("socket open")
            .expect("message");
        let Message::Text(text) = message else {
            continue;
        };
        let event: Value = serde_json::from_str(&text).expect("JSON event");
        if event["executionId"] != execution {
            continue;
        }
        let done = event["type"] == last;
        seen.push(event);
        if done {
            return seen;
        }
    }
}
