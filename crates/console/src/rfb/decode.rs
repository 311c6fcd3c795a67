//! A VNC server's messages as the hub's RFB client reads them, one step at a time.
//!
//! [`ServerDecoder::step`] takes the front of a receive buffer and either needs more bytes
//! (`Ok(None)`, nothing changed) or applies one rectangle or message to the framebuffer and says
//! what changed. A rectangle is applied only once all its bytes are there, so the stateful ZRLE
//! zlib stream is fed each rectangle exactly once.

use crate::rfb::hextile::{self, Carry};
use crate::rfb::messages::{ParseError, read_screen, server_kind, too_large};
use crate::rfb::wire::Reader;
use crate::rfb::zrle::ZrleDecoder;
use crate::rfb::{Limits, PixelFormat, ProtocolError, Rect, encoding};
use crate::screen::Framebuffer;

/// What one step changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Pixels of this rectangle changed.
    Damage(Rect),
    /// The pixels at (`src_x`, `src_y`) were copied to `dst` (CopyRect).
    Copy {
        src_x: u16,
        src_y: u16,
        dst: Rect,
    },
    /// The screen has a new size (and is black until redrawn).
    Resize {
        width: u16,
        height: u16,
    },
    /// The server accepts QEMU extended key events.
    QemuKeys,
    /// The end of a framebuffer update: time to ask for the next one.
    UpdateEnd,
    Bell,
    /// Clipboard text from the VM (Latin-1).
    CutText(Vec<u8>),
    /// The desktop's new name (DesktopName pseudo-rectangle; invalid UTF-8 replaced).
    Name(String),
    /// A message that changes nothing the hub keeps (colour map, oversized text).
    Nothing,
}

/// Reads the messages of one upstream connection.
#[derive(Debug)]
pub struct ServerDecoder {
    format: PixelFormat,
    limits: Limits,
    zrle: ZrleDecoder,
    /// Rectangles left in the current update; `Some(None)` until a LastRect.
    rects_left: Option<Option<u16>>,
    /// Bytes of an oversized clipboard text still to discard.
    skip: usize,
    scratch: Vec<u32>,
}

impl ServerDecoder {
    /// A decoder for pixels in `format` (what the client asked the server for).
    pub fn new(format: PixelFormat, limits: Limits) -> Self {
        Self {
            format,
            limits,
            zrle: ZrleDecoder::new(),
            rects_left: None,
            skip: 0,
            scratch: Vec::new(),
        }
    }

    /// Applies one step from the front of `buf` to `fb`: the event and the bytes it took, or
    /// `None` when more bytes are needed.
    pub fn step(
        &mut self,
        buf: &[u8],
        fb: &mut Framebuffer,
    ) -> Result<Option<(Event, usize)>, ProtocolError> {
        if self.skip > 0 {
            let n = self.skip.min(buf.len());
            self.skip -= n;
            return Ok((n > 0).then_some((Event::Nothing, n)));
        }
        let mut r = Reader::new(buf);
        let result = match self.rects_left {
            Some(Some(0)) => {
                self.rects_left = None;
                return Ok(Some((Event::UpdateEnd, 0)));
            }
            Some(_) => self.rect(&mut r, fb),
            None => self.message(&mut r),
        };
        match result {
            Ok(event) => Ok(Some((event, r.consumed()))),
            Err(ParseError::Incomplete) => Ok(None),
            Err(ParseError::Protocol(e)) => Err(e),
        }
    }

