//! Client-to-server messages (RFC 6143 §7.5 and the QEMU and ExtendedDesktopSize extensions),
//! parsed by the hub's RFB server and written by its RFB client; and the few server-to-client
//! messages that are not framebuffer updates.

use bytes::{BufMut, BytesMut};

use crate::rfb::wire::{Incomplete, Reader};
use crate::rfb::{Limits, PixelFormat, ProtocolError, Rect, ScreenLayout};

/// Message types, client to server.
mod kind {
    pub const SET_PIXEL_FORMAT: u8 = 0;
    pub const SET_ENCODINGS: u8 = 2;
    pub const FRAMEBUFFER_UPDATE_REQUEST: u8 = 3;
    pub const KEY_EVENT: u8 = 4;
    pub const POINTER_EVENT: u8 = 5;
    pub const CLIENT_CUT_TEXT: u8 = 6;
    pub const SET_DESKTOP_SIZE: u8 = 251;
    pub const QEMU: u8 = 255;
    pub const QEMU_EXTENDED_KEY: u8 = 0;
}

/// A message from a viewer (or, written by the hub, to the VM's VNC server).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientMessage {
    SetPixelFormat(PixelFormat),
    SetEncodings(Vec<i32>),
    FramebufferUpdateRequest {
        incremental: bool,
        rect: Rect,
    },
    Key {
        down: bool,
        keysym: u32,
    },
    Pointer {
        buttons: u8,
        x: u16,
        y: u16,
    },
    /// Latin-1 clipboard text.
    CutText(Vec<u8>),
    /// A ClientCutText whose text is longer than [`Limits::max_cut_text`] or uses the extended
    /// clipboard format (never offered): only its 8-byte header was consumed, and the caller
    /// discards the `len` bytes that follow.
    SkippedCutText {
        len: usize,
    },
    /// QEMU Extended Key Event: an XT scancode along the keysym.
    QemuKey {
        down: bool,
        keysym: u32,
        keycode: u32,
    },
    SetDesktopSize {
        width: u16,
        height: u16,
        screens: Vec<ScreenLayout>,
    },
}

/// What kind of input a message is, for counting what an observer tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InputKind {
    Key,
    Pointer,
    Clipboard,
    /// A request to resize the VM's screen.
    Resize,
}

impl InputKind {
    /// Bounded label for metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::Pointer => "pointer",
            Self::Clipboard => "clipboard",
            Self::Resize => "resize",
        }
    }
}

impl ClientMessage {
    /// The kind of input this message is, if it is input to the VM.
    pub fn input_kind(&self) -> Option<InputKind> {
        match self {
            Self::Key { .. } | Self::QemuKey { .. } => Some(InputKind::Key),
            Self::Pointer { .. } => Some(InputKind::Pointer),
            Self::CutText(_) | Self::SkippedCutText { .. } => Some(InputKind::Clipboard),
            Self::SetDesktopSize { .. } => Some(InputKind::Resize),
            _ => None,
        }
    }

    /// Parses one message from the front of `buf`: `Ok(None)` when more bytes are needed,
    /// otherwise the message and how many bytes it took.
    pub fn parse(buf: &[u8], limits: &Limits) -> Result<Option<(Self, usize)>, ProtocolError> {
        let mut r = Reader::new(buf);
        match Self::read(&mut r, limits) {
            Ok(msg) => Ok(Some((msg, r.consumed()))),
            Err(ParseError::Incomplete) => Ok(None),
            Err(ParseError::Protocol(e)) => Err(e),
        }
    }

    fn read(r: &mut Reader<'_>, limits: &Limits) -> Result<Self, ParseError> {
        let kind = r.u8()?;
        Ok(match kind {
            kind::SET_PIXEL_FORMAT => {
                r.skip(3)?;
                Self::SetPixelFormat(PixelFormat::from_bytes(&r.array()?))
            }
            kind::SET_ENCODINGS => {
                r.skip(1)?;
                let n = usize::from(r.u16()?);
                if n > limits.max_encodings {
                    return Err(too_large("encoding list", n, limits.max_encodings));
                }
                let mut list = Vec::with_capacity(n);
                for _ in 0..n {
                    list.push(r.i32()?);
                }
                Self::SetEncodings(list)
            }
            kind::FRAMEBUFFER_UPDATE_REQUEST => Self::FramebufferUpdateRequest {
                incremental: r.u8()? != 0,
                rect: Rect::new(r.u16()?, r.u16()?, r.u16()?, r.u16()?),
            },
            kind::KEY_EVENT => {
                let down = r.u8()? != 0;
                r.skip(2)?;
                Self::Key {
                    down,
                    keysym: r.u32()?,
                }
            }
            kind::POINTER_EVENT => Self::Pointer {
                buttons: r.u8()?,
                x: r.u16()?,
                y: r.u16()?,
            },
            kind::CLIENT_CUT_TEXT => {
                r.skip(3)?;
                let len = r.i32()?;
                // A negative length is the extended clipboard format, which is never offered.
                let size = len.unsigned_abs() as usize;
                if len < 0 || size > limits.max_cut_text {
                    Self::SkippedCutText { len: size }
                } else {
                    Self::CutText(r.bytes(size)?.to_vec())
                }
            }
            kind::SET_DESKTOP_SIZE => {
                r.skip(1)?;
                let width = r.u16()?;
                let height = r.u16()?;
                let n = usize::from(r.u8()?);
                r.skip(1)?;
                if n > limits.max_screens {
                    return Err(too_large("screen layout", n, limits.max_screens));
                }
                let mut screens = Vec::with_capacity(n);
                for _ in 0..n {
                    screens.push(read_screen(r)?);
                }
                Self::SetDesktopSize {
                    width,
                    height,
                    screens,
                }
            }
            kind::QEMU => match r.u8()? {
                kind::QEMU_EXTENDED_KEY => {
                    let down = r.u16()? != 0;
                    Self::QemuKey {
                        down,
                        keysym: r.u32()?,
                        keycode: r.u32()?,
                    }
                }
                other => {
                    return Err(ParseError::Protocol(ProtocolError::Invalid(format!(
                        "QEMU client message {other} was not offered"
                    ))));
                }
            },
            kind => {
                return Err(ParseError::Protocol(ProtocolError::UnknownMessage {
                    side: "client",
                    kind,
                }));
            }
        })
    }

