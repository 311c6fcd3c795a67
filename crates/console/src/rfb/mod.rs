//! The RFB protocol (RFC 6143) and the community extensions a shared console needs, both ways.
//!
//! Pure codecs (no I/O): [`pixel`] formats, [`messages`] (client-to-server messages, parsed and
//! written), [`decode`] (a server's messages as a client reads them, incrementally), [`encode`]
//! (framebuffer updates as a server writes them), the [`zrle`] and [`hextile`] encodings, and
//! [`handshake`] (the two sides of the connection set-up, over a message transport).

pub mod decode;
pub mod encode;
pub mod handshake;
pub mod hextile;
pub mod messages;
pub mod pixel;
mod wire;
pub mod zrle;

pub use pixel::{PixelFormat, PixelWriter};

/// Encoding numbers (RFC 6143 §7.7 and the registry in rfbproto).
pub mod encoding {
    /// Raw pixels.
    pub const RAW: i32 = 0;
    /// Copy a rectangle already on the client's screen.
    pub const COPY_RECT: i32 = 1;
    /// Hextile (16x16 tiles, solid colours and subrectangles).
    pub const HEXTILE: i32 = 5;
    /// Tight (not decoded or produced here).
    pub const TIGHT: i32 = 7;
    /// ZRLE (zlib, 64x64 tiles, palettes and runs).
    pub const ZRLE: i32 = 16;
    /// Pseudo-encoding: the desktop changed size.
    pub const DESKTOP_SIZE: i32 = -223;
    /// Pseudo-encoding: the last rectangle of an update whose count was 0xffff.
    pub const LAST_RECT: i32 = -224;
    /// Pseudo-encoding: a client-side cursor (not used: the VM draws its pointer, so that
    /// observers see where the controller points).
    pub const CURSOR: i32 = -239;
    /// Pseudo-encodings -256..=-247: the compression level the client prefers (0..=9).
    pub const COMPRESS_LEVEL_0: i32 = -256;
    /// Pseudo-encoding: QEMU Extended Key Event (scancodes along keysyms).
    pub const QEMU_EXTENDED_KEY: i32 = -258;
    /// Pseudo-encoding: the desktop's name changed.
    pub const DESKTOP_NAME: i32 = -307;
    /// Pseudo-encoding: the desktop changed size, with its screen layout (and SetDesktopSize).
    pub const EXTENDED_DESKTOP_SIZE: i32 = -308;
}

/// A rectangle on the screen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Rect {
    pub x: u16,
    pub y: u16,
    pub width: u16,
    pub height: u16,
}

impl Rect {
    /// A rectangle.
    pub const fn new(x: u16, y: u16, width: u16, height: u16) -> Self {
        Self {
            x,
            y,
            width,
            height,
        }
    }

    /// Number of pixels.
    pub fn area(&self) -> usize {
        usize::from(self.width) * usize::from(self.height)
    }

    /// Whether it has no pixels.
    pub fn is_empty(&self) -> bool {
        self.width == 0 || self.height == 0
    }

    /// Right edge (exclusive), without overflow.
    pub fn right(&self) -> u32 {
        u32::from(self.x) + u32::from(self.width)
    }

    /// Bottom edge (exclusive), without overflow.
    pub fn bottom(&self) -> u32 {
        u32::from(self.y) + u32::from(self.height)
    }

    /// Whether it lies inside a `width` x `height` screen.
    pub fn fits(&self, width: u16, height: u16) -> bool {
        self.right() <= u32::from(width) && self.bottom() <= u32::from(height)
    }

    /// The part inside a `width` x `height` screen.
    pub fn clip(&self, width: u16, height: u16) -> Rect {
        let right = self.right().min(u32::from(width));
        let bottom = self.bottom().min(u32::from(height));
        let x = self.x.min(width);
        let y = self.y.min(height);
        Rect::new(
            x,
            y,
            (right - u32::from(x)) as u16,
            (bottom - u32::from(y)) as u16,
        )
    }

