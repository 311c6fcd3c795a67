//! Framebuffer updates as the hub's RFB server writes them for one viewer: in the viewer's pixel
//! format, with the pixel encoding it prefers among those the hub produces (ZRLE, Raw), CopyRect
//! when it asked for it, and the desktop-size pseudo-rectangles.

use bytes::{BufMut, BytesMut};

use crate::rfb::messages::{put_rect, put_screen, server_kind};
use crate::rfb::zrle::ZrleEncoder;
use crate::rfb::{PixelWriter, ProtocolError, Rect, ScreenLayout, encoding};
use crate::screen::Framebuffer;

/// What a viewer said it understands (its last SetEncodings).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ViewerEncodings {
    /// The pixel encoding to use: the first of ZRLE and Raw in the viewer's list, Raw if none.
    pub pixels: i32,
    pub copy_rect: bool,
    pub desktop_size: bool,
    pub extended_desktop_size: bool,
    pub qemu_keys: bool,
    /// DesktopName (-307): the viewer can be told a new desktop name.
    pub desktop_name: bool,
    /// zlib level for ZRLE, from the CompressLevel pseudo-encodings (default 6).
    pub compress_level: u32,
}

impl ViewerEncodings {
    /// Reads a SetEncodings list (in the viewer's order of preference).
    pub fn from_list(list: &[i32]) -> Self {
        let level = encoding::COMPRESS_LEVEL_0..=encoding::COMPRESS_LEVEL_0 + 9;
        Self {
            pixels: list
                .iter()
                .copied()
                .find(|e| matches!(*e, encoding::ZRLE | encoding::RAW))
                .unwrap_or(encoding::RAW),
            copy_rect: list.contains(&encoding::COPY_RECT),
            desktop_size: list.contains(&encoding::DESKTOP_SIZE),
            extended_desktop_size: list.contains(&encoding::EXTENDED_DESKTOP_SIZE),
            qemu_keys: list.contains(&encoding::QEMU_EXTENDED_KEY),
            desktop_name: list.contains(&encoding::DESKTOP_NAME),
            compress_level: list
                .iter()
                .find(|e| level.contains(e))
                .map_or(6, |e| (e - encoding::COMPRESS_LEVEL_0) as u32),
        }
    }
}

/// A CopyRect still to send: the viewer's pixels at (`src_x`, `src_y`) go to `dst`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Copy {
    pub src_x: u16,
    pub src_y: u16,
    pub dst: Rect,
}

/// The pseudo-rectangles of one update, besides pixels and copies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pseudo<'a> {
    /// The screen's new size.
    pub resize: Option<(u16, u16)>,
    /// Acknowledge QEMU extended key events.
    pub qemu_keys: bool,
    /// A new desktop name (only for a viewer that asked for DesktopName).
    pub name: Option<&'a str>,
}

/// Writes one viewer's updates; holds its ZRLE zlib stream, which lives as long as the
/// connection.
#[derive(Debug)]
pub struct UpdateWriter {
    writer: PixelWriter,
    zrle: Option<(u32, ZrleEncoder)>,
    scratch: Vec<u32>,
    pixels: Vec<u8>,
}

impl UpdateWriter {
    /// A writer for pixels in `writer`'s format.
    pub fn new(writer: PixelWriter) -> Self {
        Self {
            writer,
            zrle: None,
            scratch: Vec::new(),
            pixels: Vec::new(),
        }
    }

    /// Changes the pixel format (a SetPixelFormat).
    pub fn set_pixel_writer(&mut self, writer: PixelWriter) {
        self.writer = writer;
    }

    /// Appends one FramebufferUpdate: a resize first when `pseudo.resize` is set, the QEMU key
    /// pseudo-rectangle when `pseudo.qemu_keys`, the desktop name when `pseudo.name` is set and
    /// the viewer asked for DesktopName, then `copies` (as damage when the viewer cannot copy),
    /// then `rects`, all read from `fb`.
    pub fn write(
        &mut self,
        fb: &Framebuffer,
        pseudo: Pseudo<'_>,
        copies: &[Copy],
        rects: &[Rect],
        enc: &ViewerEncodings,
        out: &mut BytesMut,
    ) -> Result<(), ProtocolError> {
        let Pseudo {
            resize,
            qemu_keys,
            name,
        } = pseudo;
        let name = name.filter(|_| enc.desktop_name);
        let copied: &[Copy] = if enc.copy_rect { copies } else { &[] };
        let as_damage = copies.iter().filter(|_| !enc.copy_rect).map(|c| c.dst);
        let rects: Vec<Rect> = as_damage.chain(rects.iter().copied()).collect();
        let count = usize::from(resize.is_some())
            + usize::from(qemu_keys)
            + usize::from(name.is_some())
            + copied.len()
            + rects.len();
        let count = u16::try_from(count)
            .map_err(|_| ProtocolError::Invalid(format!("{count} rectangles in one update")))?;
        out.put_slice(&[server_kind::FRAMEBUFFER_UPDATE, 0]);
        out.put_u16(count);
        if let Some((width, height)) = resize {
            write_resize(width, height, enc, out)?;
        }
        if qemu_keys {
            put_rect(out, &Rect::default());
            out.put_i32(encoding::QEMU_EXTENDED_KEY);
        }
        if let Some(name) = name {
            // rfbproto: an empty rectangle, then the UTF-8 name with its u32 length.
            put_rect(out, &Rect::default());
            out.put_i32(encoding::DESKTOP_NAME);
            out.put_u32(name.len() as u32);
            out.put_slice(name.as_bytes());
        }
        for c in copied {
            put_rect(out, &c.dst);
            out.put_i32(encoding::COPY_RECT);
            out.put_u16(c.src_x);
            out.put_u16(c.src_y);
        }
        for rect in rects {
            self.write_pixels(fb, rect, enc, out);
        }
        Ok(())
    }

