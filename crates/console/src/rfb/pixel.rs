//! Pixel formats (RFC 6143 §7.4) and conversion between a viewer's format and the hub's canonical
//! one.
//!
//! Every framebuffer in this crate holds pixels as `u32` values `0x00RRGGBB` (8 bits a channel),
//! which is exactly [`PixelFormat::CANONICAL`] read as a little-endian word: the format the hub
//! asks the VM's VNC server for, so the upstream path never converts.

use crate::rfb::ProtocolError;

/// An RFB `PIXEL_FORMAT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PixelFormat {
    pub bits_per_pixel: u8,
    pub depth: u8,
    pub big_endian: bool,
    pub true_colour: bool,
    pub red_max: u16,
    pub green_max: u16,
    pub blue_max: u16,
    pub red_shift: u8,
    pub green_shift: u8,
    pub blue_shift: u8,
}

impl PixelFormat {
    /// 32 bits per pixel, depth 24, little endian, red at bit 16, green at 8, blue at 0: the
    /// hub's internal format and what it asks the upstream for (QEMU's and TigerVNC's native one).
    pub const CANONICAL: Self = Self::rgb888(16, 8, 0);

    /// What noVNC asks for at depth 24: red at bit 0, green at 8, blue at 16 (bytes R, G, B, X).
    pub const NOVNC: Self = Self::rgb888(0, 8, 16);

    /// 16 bits per pixel, 5-6-5, little endian.
    pub const RGB565: Self = Self {
        bits_per_pixel: 16,
        depth: 16,
        big_endian: false,
        true_colour: true,
        red_max: 31,
        green_max: 63,
        blue_max: 31,
        red_shift: 11,
        green_shift: 5,
        blue_shift: 0,
    };

    /// 8 bits per pixel, 3-3-2 (red in the low bits), TigerVNC's "low colour" format.
    pub const BGR233: Self = Self {
        bits_per_pixel: 8,
        depth: 8,
        big_endian: false,
        true_colour: true,
        red_max: 7,
        green_max: 7,
        blue_max: 3,
        red_shift: 0,
        green_shift: 3,
        blue_shift: 6,
    };

    /// 32-bit little-endian true colour, 8 bits a channel, at the given shifts.
    pub const fn rgb888(red_shift: u8, green_shift: u8, blue_shift: u8) -> Self {
        Self {
            bits_per_pixel: 32,
            depth: 24,
            big_endian: false,
            true_colour: true,
            red_max: 255,
            green_max: 255,
            blue_max: 255,
            red_shift,
            green_shift,
            blue_shift,
        }
    }

    /// Parses the 16-byte wire form.
    pub fn from_bytes(b: &[u8; 16]) -> Self {
        Self {
            bits_per_pixel: b[0],
            depth: b[1],
            big_endian: b[2] != 0,
            true_colour: b[3] != 0,
            red_max: u16::from_be_bytes([b[4], b[5]]),
            green_max: u16::from_be_bytes([b[6], b[7]]),
            blue_max: u16::from_be_bytes([b[8], b[9]]),
            red_shift: b[10],
            green_shift: b[11],
            blue_shift: b[12],
        }
    }

