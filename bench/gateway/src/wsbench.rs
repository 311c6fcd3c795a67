//! WebSocket benchmarks: bulk throughput each way, and idle sessions held open.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::net::{Target, Ws, websocket};
use crate::upstream::CHUNK;

/// Sends `bytes` client→server in 64 KiB binary messages to the sink and waits for its `done`;
/// returns the seconds from the first byte to `done`.
pub async fn upload(target: &Target, path: &str, bytes: u64) -> Result<f64> {
    let mut ws = websocket(target, &format!("{path}?mode=sink&bytes={bytes}")).await?;
    let chunk = Bytes::from(vec![0xa5u8; CHUNK]);
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < bytes {
        let n = ((bytes - sent) as usize).min(CHUNK);
        ws.feed(Message::Binary(chunk.slice(..n))).await?;
        sent += n as u64;
    }
    ws.flush().await?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.as_str() == "done" => break,
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e).context("upload"),
            None => bail!("upload: the connection closed before `done`"),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let _ = ws.close(None).await;
    Ok(secs)
}

/// Receives `bytes` server→client from the source; returns the seconds from the end of the
/// handshake to the last byte.
pub async fn download(target: &Target, path: &str, bytes: u64) -> Result<f64> {
    let mut ws = websocket(target, &format!("{path}?mode=source&bytes={bytes}")).await?;
    let start = Instant::now();
    let mut got = 0u64;
    while got < bytes {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) => got += b.len() as u64,
            Some(Ok(Message::Close(_))) | None => {
                bail!("download: closed after {got} of {bytes} bytes")
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e).context("download"),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let _ = ws.close(None).await;
    while let Some(Ok(_)) = ws.next().await {}
    Ok(secs)
}

/// Opens `n` idle sessions, `parallel` handshakes at a time.
pub async fn open_idle(target: &Target, path: &str, n: usize, parallel: usize) -> Result<Vec<Ws>> {
    let url = format!("{path}?mode=idle");
    let results: Vec<Result<Ws>> = futures::stream::iter(0..n)
        .map(|_| {
            let target = target.clone();
            let url = url.clone();
            async move {
                // A handshake under load can time out: retry a few times.
                let mut last = None;
                for _ in 0..3 {
                    match tokio::time::timeout(Duration::from_secs(30), websocket(&target, &url))
                        .await
                    {
                        Ok(Ok(ws)) => return Ok(ws),
                        Ok(Err(e)) => last = Some(e),
                        Err(_) => last = Some(anyhow::anyhow!("handshake timed out")),
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(last.unwrap_or_else(|| anyhow::anyhow!("no attempt")))
            }
        })
        .buffer_unordered(parallel)
        .collect()
        .await;
    results.into_iter().collect()
}

/// Closes sessions politely.
pub async fn close_all(sessions: Vec<Ws>) {
    futures::stream::iter(sessions)
        .for_each_concurrent(256, |mut ws| async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                let _ = ws.close(None).await;
                while let Some(Ok(_)) = ws.next().await {}
            })
            .await;
        })
        .await;
}
