//! Hextile decoding (RFC 6143 §7.7.4), read tile by tile as bytes arrive (a Hextile rectangle
//! has no length prefix). Both QEMU and TigerVNC can send it; the hub asks for ZRLE first, so
//! Hextile only arrives from a server that picks it.

use crate::rfb::messages::ParseError;
use crate::rfb::wire::Reader;
use crate::rfb::{PixelFormat, ProtocolError};

/// Tile side.
pub const TILE: usize = 16;

const RAW: u8 = 1;
const BACKGROUND: u8 = 2;
const FOREGROUND: u8 = 4;
const ANY_SUBRECTS: u8 = 8;
const SUBRECTS_COLOURED: u8 = 16;

/// Colours carried from one tile to the next.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Carry {
    pub background: u32,
    pub foreground: u32,
}

/// Reads one `tw` x `th` tile from `r` into `put(x, y, colour)` calls (tile-relative). Returns
/// [`ParseError::Incomplete`] without side effects on `carry` when the tile is not all there.
pub(crate) fn decode_tile(
    r: &mut Reader<'_>,
    format: &PixelFormat,
    tw: usize,
    th: usize,
    carry: &mut Carry,
    mut put: impl FnMut(usize, usize, u32),
) -> Result<(), ParseError> {
    let bpp = format.bytes_per_pixel();
    let flags = r.u8()?;
    if flags & RAW != 0 {
        let raw = r.bytes(tw * th * bpp)?;
        for (i, px) in raw.chunks_exact(bpp).enumerate() {
            put(i % tw, i / tw, format.read_pixel(px));
        }
        return Ok(());
    }
    let mut next = *carry;
    if flags & BACKGROUND != 0 {
        next.background = format.read_pixel(r.bytes(bpp)?);
    }
    if flags & FOREGROUND != 0 {
        next.foreground = format.read_pixel(r.bytes(bpp)?);
    }
    // Parse the whole tile before drawing, so an incomplete tile draws nothing.
    let mut subrects = Vec::new();
    if flags & ANY_SUBRECTS != 0 {
        let n = usize::from(r.u8()?);
        let coloured = flags & SUBRECTS_COLOURED != 0;
        subrects.reserve(n);
        for _ in 0..n {
            let colour = if coloured {
                format.read_pixel(r.bytes(bpp)?)
            } else {
                next.foreground
            };
            let xy = r.u8()?;
            let wh = r.u8()?;
            let (x, y) = (usize::from(xy >> 4), usize::from(xy & 15));
            let (w, h) = (usize::from(wh >> 4) + 1, usize::from(wh & 15) + 1);
            if x + w > tw || y + h > th {
                return Err(ParseError::Protocol(ProtocolError::malformed(
                    "Hextile",
                    format!("subrectangle {x},{y} {w}x{h} outside a {tw}x{th} tile"),
                )));
            }
            subrects.push((colour, x, y, w, h));
        }
    }
    for y in 0..th {
        for x in 0..tw {
            put(x, y, next.background);
        }
    }
    for (colour, x, y, w, h) in subrects {
        for yy in y..y + h {
            for xx in x..x + w {
                put(xx, yy, colour);
            }
        }
    }
    *carry = next;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8], tw: usize, th: usize, carry: &mut Carry) -> Result<Vec<u32>, bool> {
        let mut out = vec![u32::MAX; tw * th];
        let mut r = Reader::new(bytes);
        match decode_tile(&mut r, &PixelFormat::CANONICAL, tw, th, carry, |x, y, c| {
            out[y * tw + x] = c
        }) {
            Ok(()) => {
                assert_eq!(r.remaining(), 0);
                Ok(out)
            }
            Err(ParseError::Incomplete) => Err(true),
            Err(ParseError::Protocol(_)) => Err(false),
        }
    }

    #[test]
    fn flags_and_carried_colours() {
        let mut carry = Carry::default();
        // Raw 2x1.
        assert_eq!(
            decode(&[RAW, 1, 0, 0, 0, 2, 0, 0, 0], 2, 1, &mut carry).unwrap(),
            [1, 2]
        );
        // Background only.
        assert_eq!(
            decode(&[BACKGROUND, 7, 0, 0, 0], 2, 2, &mut carry).unwrap(),
            [7; 4]
        );
        // Carried background, foreground and one 1x2 subrect at (1,0).
        let tile = [FOREGROUND | ANY_SUBRECTS, 9, 0, 0, 0, 1, 0x10, 0x01];
        assert_eq!(decode(&tile, 2, 2, &mut carry).unwrap(), [7, 9, 7, 9]);
        assert_eq!(carry.foreground, 9);
        // Coloured subrects.
        let tile = [ANY_SUBRECTS | SUBRECTS_COLOURED, 1, 3, 0, 0, 0, 0x01, 0x00];
        assert_eq!(decode(&tile, 2, 2, &mut carry).unwrap(), [7, 7, 3, 7]);
    }

    #[test]
    fn incomplete_tiles_change_nothing_and_bad_subrects_are_refused() {
        let mut carry = Carry::default();
        let tile = [BACKGROUND | FOREGROUND, 5, 0, 0, 0, 6, 0];
        assert_eq!(decode(&tile, 4, 4, &mut carry), Err(true));
        assert_eq!(carry, Carry::default());
        let outside = [ANY_SUBRECTS, 1, 0x33, 0x11];
        assert_eq!(decode(&outside, 4, 4, &mut carry), Err(false));
    }
}