    fn message(&mut self, r: &mut Reader<'_>) -> Result<Event, ParseError> {
        match r.u8()? {
            server_kind::FRAMEBUFFER_UPDATE => {
                r.skip(1)?;
                let n = r.u16()?;
                // 0xffff rectangles means "until a LastRect" when LastRect was asked for.
                self.rects_left = Some(if n == 0xffff { None } else { Some(n) });
                Ok(Event::Nothing)
            }
            server_kind::SET_COLOUR_MAP_ENTRIES => {
                r.skip(3)?;
                let n = usize::from(r.u16()?);
                r.skip(n * 6)?;
                Ok(Event::Nothing)
            }
            server_kind::BELL => Ok(Event::Bell),
            server_kind::SERVER_CUT_TEXT => {
                r.skip(3)?;
                let len = r.u32()? as usize;
                if len > self.limits.max_cut_text {
                    self.skip = len;
                    return Ok(Event::Nothing);
                }
                Ok(Event::CutText(r.bytes(len)?.to_vec()))
            }
            kind => Err(ParseError::Protocol(ProtocolError::UnknownMessage {
                side: "server",
                kind,
            })),
        }
    }

    fn rect(&mut self, r: &mut Reader<'_>, fb: &mut Framebuffer) -> Result<Event, ParseError> {
        let rect = Rect::new(r.u16()?, r.u16()?, r.u16()?, r.u16()?);
        let enc = r.i32()?;
        let event = match enc {
            encoding::DESKTOP_SIZE => self.resize(rect.width, rect.height, fb)?,
            encoding::EXTENDED_DESKTOP_SIZE => {
                let n = usize::from(r.u8()?);
                r.skip(3)?;
                if n > self.limits.max_screens {
                    return Err(too_large("screen layout", n, self.limits.max_screens));
                }
                for _ in 0..n {
                    read_screen(r)?;
                }
                // y is the status of a SetDesktopSize we never send; only a success resizes.
                if rect.y == 0 {
                    self.resize(rect.width, rect.height, fb)?
                } else {
                    Event::Nothing
                }
            }
            encoding::LAST_RECT => {
                self.rects_left = Some(Some(0));
                return Ok(Event::Nothing);
            }
            encoding::QEMU_EXTENDED_KEY => Event::QemuKeys,
            encoding::DESKTOP_NAME => {
                let len = r.u32()? as usize;
                if len > self.limits.max_name {
                    return Err(too_large("desktop name", len, self.limits.max_name));
                }
                Event::Name(String::from_utf8_lossy(r.bytes(len)?).into_owned())
            }
            _ => self.pixels(r, rect, enc, fb)?,
        };
        if let Some(Some(n)) = self.rects_left.as_mut() {
            *n = n.saturating_sub(1);
        }
        Ok(event)
    }

    fn resize(
        &mut self,
        width: u16,
        height: u16,
        fb: &mut Framebuffer,
    ) -> Result<Event, ParseError> {
        let (max, pixels) = (self.limits.max_dimension, self.limits.max_pixels);
        let area = usize::from(width) * usize::from(height);
        if width > max || height > max || area > pixels {
            return Err(too_large("screen", area, pixels));
        }
        // Xvnc answers SetEncodings with a DesktopSize of the size it already has: no change,
        // so viewers that cannot follow a resize are not dropped for it.
        if (fb.width(), fb.height()) == (width, height) {
            return Ok(Event::Nothing);
        }
        fb.resize(width, height);
        Ok(Event::Resize { width, height })
    }

    fn pixels(
        &mut self,
        r: &mut Reader<'_>,
        rect: Rect,
        enc: i32,
        fb: &mut Framebuffer,
    ) -> Result<Event, ParseError> {
        if !rect.fits(fb.width(), fb.height()) {
            return Err(ParseError::Protocol(ProtocolError::OutsideScreen {
                rect,
                width: fb.width(),
                height: fb.height(),
            }));
        }
        let bpp = self.format.bytes_per_pixel();
        match enc {
            encoding::RAW => {
                let raw = r.bytes(rect.area() * bpp)?;
                self.scratch.clear();
                self.scratch
                    .extend(raw.chunks_exact(bpp).map(|p| self.format.read_pixel(p)));
                fb.blit(rect, &self.scratch);
                Ok(Event::Damage(rect))
            }
            encoding::COPY_RECT => {
                let (src_x, src_y) = (r.u16()?, r.u16()?);
                let src = Rect::new(src_x, src_y, rect.width, rect.height);
                if !src.fits(fb.width(), fb.height()) {
                    return Err(ParseError::Protocol(ProtocolError::OutsideScreen {
                        rect: src,
                        width: fb.width(),
                        height: fb.height(),
                    }));
                }
                fb.copy(src_x, src_y, rect);
                Ok(Event::Copy {
                    src_x,
                    src_y,
                    dst: rect,
                })
            }
            encoding::ZRLE => {
                let len = r.u32()? as usize;
                let data = r.bytes(len)?;
                self.scratch.clear();
                self.scratch.resize(rect.area(), 0);
                self.zrle.decode(
                    data,
                    rect.width,
                    rect.height,
                    &self.format,
                    &mut self.scratch,
                )?;
                fb.blit(rect, &self.scratch);
                Ok(Event::Damage(rect))
            }
            encoding::HEXTILE => {
                self.hextile(r, rect, fb)?;
                Ok(Event::Damage(rect))
            }
            other => Err(ParseError::Protocol(ProtocolError::UnexpectedEncoding(
                other,
            ))),
        }
    }