    /// Appends the wire form. A [`ClientMessage::SkippedCutText`] writes nothing: its text is
    /// gone.
    pub fn write(&self, out: &mut BytesMut) {
        match self {
            Self::SetPixelFormat(format) => {
                out.put_slice(&[kind::SET_PIXEL_FORMAT, 0, 0, 0]);
                out.put_slice(&format.to_bytes());
            }
            Self::SetEncodings(list) => {
                out.put_slice(&[kind::SET_ENCODINGS, 0]);
                out.put_u16(list.len() as u16);
                for e in list.iter().take(usize::from(u16::MAX)) {
                    out.put_i32(*e);
                }
            }
            Self::FramebufferUpdateRequest { incremental, rect } => {
                out.put_slice(&[kind::FRAMEBUFFER_UPDATE_REQUEST, *incremental as u8]);
                put_rect(out, rect);
            }
            Self::Key { down, keysym } => {
                out.put_slice(&[kind::KEY_EVENT, *down as u8, 0, 0]);
                out.put_u32(*keysym);
            }
            Self::Pointer { buttons, x, y } => {
                out.put_slice(&[kind::POINTER_EVENT, *buttons]);
                out.put_u16(*x);
                out.put_u16(*y);
            }
            Self::CutText(text) => {
                out.put_slice(&[kind::CLIENT_CUT_TEXT, 0, 0, 0]);
                out.put_u32(text.len() as u32);
                out.put_slice(text);
            }
            Self::SkippedCutText { .. } => {}
            Self::QemuKey {
                down,
                keysym,
                keycode,
            } => {
                out.put_slice(&[kind::QEMU, kind::QEMU_EXTENDED_KEY]);
                out.put_u16(*down as u16);
                out.put_u32(*keysym);
                out.put_u32(*keycode);
            }
            Self::SetDesktopSize {
                width,
                height,
                screens,
            } => {
                out.put_slice(&[kind::SET_DESKTOP_SIZE, 0]);
                out.put_u16(*width);
                out.put_u16(*height);
                out.put_slice(&[screens.len() as u8, 0]);
                for s in screens {
                    put_screen(out, s);
                }
            }
        }
    }

    /// The wire form.
    pub fn to_bytes(&self) -> BytesMut {
        let mut out = BytesMut::new();
        self.write(&mut out);
        out
    }
}

/// Server-to-client message types.
pub(crate) mod server_kind {
    pub const FRAMEBUFFER_UPDATE: u8 = 0;
    pub const SET_COLOUR_MAP_ENTRIES: u8 = 1;
    pub const BELL: u8 = 2;
    pub const SERVER_CUT_TEXT: u8 = 3;
}

/// Appends a Bell.
pub fn write_bell(out: &mut BytesMut) {
    out.put_u8(server_kind::BELL);
}

/// Appends a ServerCutText.
pub fn write_server_cut_text(out: &mut BytesMut, text: &[u8]) {
    out.put_slice(&[server_kind::SERVER_CUT_TEXT, 0, 0, 0]);
    out.put_u32(text.len() as u32);
    out.put_slice(text);
}

pub(crate) fn put_rect(out: &mut BytesMut, rect: &Rect) {
    out.put_u16(rect.x);
    out.put_u16(rect.y);
    out.put_u16(rect.width);
    out.put_u16(rect.height);
}

pub(crate) fn put_screen(out: &mut BytesMut, s: &ScreenLayout) {
    out.put_u32(s.id);
    put_rect(out, &s.rect);
    out.put_u32(s.flags);
}

