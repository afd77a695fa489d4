//! A test's WebSocket client of a flow's event stream.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::Server;

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

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