    /// The 16-byte wire form (three bytes of padding at the end).
    pub fn to_bytes(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0] = self.bits_per_pixel;
        b[1] = self.depth;
        b[2] = self.big_endian as u8;
        b[3] = self.true_colour as u8;
        b[4..6].copy_from_slice(&self.red_max.to_be_bytes());
        b[6..8].copy_from_slice(&self.green_max.to_be_bytes());
        b[8..10].copy_from_slice(&self.blue_max.to_be_bytes());
        b[10] = self.red_shift;
        b[11] = self.green_shift;
        b[12] = self.blue_shift;
        b
    }

    /// Checks that pixels in this format can be produced and read: true colour, 8, 16 or 32 bits
    /// per pixel, every channel non-empty and inside the pixel. Colour-map formats are refused:
    /// no client in use asks for one (noVNC and TigerVNC ask for true colour at every depth).
    pub fn validate(&self) -> Result<(), ProtocolError> {
        let refuse = |why: &str| Err(ProtocolError::UnsupportedPixelFormat(why.to_string()));
        if !self.true_colour {
            return refuse("colour-map pixel formats are not supported, ask for true colour");
        }
        if !matches!(self.bits_per_pixel, 8 | 16 | 32) {
            return refuse("bits per pixel must be 8, 16 or 32");
        }
        for (max, shift) in [
            (self.red_max, self.red_shift),
            (self.green_max, self.green_shift),
            (self.blue_max, self.blue_shift),
        ] {
            let bits = 16 - max.leading_zeros();
            if max == 0 || u32::from(shift) + bits > u32::from(self.bits_per_pixel) {
                return refuse("a colour channel is empty or does not fit in the pixel");
            }
        }
        Ok(())
    }

    /// Bytes a pixel takes on the wire.
    pub fn bytes_per_pixel(&self) -> usize {
        usize::from(self.bits_per_pixel / 8)
    }

    /// Whether this format's wire bytes are the canonical `u32` in little-endian order.
    pub fn is_canonical(&self) -> bool {
        let mut other = *self;
        other.depth = 24;
        other == Self::CANONICAL
    }

    /// ZRLE's compressed pixel (RFC 6143 §7.7.6): 3 bytes when 32 bits per pixel hold true
    /// colour of depth 24 or less that fits in the least or the most significant 3 bytes;
    /// otherwise a whole pixel. Returns the length and the offset of those bytes in the pixel's
    /// wire form.
    pub fn cpixel(&self) -> (usize, usize) {
        if self.bits_per_pixel != 32 || !self.true_colour || self.depth > 24 {
            return (self.bytes_per_pixel(), 0);
        }
        let top = |max: u16, shift: u8| u32::from(shift) + (16 - max.leading_zeros());
        let highest = top(self.red_max, self.red_shift)
            .max(top(self.green_max, self.green_shift))
            .max(top(self.blue_max, self.blue_shift));
        let lowest = self.red_shift.min(self.green_shift).min(self.blue_shift);
        let fits_low = highest <= 24;
        let fits_high = lowest >= 8;
        match (fits_low, fits_high, self.big_endian) {
            (true, _, false) => (3, 0),
            (true, _, true) => (3, 1),
            (false, true, false) => (3, 1),
            (false, true, true) => (3, 0),
            _ => (4, 0),
        }
    }

    /// Reads one pixel (`bytes_per_pixel` bytes) into the canonical `0x00RRGGBB`.
    pub fn read_pixel(&self, bytes: &[u8]) -> u32 {
        let value = match (self.bits_per_pixel, self.big_endian) {
            (8, _) => u32::from(bytes[0]),
            (16, false) => u32::from(u16::from_le_bytes([bytes[0], bytes[1]])),
            (16, true) => u32::from(u16::from_be_bytes([bytes[0], bytes[1]])),
            (_, false) => u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
            (_, true) => u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
        };
        self.to_canonical(value)
    }

    /// Reads a ZRLE compressed pixel (`cpixel().0` bytes).
    pub fn read_cpixel(&self, bytes: &[u8]) -> u32 {
        let (len, offset) = self.cpixel();
        if len == self.bytes_per_pixel() {
            return self.read_pixel(bytes);
        }
        let mut whole = [0u8; 4];
        whole[offset..offset + 3].copy_from_slice(&bytes[..3]);
        self.read_pixel(&whole)
    }

    /// A pixel value in this format to canonical.
    pub fn to_canonical(&self, value: u32) -> u32 {
        let channel = |shift: u8, max: u16| {
            let max = u32::from(max);
            let v = (value >> shift) & max;
            if max == 255 {
                v
            } else {
                (v * 255 + max / 2) / max
            }
        };
        (channel(self.red_shift, self.red_max) << 16)
            | (channel(self.green_shift, self.green_max) << 8)
            | channel(self.blue_shift, self.blue_max)
    }
}