    fn write_pixels(
        &mut self,
        fb: &Framebuffer,
        rect: Rect,
        enc: &ViewerEncodings,
        out: &mut BytesMut,
    ) {
        self.scratch.clear();
        fb.read(rect, &mut self.scratch);
        put_rect(out, &rect);
        if enc.pixels == encoding::ZRLE {
            out.put_i32(encoding::ZRLE);
            // The zlib stream is kept across updates; its level is fixed when it starts.
            let (_, zrle) = self
                .zrle
                .get_or_insert_with(|| (enc.compress_level, ZrleEncoder::new(enc.compress_level)));
            zrle.encode(&self.scratch, rect.width, rect.height, &self.writer, out);
        } else {
            out.put_i32(encoding::RAW);
            self.pixels.clear();
            self.writer.write_pixels(&self.scratch, &mut self.pixels);
            out.put_slice(&self.pixels);
        }
    }
}

fn write_resize(
    width: u16,
    height: u16,
    enc: &ViewerEncodings,
    out: &mut BytesMut,
) -> Result<(), ProtocolError> {
    if enc.extended_desktop_size {
        // Reason 0 (the server changed it), status 0, one screen covering the desktop.
        put_rect(out, &Rect::new(0, 0, width, height));
        out.put_i32(encoding::EXTENDED_DESKTOP_SIZE);
        out.put_slice(&[1, 0, 0, 0]);
        put_screen(
            out,
            &ScreenLayout {
                id: 0,
                rect: Rect::new(0, 0, width, height),
                flags: 0,
            },
        );
        Ok(())
    } else if enc.desktop_size {
        put_rect(out, &Rect::new(0, 0, width, height));
        out.put_i32(encoding::DESKTOP_SIZE);
        Ok(())
    } else {
        Err(ProtocolError::Invalid(
            "the VM's screen changed size and this viewer cannot follow (no DesktopSize)".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rfb::PixelFormat;

    #[test]
    fn picks_the_viewers_first_supported_encoding() {
        let e = ViewerEncodings::from_list(&[encoding::TIGHT, encoding::ZRLE, encoding::RAW, -250]);
        assert_eq!((e.pixels, e.compress_level), (encoding::ZRLE, 6));
        let e =
            ViewerEncodings::from_list(&[encoding::HEXTILE, encoding::RAW, encoding::ZRLE, -254]);
        assert_eq!((e.pixels, e.compress_level), (encoding::RAW, 2));
        assert_eq!(ViewerEncodings::from_list(&[]).pixels, encoding::RAW);
    }

    #[test]
    fn copies_become_damage_for_a_viewer_without_copy_rect() {
        let fb = Framebuffer::new(16, 16);
        let copy = Copy {
            src_x: 0,
            src_y: 0,
            dst: Rect::new(8, 8, 4, 4),
        };
        let mut w = UpdateWriter::new(PixelWriter::new(PixelFormat::CANONICAL));
        let mut out = BytesMut::new();
        let raw = ViewerEncodings::from_list(&[encoding::RAW]);
        w.write(&fb, Pseudo::default(), &[copy], &[], &raw, &mut out)
            .unwrap();
        // One Raw rectangle of 4x4 pixels at the destination.
        assert_eq!(&out[..4], [0, 0, 0, 1]);
        assert_eq!(&out[12..16], 0i32.to_be_bytes());
        assert_eq!(out.len(), 4 + 12 + 16 * 4);
        out.clear();
        let with_copy = ViewerEncodings::from_list(&[encoding::RAW, encoding::COPY_RECT]);
        w.write(&fb, Pseudo::default(), &[copy], &[], &with_copy, &mut out)
            .unwrap();
        assert_eq!(&out[12..16], 1i32.to_be_bytes());
        assert_eq!(out.len(), 4 + 12 + 4);
    }

    #[test]
    fn a_viewer_that_cannot_resize_is_refused() {
        let fb = Framebuffer::new(4, 4);
        let mut w = UpdateWriter::new(PixelWriter::new(PixelFormat::CANONICAL));
        let raw = ViewerEncodings::from_list(&[encoding::RAW]);
        assert!(
            w.write(
                &fb,
                Pseudo {
                    resize: Some((4, 4)),
                    ..Pseudo::default()
                },
                &[],
                &[],
                &raw,
                &mut BytesMut::new()
            )
            .is_err()
        );
    }

    /// The name goes out only to a viewer that asked for DesktopName, as rfbproto lays it out.
    #[test]
    fn desktop_name_only_for_viewers_that_asked() {
        let fb = Framebuffer::new(4, 4);
        let mut w = UpdateWriter::new(PixelWriter::new(PixelFormat::CANONICAL));
        let name = Pseudo {
            name: Some("vm · view only · 2 viewers"),
            ..Pseudo::default()
        };
        let mut out = BytesMut::new();
        let raw = ViewerEncodings::from_list(&[encoding::RAW]);
        w.write(&fb, name, &[], &[], &raw, &mut out).unwrap();
        assert_eq!(&out[..], [0, 0, 0, 0]);
        out.clear();
        let named = ViewerEncodings::from_list(&[encoding::RAW, encoding::DESKTOP_NAME]);
        w.write(&fb, name, &[], &[], &named, &mut out).unwrap();
        let text = "vm · view only · 2 viewers".as_bytes();
        assert_eq!(&out[..4], [0, 0, 0, 1]);
        assert_eq!(&out[4..12], [0; 8]);
        assert_eq!(&out[12..16], encoding::DESKTOP_NAME.to_be_bytes());
        assert_eq!(&out[16..20], (text.len() as u32).to_be_bytes());
        assert_eq!(&out[20..], text);
    }
}