pub(crate) fn read_screen(r: &mut Reader<'_>) -> Result<ScreenLayout, Incomplete> {
    Ok(ScreenLayout {
        id: r.u32()?,
        rect: Rect::new(r.u16()?, r.u16()?, r.u16()?, r.u16()?),
        flags: r.u32()?,
    })
}

pub(crate) enum ParseError {
    Incomplete,
    Protocol(ProtocolError),
}

impl From<Incomplete> for ParseError {
    fn from(_: Incomplete) -> Self {
        Self::Incomplete
    }
}

impl From<ProtocolError> for ParseError {
    fn from(e: ProtocolError) -> Self {
        Self::Protocol(e)
    }
}

pub(crate) fn too_large(what: &'static str, len: usize, max: usize) -> ParseError {
    ParseError::Protocol(ProtocolError::TooLarge { what, len, max })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rfb::encoding;

    fn all() -> Vec<ClientMessage> {
        vec![
            ClientMessage::SetPixelFormat(PixelFormat::NOVNC),
            ClientMessage::SetEncodings(vec![
                encoding::ZRLE,
                encoding::RAW,
                encoding::QEMU_EXTENDED_KEY,
            ]),
            ClientMessage::SetEncodings(vec![]),
            ClientMessage::FramebufferUpdateRequest {
                incremental: true,
                rect: Rect::new(1, 2, 640, 480),
            },
            ClientMessage::Key {
                down: true,
                keysym: 0xff0d,
            },
            ClientMessage::Pointer {
                buttons: 5,
                x: 300,
                y: 65535,
            },
            ClientMessage::CutText(b"hello".to_vec()),
            ClientMessage::QemuKey {
                down: false,
                keysym: 0x61,
                keycode: 0x1e,
            },
            ClientMessage::SetDesktopSize {
                width: 1024,
                height: 768,
                screens: vec![ScreenLayout {
                    id: 7,
                    rect: Rect::new(0, 0, 1024, 768),
                    flags: 0,
                }],
            },
        ]
    }

    #[test]
    fn every_message_round_trips_and_needs_all_its_bytes() {
        let limits = Limits::default();
        for msg in all() {
            let bytes = msg.to_bytes();
            assert_eq!(
                ClientMessage::parse(&bytes, &limits).unwrap(),
                Some((msg.clone(), bytes.len())),
                "{msg:?}"
            );
            for cut in 0..bytes.len() {
                assert_eq!(
                    ClientMessage::parse(&bytes[..cut], &limits).unwrap(),
                    None,
                    "{msg:?} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn wire_forms_match_rfc_6143() {
        assert_eq!(
            &ClientMessage::Key {
                down: true,
                keysym: 0x61
            }
            .to_bytes()[..],
            [4, 1, 0, 0, 0, 0, 0, 0x61]
        );
        assert_eq!(
            &ClientMessage::QemuKey {
                down: true,
                keysym: 0x61,
                keycode: 0x1e
            }
            .to_bytes()[..],
            [255, 0, 0, 1, 0, 0, 0, 0x61, 0, 0, 0, 0x1e]
        );
        assert_eq!(
            &ClientMessage::FramebufferUpdateRequest {
                incremental: false,
                rect: Rect::new(0, 0, 640, 480)
            }
            .to_bytes()[..],
            [3, 0, 0, 0, 0, 0, 2, 128, 1, 224]
        );
    }

    #[test]
    fn oversized_and_extended_clipboard_text_is_skipped_not_buffered() {
        let limits = Limits {
            max_cut_text: 4,
            ..Limits::default()
        };
        let mut msg = BytesMut::from(&[6u8, 0, 0, 0][..]);
        msg.put_u32(1_000_000);
        assert_eq!(
            ClientMessage::parse(&msg, &limits).unwrap(),
            Some((ClientMessage::SkippedCutText { len: 1_000_000 }, 8))
        );
        let mut ext = BytesMut::from(&[6u8, 0, 0, 0][..]);
        ext.put_i32(-12);
        assert_eq!(
            ClientMessage::parse(&ext, &limits).unwrap(),
            Some((ClientMessage::SkippedCutText { len: 12 }, 8))
        );
    }

    #[test]
    fn refuses_unknown_and_oversized_messages() {
        let limits = Limits::default();
        assert!(matches!(
            ClientMessage::parse(&[150, 1, 0, 0, 0, 0, 0, 0, 0, 0], &limits),
            Err(ProtocolError::UnknownMessage { kind: 150, .. })
        ));
        assert!(ClientMessage::parse(&[255, 1, 0, 0], &limits).is_err());
        let mut many = BytesMut::from(&[2u8, 0][..]);
        many.put_u16(5000);
        assert!(matches!(
            ClientMessage::parse(&many, &limits),
            Err(ProtocolError::TooLarge { .. })
        ));
        let screens = [251u8, 0, 4, 0, 3, 0, 200, 0];
        assert!(matches!(
            ClientMessage::parse(&screens, &limits),
            Err(ProtocolError::TooLarge { .. })
        ));
    }
}
