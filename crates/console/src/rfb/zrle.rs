//! ZRLE (RFC 6143 §7.7.6): 64x64 tiles, each raw, solid, packed palette, run-length or palette
//! run-length, all through one zlib stream per connection (flushed at the end of every
//! rectangle, so the receiver can decode a rectangle as soon as it has it).
//!
//! The encoder picks, per tile, the subencoding with the fewest bytes, as libvncserver and
//! TigerVNC do. The decoder checks every palette index and run length against the tile.

use bytes::{BufMut, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::rfb::wire::Reader;
use crate::rfb::{PixelFormat, PixelWriter, ProtocolError};

/// Tile side.
pub const TILE: usize = 64;
/// Largest palette a tile may have.
const MAX_PALETTE: usize = 127;

fn malformed(why: impl Into<String>) -> ProtocolError {
    ProtocolError::malformed("ZRLE", why)
}

/// Reads ZRLE rectangles of one connection.
pub struct ZrleDecoder {
    inflate: Decompress,
    data: Vec<u8>,
}

impl std::fmt::Debug for ZrleDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZrleDecoder").finish_non_exhaustive()
    }
}

impl Default for ZrleDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ZrleDecoder {
    pub fn new() -> Self {
        Self {
            inflate: Decompress::new(true),
            data: Vec::new(),
        }
    }

    /// Decodes the zlib data of one `width` x `height` rectangle into `out` (canonical pixels,
    /// row by row, `width * height` of them).
    pub fn decode(
        &mut self,
        compressed: &[u8],
        width: u16,
        height: u16,
        format: &PixelFormat,
        out: &mut [u32],
    ) -> Result<(), ProtocolError> {
        let (w, h) = (usize::from(width), usize::from(height));
        let cpx = format.cpixel().0;
        // The most a rectangle's tiles can take: a run-length tile of single pixels costs
        // cpx + 1 bytes a pixel, plus a palette and a subencoding byte per tile.
        let tiles = w.div_ceil(TILE) * h.div_ceil(TILE);
        let cap = w * h * (cpx + 1) + tiles * (1 + MAX_PALETTE * cpx) + 64;
        self.inflate_all(compressed, cap)?;
        let mut r = Reader::new(&self.data);
        for ty in (0..h).step_by(TILE) {
            let th = TILE.min(h - ty);
            for tx in (0..w).step_by(TILE) {
                let tw = TILE.min(w - tx);
                decode_tile(&mut r, format, cpx, tw, th, |i, colour| {
                    out[(ty + i / tw) * w + tx + i % tw] = colour;
                })?;
            }
        }
        if r.remaining() != 0 {
            return Err(malformed(format!(
                "{} bytes left after the last tile",
                r.remaining()
            )));
        }
        Ok(())
    }

    fn inflate_all(&mut self, input: &[u8], cap: usize) -> Result<(), ProtocolError> {
        self.data.clear();
        let start = self.inflate.total_in();
        loop {
            if self.data.len() == self.data.capacity() {
                if self.data.len() >= cap {
                    return Err(malformed("inflates to more than the rectangle can hold"));
                }
                let more = (input.len() * 4).max(64 * 1024).min(cap - self.data.len());
                self.data.reserve_exact(more);
            }
            let consumed = (self.inflate.total_in() - start) as usize;
            let out_before = self.data.len();
            let status = self
                .inflate
                .decompress_vec(&input[consumed..], &mut self.data, FlushDecompress::Sync)
                .map_err(|e| malformed(format!("zlib: {e}")))?;
            let consumed_now = (self.inflate.total_in() - start) as usize;
            let room_left = self.data.len() < self.data.capacity();
            if consumed_now == input.len() && room_left {
                return Ok(());
            }
            if status == Status::StreamEnd {
                return Err(malformed("the zlib stream ended"));
            }
            if consumed_now == consumed && self.data.len() == out_before && room_left {
                return Err(malformed("zlib data is truncated"));
            }
        }
    }
}