/// Writes canonical pixels in one [`PixelFormat`], with per-channel tables so that every format
/// costs the same three lookups a pixel (the canonical format is a plain copy).
#[derive(Clone)]
pub struct PixelWriter {
    format: PixelFormat,
    red: Box<[u32; 256]>,
    green: Box<[u32; 256]>,
    blue: Box<[u32; 256]>,
    cpixel: (usize, usize),
}

impl std::fmt::Debug for PixelWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PixelWriter")
            .field("format", &self.format)
            .finish()
    }
}

impl PixelWriter {
    /// A writer for a validated `format`.
    pub fn new(format: PixelFormat) -> Self {
        let table = |max: u16, shift: u8| {
            let mut t = Box::new([0u32; 256]);
            let max = u32::from(max);
            for (v, slot) in t.iter_mut().enumerate() {
                *slot = ((v as u32 * max + 127) / 255) << shift;
            }
            t
        };
        Self {
            format,
            red: table(format.red_max, format.red_shift),
            green: table(format.green_max, format.green_shift),
            blue: table(format.blue_max, format.blue_shift),
            cpixel: format.cpixel(),
        }
    }

    /// The format written.
    pub fn format(&self) -> &PixelFormat {
        &self.format
    }

    /// A canonical pixel as a value of this format.
    #[inline]
    pub fn value(&self, rgb: u32) -> u32 {
        self.red[(rgb >> 16) as usize & 255]
            | self.green[(rgb >> 8) as usize & 255]
            | self.blue[rgb as usize & 255]
    }

    /// Appends `pixels` in this format.
    pub fn write_pixels(&self, pixels: &[u32], out: &mut Vec<u8>) {
        if self.format.is_canonical() {
            out.reserve(pixels.len() * 4);
            for p in pixels {
                out.extend_from_slice(&(p & 0x00ff_ffff).to_le_bytes());
            }
            return;
        }
        out.reserve(pixels.len() * self.format.bytes_per_pixel());
        for &p in pixels {
            self.write_value(self.value(p), out);
        }
    }

    #[inline]
    fn write_value(&self, v: u32, out: &mut Vec<u8>) {
        match (self.format.bits_per_pixel, self.format.big_endian) {
            (8, _) => out.push(v as u8),
            (16, false) => out.extend_from_slice(&(v as u16).to_le_bytes()),
            (16, true) => out.extend_from_slice(&(v as u16).to_be_bytes()),
            (_, false) => out.extend_from_slice(&v.to_le_bytes()),
            (_, true) => out.extend_from_slice(&v.to_be_bytes()),
        }
    }

    /// Bytes of a ZRLE compressed pixel.
    pub fn cpixel_len(&self) -> usize {
        self.cpixel.0
    }

