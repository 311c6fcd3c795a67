//! The two sides of the RFB connection set-up (RFC 6143 §7.1–7.3), security type None only:
//! the VM's VNC server is reached through the authenticated KubeVirt API, and viewers are
//! authenticated by the gateway before their first RFB byte.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::rfb::{Limits, PixelFormat, ProtocolError};

const NONE: u8 = 1;

/// A failed set-up.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("RFB handshake I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

/// What a VNC server said about its desktop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerInit {
    pub width: u16,
    pub height: u16,
    pub format: PixelFormat,
    pub name: String,
}

/// Which minor version a peer's 12-byte ProtocolVersion names (3, 7 or 8; others as 3).
fn minor(version: &[u8; 12]) -> Result<u8, ProtocolError> {
    let text = String::from_utf8_lossy(version).into_owned();
    match version {
        b"RFB 003.008\n" => Ok(8),
        b"RFB 003.007\n" => Ok(7),
        [b'R', b'F', b'B', b' ', b'0', b'0', b'3', b'.', ..] => Ok(3),
        _ => Err(ProtocolError::Version(text)),
    }
}

/// The client side, towards the VM: agrees on security None and a shared session.
pub async fn client<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    limits: &Limits,
) -> Result<ServerInit, HandshakeError> {
    let mut version = [0u8; 12];
    io.read_exact(&mut version).await?;
    let minor = minor(&version)?.min(8);
    io.write_all(format!("RFB 003.00{minor}\n").as_bytes())
        .await?;
    if minor >= 7 {
        let n = usize::from(io.read_u8().await?);
        let mut types = vec![0u8; n];
        io.read_exact(&mut types).await?;
        if n == 0 {
            return Err(ProtocolError::Security(read_reason(io).await?).into());
        }
        if !types.contains(&NONE) {
            return Err(
                ProtocolError::Security(format!("server offers {types:?}, not None")).into(),
            );
        }
        io.write_all(&[NONE]).await?;
    } else if io.read_u32().await? != u32::from(NONE) {
        return Err(
            ProtocolError::Security("server wants a security type other than None".into()).into(),
        );
    }
    if minor == 8 && io.read_u32().await? != 0 {
        return Err(ProtocolError::Security(read_reason(io).await?).into());
    }
    // Shared: never disconnect other clients of the VNC server.
    io.write_all(&[1]).await?;
    let mut head = [0u8; 24];
    io.read_exact(&mut head).await?;
    let len = u32::from_be_bytes([head[20], head[21], head[22], head[23]]) as usize;
    if len > limits.max_name {
        return Err(ProtocolError::TooLarge {
            what: "desktop name",
            len,
            max: limits.max_name,
        }
        .into());
    }
    let mut name = vec![0u8; len];
    io.read_exact(&mut name).await?;
    let format: [u8; 16] = head[4..20].try_into().expect("16 bytes");
    Ok(ServerInit {
        width: u16::from_be_bytes([head[0], head[1]]),
        height: u16::from_be_bytes([head[2], head[3]]),
        format: PixelFormat::from_bytes(&format),
        name: String::from_utf8_lossy(&name).into_owned(),
    })
}

async fn read_reason<S: AsyncRead + Unpin>(io: &mut S) -> Result<String, HandshakeError> {
    let len = (io.read_u32().await? as usize).min(1024);
    let mut reason = vec![0u8; len];
    io.read_exact(&mut reason).await?;
    Ok(String::from_utf8_lossy(&reason).into_owned())
}

/// The server side, towards a viewer: offers security None and describes the desktop.
pub async fn server<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    init: &ServerInit,
) -> Result<(), HandshakeError> {
    io.write_all(b"RFB 003.008\n").await?;
    let mut version = [0u8; 12];
    io.read_exact(&mut version).await?;
    let minor = minor(&version)?;
    if minor >= 7 {
        io.write_all(&[1, NONE]).await?;
        let choice = io.read_u8().await?;
        if choice != NONE {
            return Err(
                ProtocolError::Security(format!("viewer chose security type {choice}")).into(),
            );
        }
        if minor == 8 {
            io.write_all(&0u32.to_be_bytes()).await?;
        }
    } else {
        io.write_all(&u32::from(NONE).to_be_bytes()).await?;
    }
    // ClientInit: whether to share is the hub's decision, not the viewer's.
    io.read_u8().await?;
    let mut out = Vec::with_capacity(24 + init.name.len());
    out.extend_from_slice(&init.width.to_be_bytes());
    out.extend_from_slice(&init.height.to_be_bytes());
    out.extend_from_slice(&init.format.to_bytes());
    out.extend_from_slice(&(init.name.len() as u32).to_be_bytes());
    out.extend_from_slice(init.name.as_bytes());
    io.write_all(&out).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn both_sides_agree() {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let init = ServerInit {
            width: 640,
            height: 480,
            format: PixelFormat::CANONICAL,
            name: "testvm".into(),
        };
        let sent = init.clone();
        let server = tokio::spawn(async move { server(&mut a, &sent).await.map(|_| a) });
        let got = client(&mut b, &Limits::default()).await.unwrap();
        server.await.unwrap().unwrap();
        assert_eq!(got, init);
    }

    #[tokio::test]
    async fn refuses_what_is_not_rfb() {
        let (mut a, mut b) = tokio::io::duplex(4096);
        tokio::spawn(async move { a.write_all(b"HTTP/1.1 200").await });
        assert!(matches!(
            client(&mut b, &Limits::default()).await,
            Err(HandshakeError::Protocol(ProtocolError::Version(_)))
        ));
    }
}