fn decode_tile(
    r: &mut Reader<'_>,
    format: &PixelFormat,
    cpx: usize,
    tw: usize,
    th: usize,
    mut put: impl FnMut(usize, u32),
) -> Result<(), ProtocolError> {
    let ends = |_| malformed("data ends inside a tile");
    let size = tw * th;
    let sub = r.u8().map_err(ends)?;
    let mut palette = [0u32; MAX_PALETTE];
    let mut read_palette = |r: &mut Reader<'_>, n: usize| -> Result<(), ProtocolError> {
        for slot in palette.iter_mut().take(n) {
            *slot = format.read_cpixel(r.bytes(cpx).map_err(ends)?);
        }
        Ok(())
    };
    match sub {
        0 => {
            let raw = r.bytes(size * cpx).map_err(ends)?;
            for (i, px) in raw.chunks_exact(cpx).enumerate() {
                put(i, format.read_cpixel(px));
            }
        }
        1 => {
            let colour = format.read_cpixel(r.bytes(cpx).map_err(ends)?);
            (0..size).for_each(|i| put(i, colour));
        }
        2..=16 => {
            let n = usize::from(sub);
            read_palette(r, n)?;
            let bits = match n {
                2 => 1,
                3..=4 => 2,
                _ => 4,
            };
            let row_bytes = (tw * bits).div_ceil(8);
            let packed = r.bytes(row_bytes * th).map_err(ends)?;
            for y in 0..th {
                let row = &packed[y * row_bytes..(y + 1) * row_bytes];
                for x in 0..tw {
                    let bit = x * bits;
                    let index = (row[bit / 8] >> (8 - bits - bit % 8)) & ((1 << bits) - 1);
                    let index = usize::from(index);
                    if index >= n {
                        return Err(malformed(format!("palette index {index} of {n}")));
                    }
                    put(y * tw + x, palette[index]);
                }
            }
        }
        128 => {
            let mut i = 0;
            while i < size {
                let colour = format.read_cpixel(r.bytes(cpx).map_err(ends)?);
                let len = run_length(r, size - i)?;
                (i..i + len).for_each(|j| put(j, colour));
                i += len;
            }
        }
        130..=255 => {
            let n = usize::from(sub - 128);
            read_palette(r, n)?;
            let mut i = 0;
            while i < size {
                let byte = r.u8().map_err(ends)?;
                let index = usize::from(byte & 127);
                if index >= n {
                    return Err(malformed(format!("palette index {index} of {n}")));
                }
                let len = if byte & 128 != 0 {
                    run_length(r, size - i)?
                } else {
                    1
                };
                (i..i + len).for_each(|j| put(j, palette[index]));
                i += len;
            }
        }
        other => return Err(malformed(format!("subencoding {other}"))),
    }
    Ok(())
}

fn run_length(r: &mut Reader<'_>, left: usize) -> Result<usize, ProtocolError> {
    let mut len = 1usize;
    loop {
        let b = r
            .u8()
            .map_err(|_| malformed("data ends inside a run length"))?;
        len += usize::from(b);
        if len > left {
            return Err(malformed(format!(
                "run of {len} pixels, {left} left in the tile"
            )));
        }
        if b != 255 {
            return Ok(len);
        }
    }
}

/// A small open-addressing colour table for a tile's palette.
struct Palette {
    keys: [u32; 256],
    slots: [u8; 256],
    colours: Vec<u32>,
    overflow: bool,
}

const EMPTY: u8 = u8::MAX;

impl Palette {
    fn new() -> Self {
        Self {
            keys: [0; 256],
            slots: [EMPTY; 256],
            colours: Vec::with_capacity(MAX_PALETTE),
            overflow: false,
        }
    }

    fn clear(&mut self) {
        self.slots = [EMPTY; 256];
        self.colours.clear();
        self.overflow = false;
    }

    fn hash(c: u32) -> usize {
        (c.wrapping_mul(0x9E37_79B1) >> 24) as usize
    }

    fn add(&mut self, c: u32) {
        if self.overflow {
            return;
        }
        let mut h = Self::hash(c);
        while self.slots[h] != EMPTY {
            if self.keys[h] == c {
                return;
            }
            h = (h + 1) & 255;
        }
        if self.colours.len() == MAX_PALETTE {
            self.overflow = true;
            return;
        }
        self.keys[h] = c;
        self.slots[h] = self.colours.len() as u8;
        self.colours.push(c);
    }