    /// Whether the two overlap.
    pub fn intersects(&self, other: &Rect) -> bool {
        !self.is_empty()
            && !other.is_empty()
            && u32::from(self.x) < other.right()
            && u32::from(other.x) < self.right()
            && u32::from(self.y) < other.bottom()
            && u32::from(other.y) < self.bottom()
    }
}

/// One screen of a desktop (ExtendedDesktopSize).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScreenLayout {
    pub id: u32,
    pub rect: Rect,
    pub flags: u32,
}

/// Input the protocol refuses. Every variant is reachable from bytes a peer sends, so none of
/// them panics and each names what was wrong.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// The peer does not speak RFB 3.x.
    #[error("not an RFB peer: version {0:?}")]
    Version(String),
    /// A message type this side does not know (its length cannot be known, so the stream ends).
    #[error("unknown {side} message type {kind}")]
    UnknownMessage { side: &'static str, kind: u8 },
    /// A rectangle encoding that was not asked for.
    #[error("unexpected encoding {0} in a framebuffer update")]
    UnexpectedEncoding(i32),
    /// A rectangle outside the screen.
    #[error("rectangle {rect:?} outside the {width}x{height} screen")]
    OutsideScreen { rect: Rect, width: u16, height: u16 },
    /// A length or count above what this side accepts.
    #[error("{what} too large: {len} (limit {max})")]
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
    /// A pixel format that cannot be produced or read.
    #[error("unsupported pixel format: {0}")]
    UnsupportedPixelFormat(String),
    /// Malformed compressed or encoded data.
    #[error("malformed {encoding} data: {why}")]
    Malformed { encoding: &'static str, why: String },
    /// The security handshake could not agree.
    #[error("security handshake: {0}")]
    Security(String),
    /// The peer broke the protocol in another way.
    #[error("{0}")]
    Invalid(String),
}

impl ProtocolError {
    pub(crate) fn malformed(encoding: &'static str, why: impl Into<String>) -> Self {
        Self::Malformed {
            encoding,
            why: why.into(),
        }
    }
}

/// Limits on what a peer may make this side hold. Every buffer the protocol fills is bounded by
/// one of these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest screen width and height accepted from a VNC server.
    pub max_dimension: u16,
    /// Largest screen area in pixels accepted from a VNC server.
    pub max_pixels: usize,
    /// Largest clipboard text kept (longer text is skipped, not an error).
    pub max_cut_text: usize,
    /// Largest desktop name kept.
    pub max_name: usize,
    /// Most encodings a SetEncodings may list.
    pub max_encodings: usize,
    /// Most screens in a layout.
    pub max_screens: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_dimension: 8192,
            // 8K UHD (7680x4320), 132 MB as 32-bit pixels.
            max_pixels: 7680 * 4320,
            max_cut_text: 1 << 20,
            max_name: 4096,
            max_encodings: 1024,
            max_screens: 16,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rect_geometry() {
        let r = Rect::new(10, 10, 20, 20);
        assert!(r.fits(30, 30));
        assert!(!r.fits(29, 30));
        assert_eq!(r.clip(25, 100), Rect::new(10, 10, 15, 20));
        assert_eq!(Rect::new(50, 50, 10, 10).clip(40, 40).area(), 0);
        assert!(r.intersects(&Rect::new(29, 29, 5, 5)));
        assert!(!r.intersects(&Rect::new(30, 10, 5, 5)));
        assert!(!r.intersects(&Rect::new(15, 15, 0, 5)));
        // No overflow at the edge of u16.
        let edge = Rect::new(u16::MAX, u16::MAX, u16::MAX, u16::MAX);
        assert!(!edge.fits(u16::MAX, u16::MAX));
        assert_eq!(edge.right(), 2 * u32::from(u16::MAX));
    }
}