    /// Appends one ZRLE compressed pixel.
    #[inline]
    pub fn write_cpixel(&self, rgb: u32, out: &mut Vec<u8>) {
        let (len, offset) = self.cpixel;
        if len == self.format.bytes_per_pixel() {
            self.write_value(self.value(rgb), out);
            return;
        }
        let v = self.value(rgb);
        let whole = if self.format.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        out.extend_from_slice(&whole[offset..offset + 3]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn formats() -> Vec<PixelFormat> {
        let mut big = PixelFormat::CANONICAL;
        big.big_endian = true;
        let mut rgb565_be = PixelFormat::RGB565;
        rgb565_be.big_endian = true;
        // Channels in the top three bytes (TigerVNC can ask for this).
        let high = PixelFormat::rgb888(24, 16, 8);
        let mut high_be = high;
        high_be.big_endian = true;
        vec![
            PixelFormat::CANONICAL,
            PixelFormat::NOVNC,
            PixelFormat::RGB565,
            PixelFormat::BGR233,
            big,
            rgb565_be,
            high,
            high_be,
        ]
    }

    #[test]
    fn wire_form_round_trips() {
        for f in formats() {
            assert_eq!(PixelFormat::from_bytes(&f.to_bytes()), f);
            f.validate().unwrap();
        }
        assert_eq!(
            PixelFormat::CANONICAL.to_bytes(),
            [32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0]
        );
    }

    #[test]
    fn refuses_what_it_cannot_produce() {
        let mut colour_map = PixelFormat::CANONICAL;
        colour_map.true_colour = false;
        let mut bpp24 = PixelFormat::CANONICAL;
        bpp24.bits_per_pixel = 24;
        let mut overflow = PixelFormat::RGB565;
        overflow.red_shift = 12;
        let mut empty = PixelFormat::CANONICAL;
        empty.green_max = 0;
        for f in [colour_map, bpp24, overflow, empty] {
            assert!(f.validate().is_err(), "{f:?}");
        }
    }

    #[test]
    fn cpixel_sizes_follow_rfc_6143() {
        assert_eq!(PixelFormat::CANONICAL.cpixel(), (3, 0));
        assert_eq!(PixelFormat::NOVNC.cpixel(), (3, 0));
        let mut big = PixelFormat::CANONICAL;
        big.big_endian = true;
        assert_eq!(big.cpixel(), (3, 1));
        assert_eq!(PixelFormat::rgb888(24, 16, 8).cpixel(), (3, 1));
        assert_eq!(PixelFormat::RGB565.cpixel(), (2, 0));
        assert_eq!(PixelFormat::BGR233.cpixel(), (1, 0));
        let mut deep = PixelFormat::CANONICAL;
        deep.depth = 32;
        assert_eq!(deep.cpixel(), (4, 0));
    }

    #[test]
    fn canonical_bytes_are_the_word_little_endian() {
        let w = PixelWriter::new(PixelFormat::CANONICAL);
        let mut out = Vec::new();
        w.write_pixels(&[0x0012_3456], &mut out);
        assert_eq!(out, [0x56, 0x34, 0x12, 0]);
        let n = PixelWriter::new(PixelFormat::NOVNC);
        out.clear();
        n.write_pixels(&[0x0012_3456], &mut out);
        assert_eq!(out, [0x12, 0x34, 0x56, 0]);
        out.clear();
        n.write_cpixel(0x0012_3456, &mut out);
        assert_eq!(out, [0x12, 0x34, 0x56]);
    }

    proptest! {
        #[test]
        fn write_then_read_is_exact_at_8_bits_a_channel(rgb in 0u32..0x0100_0000) {
            for f in formats().into_iter().filter(|f| f.red_max == 255) {
                let w = PixelWriter::new(f);
                let mut out = Vec::new();
                w.write_pixels(&[rgb], &mut out);
                prop_assert_eq!(f.read_pixel(&out), rgb);
                out.clear();
                w.write_cpixel(rgb, &mut out);
                prop_assert_eq!(out.len(), f.cpixel().0);
                prop_assert_eq!(f.read_cpixel(&out), rgb);
            }
        }

        #[test]
        fn fewer_bits_quantise_once(rgb in 0u32..0x0100_0000) {
            for f in formats() {
                let w = PixelWriter::new(f);
                let mut out = Vec::new();
                w.write_pixels(&[rgb], &mut out);
                let once = f.read_pixel(&out);
                // Quantising an already quantised colour changes nothing...
                let mut again = Vec::new();
                w.write_pixels(&[once], &mut again);
                prop_assert_eq!(&again, &out);
                // ...and stays close to the original in every channel.
                for shift in [16, 8, 0] {
                    let a = (rgb >> shift) & 255;
                    let b = (once >> shift) & 255;
                    prop_assert!(a.abs_diff(b) <= 128 / 3 + 1, "{:?} {:06x} -> {:06x}", f, rgb, once);
                }
            }
        }
    }
}