    fn index(&self, c: u32) -> u8 {
        let mut h = Self::hash(c);
        loop {
            if self.keys[h] == c && self.slots[h] != EMPTY {
                return self.slots[h];
            }
            h = (h + 1) & 255;
        }
    }
}

/// Writes ZRLE rectangles of one connection.
pub struct ZrleEncoder {
    deflate: Compress,
    tiles: Vec<u8>,
    zbuf: Vec<u8>,
    palette: Box<Palette>,
}

impl std::fmt::Debug for ZrleEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZrleEncoder").finish_non_exhaustive()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Choice {
    Raw,
    Solid,
    Packed,
    PlainRle,
    PaletteRle,
}

impl ZrleEncoder {
    /// An encoder compressing at zlib `level` (0..=9).
    pub fn new(level: u32) -> Self {
        Self {
            deflate: Compress::new(Compression::new(level.min(9)), true),
            tiles: Vec::new(),
            zbuf: Vec::new(),
            palette: Box::new(Palette::new()),
        }
    }

    /// Appends the data of one `width` x `height` rectangle of canonical `pixels` (row by row):
    /// its length and its zlib bytes.
    pub fn encode(
        &mut self,
        pixels: &[u32],
        width: u16,
        height: u16,
        writer: &PixelWriter,
        out: &mut BytesMut,
    ) {
        let (w, h) = (usize::from(width), usize::from(height));
        debug_assert_eq!(pixels.len(), w * h);
        self.tiles.clear();
        for ty in (0..h).step_by(TILE) {
            let th = TILE.min(h - ty);
            for tx in (0..w).step_by(TILE) {
                let tw = TILE.min(w - tx);
                self.encode_tile(pixels, w, tx, ty, tw, th, writer);
            }
        }
        self.compress();
        out.put_u32(self.zbuf.len() as u32);
        out.put_slice(&self.zbuf);
    }