    /// Hextile has no length: walk it once to see that it is all there, then draw.
    fn hextile(
        &mut self,
        r: &mut Reader<'_>,
        rect: Rect,
        fb: &mut Framebuffer,
    ) -> Result<(), ParseError> {
        let (w, h) = (usize::from(rect.width), usize::from(rect.height));
        self.scratch.clear();
        self.scratch.resize(rect.area(), 0);
        let mut carry = Carry::default();
        for ty in (0..h).step_by(hextile::TILE) {
            let th = hextile::TILE.min(h - ty);
            for tx in (0..w).step_by(hextile::TILE) {
                let tw = hextile::TILE.min(w - tx);
                let out = &mut self.scratch;
                hextile::decode_tile(r, &self.format, tw, th, &mut carry, |x, y, c| {
                    out[(ty + y) * w + tx + x] = c;
                })?;
            }
        }
        fb.blit(rect, &self.scratch);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rfb::PixelWriter;
    use crate::rfb::encode::{Pseudo, UpdateWriter, ViewerEncodings};
    use bytes::BytesMut;

    fn drain(dec: &mut ServerDecoder, bytes: &[u8], fb: &mut Framebuffer) -> Vec<Event> {
        let mut events = Vec::new();
        let mut at = 0;
        while let Some((event, n)) = dec.step(&bytes[at..], fb).unwrap() {
            at += n;
            if event != Event::Nothing {
                events.push(event);
            }
            if at == bytes.len() && dec.rects_left.is_none() {
                break;
            }
        }
        assert_eq!(at, bytes.len());
        events
    }

    /// A DesktopSize of the size the screen already has (Xvnc's answer to SetEncodings) is no
    /// resize: viewers without DesktopSize were dropped for it when they joined at that moment.
    #[test]
    fn a_desktop_size_of_the_same_size_is_no_resize() {
        let src = Framebuffer::new(150, 90);
        let encodings = ViewerEncodings::from_list(&[encoding::RAW, encoding::DESKTOP_SIZE]);
        let format = PixelFormat::CANONICAL;
        for (have, resized) in [((150, 90), false), ((100, 90), true)] {
            let mut w = UpdateWriter::new(PixelWriter::new(format));
            let mut bytes = BytesMut::new();
            let pseudo = Pseudo {
                resize: Some((150, 90)),
                ..Pseudo::default()
            };
            w.write(&src, pseudo, &[], &[], &encodings, &mut bytes)
                .unwrap();
            let mut dec = ServerDecoder::new(format, Limits::default());
            let mut fb = Framebuffer::new(have.0, have.1);
            let events = drain(&mut dec, &bytes, &mut fb);
            let resize = Event::Resize {
                width: 150,
                height: 90,
            };
            assert_eq!(events.contains(&resize), resized, "{have:?}");
            assert_eq!((fb.width(), fb.height()), (150, 90));
        }
    }

    /// What the hub's encoder writes for a viewer, the hub's decoder reads back, for every
    /// encoding and pixel format, byte by byte or all at once.
    #[test]
    fn encoder_output_decodes_to_the_same_screen() {
        let mut src = Framebuffer::new(150, 90);
        let pixels: Vec<u32> = (0..150 * 90)
            .map(|i| (i as u32).wrapping_mul(2654435761) >> 8)
            .collect();
        src.blit(src.bounds(), &pixels);
        src.fill(Rect::new(0, 0, 150, 30), 0x00ff_0000);
        for enc in [encoding::RAW, encoding::ZRLE] {
            for format in [PixelFormat::CANONICAL, PixelFormat::NOVNC] {
                let encodings = ViewerEncodings::from_list(&[
                    enc,
                    encoding::DESKTOP_SIZE,
                    encoding::DESKTOP_NAME,
                ]);
                let mut w = UpdateWriter::new(PixelWriter::new(format));
                let mut bytes = BytesMut::new();
                let pseudo = Pseudo {
                    resize: Some((150, 90)),
                    qemu_keys: false,
                    name: Some("vm · view only · 1 viewer"),
                };
                w.write(&src, pseudo, &[], &[src.bounds()], &encodings, &mut bytes)
                    .unwrap();
                let mut dec = ServerDecoder::new(format, Limits::default());
                let mut fb = Framebuffer::new(1, 1);
                let events = drain(&mut dec, &bytes, &mut fb);
                assert_eq!(
                    events[0],
                    Event::Resize {
                        width: 150,
                        height: 90
                    }
                );
                assert_eq!(events[1], Event::Name("vm · view only · 1 viewer".into()));
                assert_eq!(events.last(), Some(&Event::UpdateEnd));
                assert_eq!(fb, src, "encoding {enc} {format:?}");
                // Byte by byte: nothing is applied twice, nothing is lost.
                let mut dec = ServerDecoder::new(format, Limits::default());
                let mut fb2 = Framebuffer::new(1, 1);
                let mut buf = Vec::new();
                for b in bytes.iter() {
                    buf.push(*b);
                    while let Some((_, n)) = dec.step(&buf, &mut fb2).unwrap() {
                        buf.drain(..n);
                        if buf.is_empty() && dec.rects_left != Some(Some(0)) {
                            break;
                        }
                    }
                }
                assert_eq!(fb2, src);
            }
        }
    }

    #[test]
    fn copy_rect_and_bounds() {
        let mut fb = Framebuffer::new(8, 8);
        fb.fill(Rect::new(0, 0, 2, 2), 7);
        let mut dec = ServerDecoder::new(PixelFormat::CANONICAL, Limits::default());
        let mut msg = vec![0u8, 0, 0, 1, 0, 4, 0, 4, 0, 2, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0];
        let events = drain(&mut dec, &msg, &mut fb);
        assert_eq!(fb.pixel(5, 5), 7);
        assert!(matches!(
            events[0],
            Event::Copy {
                src_x: 0,
                src_y: 0,
                ..
            }
        ));
        // A source outside the screen is refused, not read out of bounds.
        msg[16..20].copy_from_slice(&[0, 7, 0, 7]);
        let mut dec = ServerDecoder::new(PixelFormat::CANONICAL, Limits::default());
        dec.step(&msg, &mut fb).unwrap();
        assert!(matches!(
            dec.step(&msg[4..], &mut fb),
            Err(ProtocolError::OutsideScreen { .. })
        ));
    }

    #[test]
    fn refuses_huge_screens_and_unknown_messages() {
        let mut fb = Framebuffer::new(8, 8);
        let mut dec = ServerDecoder::new(PixelFormat::CANONICAL, Limits::default());
        let msg = [
            0u8, 0, 0, 1, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x21,
        ];
        dec.step(&msg, &mut fb).unwrap();
        assert!(matches!(
            dec.step(&msg[4..], &mut fb),
            Err(ProtocolError::TooLarge { .. })
        ));
        let mut dec = ServerDecoder::new(PixelFormat::CANONICAL, Limits::default());
        assert!(dec.step(&[77], &mut fb).is_err());
    }
}