    fn compress(&mut self) {
        self.zbuf.clear();
        let start = self.deflate.total_in();
        loop {
            if self.zbuf.len() == self.zbuf.capacity() {
                self.zbuf.reserve(self.tiles.len() / 2 + 1024);
            }
            let consumed = (self.deflate.total_in() - start) as usize;
            // Compressing into a Vec with spare room cannot fail: flate2 only errors on a
            // misused stream, and this one is only ever fed whole, sync-flushed rectangles.
            let _ = self.deflate.compress_vec(
                &self.tiles[consumed..],
                &mut self.zbuf,
                FlushCompress::Sync,
            );
            let done = (self.deflate.total_in() - start) as usize == self.tiles.len();
            if done && self.zbuf.len() < self.zbuf.capacity() {
                return;
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn encode_tile(
        &mut self,
        pixels: &[u32],
        stride: usize,
        tx: usize,
        ty: usize,
        tw: usize,
        th: usize,
        writer: &PixelWriter,
    ) {
        let cpx = writer.cpixel_len();
        let row = |y: usize| &pixels[(ty + y) * stride + tx..(ty + y) * stride + tx + tw];
        // One pass: the palette (up to 127 colours), the runs and what runs cost.
        self.palette.clear();
        let (mut runs, mut singles, mut run_length_bytes) = (0usize, 0usize, 0usize);
        let mut prev = row(0)[0];
        let mut len = 0usize;
        self.palette.add(prev);
        for y in 0..th {
            for &p in row(y) {
                if p == prev {
                    len += 1;
                    continue;
                }
                runs += 1;
                singles += (len == 1) as usize;
                run_length_bytes += (len - 1) / 255 + 1;
                self.palette.add(p);
                prev = p;
                len = 1;
            }
        }
        runs += 1;
        singles += (len == 1) as usize;
        run_length_bytes += (len - 1) / 255 + 1;

        let n = self.palette.colours.len();
        let mut best = (Choice::Raw, tw * th * cpx);
        let mut consider = |choice, bytes| {
            if bytes < best.1 {
                best = (choice, bytes);
            }
        };
        consider(Choice::PlainRle, runs * cpx + run_length_bytes);
        if !self.palette.overflow {
            if n == 1 {
                consider(Choice::Solid, cpx);
            }
            // Runs of one pixel cost just their index byte.
            consider(
                Choice::PaletteRle,
                n * cpx + runs + run_length_bytes - singles,
            );
            if n <= 16 {
                let bits = palette_bits(n);
                consider(Choice::Packed, n * cpx + th * (tw * bits).div_ceil(8));
            }
        }

        let out = &mut self.tiles;
        match best.0 {
            Choice::Raw => {
                out.push(0);
                for y in 0..th {
                    for &p in row(y) {
                        writer.write_cpixel(p, out);
                    }
                }
            }
            Choice::Solid => {
                out.push(1);
                writer.write_cpixel(self.palette.colours[0], out);
            }
            Choice::Packed => {
                out.push(n as u8);
                for &c in &self.palette.colours {
                    writer.write_cpixel(c, out);
                }
                let bits = palette_bits(n);
                for y in 0..th {
                    let (mut byte, mut used) = (0u8, 0usize);
                    for &p in row(y) {
                        byte |= self.palette.index(p) << (8 - bits - used);
                        used += bits;
                        if used == 8 {
                            out.push(byte);
                            (byte, used) = (0, 0);
                        }
                    }
                    if used > 0 {
                        out.push(byte);
                    }
                }
            }
            Choice::PlainRle | Choice::PaletteRle => {
                let palette = best.0 == Choice::PaletteRle;
                if palette {
                    out.push(128 + n as u8);
                    for &c in &self.palette.colours {
                        writer.write_cpixel(c, out);
                    }
                } else {
                    out.push(128);
                }
                let emit = |colour: u32, len: usize, out: &mut Vec<u8>| {
                    if palette {
                        let index = self.palette.index(colour);
                        if len == 1 {
                            out.push(index);
                            return;
                        }
                        out.push(index | 128);
                    } else {
                        writer.write_cpixel(colour, out);
                    }
                    let mut rest = len - 1;
                    while rest >= 255 {
                        out.push(255);
                        rest -= 255;
                    }
                    out.push(rest as u8);
                };
                let mut prev = row(0)[0];
                let mut len = 0usize;
                for y in 0..th {
                    for &p in row(y) {
                        if p == prev {
                            len += 1;
                        } else {
                            emit(prev, len, out);
                            prev = p;
                            len = 1;
                        }
                    }
                }
                emit(prev, len, out);
            }
        }
    }
}

fn palette_bits(n: usize) -> usize {
    match n {
        0..=2 => 1,
        3..=4 => 2,
        _ => 4,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Images that push the encoder into each subencoding.
    pub(crate) fn samples(w: usize, h: usize) -> Vec<Vec<u32>> {
        let solid = vec![0x1565c0; w * h];
        let two = (0..w * h)
            .map(|i| {
                if (i / w + i % w).is_multiple_of(2) {
                    0xffffff
                } else {
                    0
                }
            })
            .collect();
        let sixteen = (0..w * h).map(|i| ((i % 16) as u32) * 0x111111).collect();
        let stripes = (0..w * h)
            .map(|i| if (i % w) < w / 2 { 0xc62828 } else { 0x2e7d32 })
            .collect();
        let many_runs = (0..w * h)
            .map(|i| ((i / 7) % 100) as u32 * 0x010203)
            .collect();
        let noise = (0..w * h)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761) & 0xffffff)
            .collect();
        let long_runs = (0..w * h).map(|i| if i < 1000 { 1 } else { 2 }).collect();
        vec![solid, two, sixteen, stripes, many_runs, noise, long_runs]
    }

    fn round_trip(format: PixelFormat, w: u16, h: u16, pixels: &[u32], level: u32) -> Vec<u32> {
        let writer = PixelWriter::new(format);
        let mut enc = ZrleEncoder::new(level);
        let mut dec = ZrleDecoder::new();
        let mut out = vec![0u32; pixels.len()];
        // Twice through the same streams: the zlib state carries over between rectangles.
        for _ in 0..2 {
            let mut wire = BytesMut::new();
            enc.encode(pixels, w, h, &writer, &mut wire);
            let len = u32::from_be_bytes(wire[..4].try_into().unwrap()) as usize;
            assert_eq!(len + 4, wire.len());
            dec.decode(&wire[4..], w, h, &format, &mut out).unwrap();
        }
        out
    }

    fn quantised(format: PixelFormat, pixels: &[u32]) -> Vec<u32> {
        let w = PixelWriter::new(format);
        pixels
            .iter()
            .map(|&p| {
                let mut b = Vec::new();
                w.write_pixels(&[p], &mut b);
                format.read_pixel(&b)
            })
            .collect()
    }

    #[test]
    fn every_subencoding_round_trips_in_every_format() {
        for format in [
            PixelFormat::CANONICAL,
            PixelFormat::NOVNC,
            PixelFormat::RGB565,
            PixelFormat::BGR233,
        ] {
            for (w, h) in [(64, 64), (130, 70), (1, 1), (63, 129)] {
                for pixels in samples(w, h) {
                    let got = round_trip(format, w as u16, h as u16, &pixels, 1);
                    assert_eq!(got, quantised(format, &pixels), "{format:?} {w}x{h}");
                }
            }
        }
    }

    #[test]
    fn picks_compact_subencodings() {
        let writer = PixelWriter::new(PixelFormat::CANONICAL);
        let mut enc = ZrleEncoder::new(0);
        let mut out = BytesMut::new();
        // A solid tile is one subencoding byte and one 3-byte pixel.
        enc.encode(&vec![0x123456; 64 * 64], 64, 64, &writer, &mut out);
        assert_eq!(enc.tiles, [1, 0x56, 0x34, 0x12]);
        // Two colours pack at one bit a pixel.
        let two: Vec<u32> = (0..64 * 64).map(|i| (i % 2) as u32).collect();
        enc.encode(&two, 64, 64, &writer, &mut out);
        assert_eq!(enc.tiles[0], 2);
        assert_eq!(enc.tiles.len(), 1 + 2 * 3 + 64 * 8);
    }

    #[test]
    fn refuses_malformed_tiles() {
        let format = PixelFormat::CANONICAL;
        let mut long_run = vec![128u8, 1, 2, 3];
        long_run.extend([255u8; 17]);
        long_run.push(0);
        let bad: Vec<Vec<u8>> = vec![
            vec![17],                        // reserved subencoding
            vec![129],                       // reserved subencoding
            vec![2, 0, 0, 0, 1, 1, 1, 0xff], // packed tile too short
            long_run,                        // a run longer than the tile
            vec![130, 1, 2, 3, 4, 5, 6, 5],  // palette index 5 of 2
            vec![1, 1, 2, 3, 9],             // bytes left over
        ];
        for tile in &bad {
            let mut z = Compress::new(Compression::fast(), true);
            let mut data = Vec::with_capacity(1024);
            z.compress_vec(tile, &mut data, FlushCompress::Sync)
                .unwrap();
            let mut out = vec![0u32; 64 * 64];
            let err = ZrleDecoder::new().decode(&data, 64, 64, &format, &mut out);
            assert!(err.is_err(), "{tile:?} accepted");
        }
        let mut out = vec![0u32; 64 * 64];
        assert!(
            ZrleDecoder::new()
                .decode(b"not zlib", 64, 64, &format, &mut out)
                .is_err()
        );
    }

    proptest! {
        #[test]
        fn random_images_round_trip(
            w in 1u16..150, h in 1u16..150, colours in 1u32..300, seed in any::<u32>()
        ) {
            let pixels: Vec<u32> = (0..u32::from(w) * u32::from(h))
                .map(|i| ((i.wrapping_mul(seed | 1) >> 7) % colours * 0x030507) & 0xffffff)
                .collect();
            let got = round_trip(PixelFormat::NOVNC, w, h, &pixels, 6);
            prop_assert_eq!(got, pixels);
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut out = vec![0u32; 64 * 64];
            let _ = ZrleDecoder::new().decode(&data, 64, 64, &PixelFormat::CANONICAL, &mut out);
        }
    }
}
