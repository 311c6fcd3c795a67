//! The framebuffer a console holds, and what each viewer has not seen of it yet.
//!
//! Damage is kept per 64x64 tile as the bounding box of what changed inside the tile, so a
//! viewer's pending damage costs a fixed amount of memory however many updates it misses: a
//! slow viewer's changes coalesce, they never queue.

use crate::rfb::Rect;

/// Pixels as canonical `0x00RRGGBB` words, row by row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Framebuffer {
    width: u16,
    height: u16,
    pixels: Vec<u32>,
}

impl Framebuffer {
    /// A black screen.
    pub fn new(width: u16, height: u16) -> Self {
        Self {
            width,
            height,
            pixels: vec![0; usize::from(width) * usize::from(height)],
        }
    }

    pub fn width(&self) -> u16 {
        self.width
    }

    pub fn height(&self) -> u16 {
        self.height
    }

    /// The whole screen as a rectangle.
    pub fn bounds(&self) -> Rect {
        Rect::new(0, 0, self.width, self.height)
    }

    /// Every pixel, row by row.
    pub fn pixels(&self) -> &[u32] {
        &self.pixels
    }

    /// The pixel at (`x`, `y`).
    pub fn pixel(&self, x: u16, y: u16) -> u32 {
        self.pixels[usize::from(y) * usize::from(self.width) + usize::from(x)]
    }

    /// Changes the size; the new screen is black (a server sends its content next).
    pub fn resize(&mut self, width: u16, height: u16) {
        self.width = width;
        self.height = height;
        self.pixels.clear();
        self.pixels
            .shrink_to(usize::from(width) * usize::from(height));
        self.pixels
            .resize(usize::from(width) * usize::from(height), 0);
    }

    /// Writes `pixels` (row by row, `rect.area()` of them) at `rect`, which lies on the screen.
    pub fn blit(&mut self, rect: Rect, pixels: &[u32]) {
        debug_assert!(rect.fits(self.width, self.height) && pixels.len() == rect.area());
        let (w, stride) = (usize::from(rect.width), usize::from(self.width));
        for (row, src) in pixels.chunks_exact(w.max(1)).enumerate() {
            let at = (usize::from(rect.y) + row) * stride + usize::from(rect.x);
            self.pixels[at..at + w].copy_from_slice(src);
        }
    }

    /// Fills `rect`, which lies on the screen, with one colour.
    pub fn fill(&mut self, rect: Rect, colour: u32) {
        let (w, stride) = (usize::from(rect.width), usize::from(self.width));
        for row in 0..usize::from(rect.height) {
            let at = (usize::from(rect.y) + row) * stride + usize::from(rect.x);
            self.pixels[at..at + w].fill(colour);
        }
    }

    /// CopyRect: copies the `dst.width` x `dst.height` pixels at (`src_x`, `src_y`) to `dst`,
    /// as if through a temporary buffer (the two may overlap). Both lie on the screen.
    pub fn copy(&mut self, src_x: u16, src_y: u16, dst: Rect) {
        let (w, stride) = (usize::from(dst.width), usize::from(self.width));
        let rows: Box<dyn Iterator<Item = usize>> = if src_y < dst.y {
            Box::new((0..usize::from(dst.height)).rev())
        } else {
            Box::new(0..usize::from(dst.height))
        };
        for row in rows {
            let from = (usize::from(src_y) + row) * stride + usize::from(src_x);
            let to = (usize::from(dst.y) + row) * stride + usize::from(dst.x);
            self.pixels.copy_within(from..from + w, to);
        }
    }

    /// Appends the pixels of `rect`, which lies on the screen, row by row.
    pub fn read(&self, rect: Rect, out: &mut Vec<u32>) {
        let (w, stride) = (usize::from(rect.width), usize::from(self.width));
        out.reserve(rect.area());
        for row in 0..usize::from(rect.height) {
            let at = (usize::from(rect.y) + row) * stride + usize::from(rect.x);
            out.extend_from_slice(&self.pixels[at..at + w]);
        }
    }
}

/// Side of a damage tile (also ZRLE's tile side, so a damaged tile is one ZRLE tile).
pub const TILE: u16 = 64;

/// The bounding box of the damage inside one tile, relative to the tile; empty when
/// `x0 >= x1`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct TileBox {
    x0: u8,
    y0: u8,
    x1: u8,
    y1: u8,
}

impl TileBox {
    fn is_empty(&self) -> bool {
        self.x0 >= self.x1
    }
}

/// What changed on a screen since someone last looked, per tile.
#[derive(Clone, Debug)]
pub struct Damage {
    width: u16,
    height: u16,
    cols: usize,
    tiles: Vec<TileBox>,
    dirty: usize,
}

impl Damage {
    /// No damage on a `width` x `height` screen.
    pub fn new(width: u16, height: u16) -> Self {
        let cols = usize::from(width).div_ceil(usize::from(TILE));
        let rows = usize::from(height).div_ceil(usize::from(TILE));
        Self {
            width,
            height,
            cols,
            tiles: vec![TileBox::default(); cols * rows],
            dirty: 0,
        }
    }

    /// Whether nothing is damaged.
    pub fn is_empty(&self) -> bool {
        self.dirty == 0
    }

    /// Marks the whole screen.
    pub fn add_all(&mut self) {
        self.add(Rect::new(0, 0, self.width, self.height));
    }

    /// Marks `rect` (clipped to the screen).
    pub fn add(&mut self, rect: Rect) {
        let rect = rect.clip(self.width, self.height);
        if rect.is_empty() {
            return;
        }
        let t = u32::from(TILE);
        let (right, bottom) = (rect.right(), rect.bottom());
        for ty in u32::from(rect.y) / t..bottom.div_ceil(t) {
            for tx in u32::from(rect.x) / t..right.div_ceil(t) {
                let (ox, oy) = (tx * t, ty * t);
                let add = TileBox {
                    x0: (u32::from(rect.x).max(ox) - ox) as u8,
                    y0: (u32::from(rect.y).max(oy) - oy) as u8,
                    x1: (right.min(ox + t) - ox) as u8,
                    y1: (bottom.min(oy + t) - oy) as u8,
                };
                let tile = &mut self.tiles[ty as usize * self.cols + tx as usize];
                if tile.is_empty() {
                    *tile = add;
                    self.dirty += 1;
                } else {
                    tile.x0 = tile.x0.min(add.x0);
                    tile.y0 = tile.y0.min(add.y0);
                    tile.x1 = tile.x1.max(add.x1);
                    tile.y1 = tile.y1.max(add.y1);
                }
            }
        }
    }

    /// Whether any damage lies in `rect`'s tiles (conservative: tile granularity).
    pub fn touches(&self, rect: Rect) -> bool {
        if self.dirty == 0 {
            return false;
        }
        let rect = rect.clip(self.width, self.height);
        if rect.is_empty() {
            return false;
        }
        let t = u32::from(TILE);
        (u32::from(rect.y) / t..rect.bottom().div_ceil(t)).any(|ty| {
            (u32::from(rect.x) / t..rect.right().div_ceil(t))
                .any(|tx| !self.tiles[ty as usize * self.cols + tx as usize].is_empty())
        })
    }

    /// Takes the damage as rectangles and clears it. Neighbouring tiles in a row whose boxes
    /// span the same rows and touch are merged, so a full screen is one rectangle a tile row.
    pub fn take(&mut self) -> Vec<Rect> {
        let mut out = Vec::new();
        if self.dirty == 0 {
            return out;
        }
        let rows = self.tiles.len() / self.cols.max(1);
        for ty in 0..rows {
            let mut run: Option<Rect> = None;
            for tx in 0..self.cols {
                let tile = std::mem::take(&mut self.tiles[ty * self.cols + tx]);
                if tile.is_empty() {
                    out.extend(run.take());
                    continue;
                }
                let rect = Rect::new(
                    (tx * usize::from(TILE)) as u16 + u16::from(tile.x0),
                    (ty * usize::from(TILE)) as u16 + u16::from(tile.y0),
                    u16::from(tile.x1 - tile.x0),
                    u16::from(tile.y1 - tile.y0),
                );
                run = match run {
                    Some(r)
                        if r.y == rect.y
                            && r.height == rect.height
                            && r.right() == u32::from(rect.x) =>
                    {
                        Some(Rect::new(r.x, r.y, r.width + rect.width, r.height))
                    }
                    other => {
                        out.extend(other);
                        Some(rect)
                    }
                };
            }
            out.extend(run);
        }
        self.dirty = 0;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn blit_read_fill() {
        let mut fb = Framebuffer::new(10, 5);
        fb.blit(Rect::new(2, 1, 3, 2), &[1, 2, 3, 4, 5, 6]);
        let mut out = Vec::new();
        fb.read(Rect::new(1, 1, 5, 2), &mut out);
        assert_eq!(out, [0, 1, 2, 3, 0, 0, 4, 5, 6, 0]);
        fb.fill(Rect::new(0, 4, 10, 1), 9);
        assert_eq!(fb.pixel(9, 4), 9);
        assert_eq!(fb.pixel(9, 3), 0);
        fb.resize(3, 3);
        assert_eq!(fb.pixels(), &[0; 9]);
    }

    /// CopyRect behaves as if through a temporary buffer, whichever way the areas overlap.
    #[test]
    fn overlapping_copies() {
        for (sx, sy, dx, dy) in [
            (0, 0, 1, 1),
            (1, 1, 0, 0),
            (0, 1, 0, 0),
            (0, 0, 0, 1),
            (1, 0, 0, 0),
        ] {
            let mut fb = Framebuffer::new(6, 6);
            let all: Vec<u32> = (0..36).collect();
            fb.blit(fb.bounds(), &all);
            let mut expected = fb.clone();
            let mut tmp = Vec::new();
            fb.read(Rect::new(sx, sy, 4, 4), &mut tmp);
            expected.blit(Rect::new(dx, dy, 4, 4), &tmp);
            fb.copy(sx, sy, Rect::new(dx, dy, 4, 4));
            assert_eq!(fb, expected, "({sx},{sy}) -> ({dx},{dy})");
        }
    }

    #[test]
    fn damage_is_kept_per_tile_and_merged_per_row() {
        let mut d = Damage::new(200, 100);
        assert!(d.is_empty());
        d.add(Rect::new(10, 10, 5, 5));
        d.add(Rect::new(20, 30, 2, 2));
        assert_eq!(d.take(), [Rect::new(10, 10, 12, 22)]);
        assert!(d.is_empty());
        d.add_all();
        assert_eq!(
            d.take(),
            [Rect::new(0, 0, 200, 64), Rect::new(0, 64, 200, 36)]
        );
        // Off-screen parts are dropped.
        d.add(Rect::new(190, 90, 50, 50));
        assert_eq!(d.take(), [Rect::new(190, 90, 10, 10)]);
        d.add(Rect::new(500, 500, 5, 5));
        assert!(d.is_empty());
    }

    #[test]
    fn touches_is_tile_granular() {
        let mut d = Damage::new(256, 256);
        d.add(Rect::new(70, 70, 1, 1));
        assert!(d.touches(Rect::new(64, 64, 1, 1)));
        assert!(d.touches(Rect::new(0, 0, 65, 65)));
        assert!(!d.touches(Rect::new(0, 0, 64, 64)));
        assert!(!d.touches(Rect::new(128, 0, 10, 10)));
    }

    proptest! {
        /// Whatever is added, the rectangles taken cover every damaged pixel, stay on the
        /// screen, and never hold more than one rectangle a tile.
        #[test]
        fn taken_rectangles_cover_the_damage(
            w in 1u16..300, h in 1u16..300,
            rects in proptest::collection::vec((0u16..320, 0u16..320, 0u16..100, 0u16..100), 0..20)
        ) {
            let mut d = Damage::new(w, h);
            let mut marked = vec![false; usize::from(w) * usize::from(h)];
            for (x, y, rw, rh) in rects {
                let r = Rect::new(x, y, rw, rh);
                d.add(r);
                let c = r.clip(w, h);
                for yy in c.y..(c.bottom() as u16) {
                    for xx in c.x..(c.right() as u16) {
                        marked[usize::from(yy) * usize::from(w) + usize::from(xx)] = true;
                    }
                }
            }
            let taken = d.take();
            let tiles = usize::from(w).div_ceil(64) * usize::from(h).div_ceil(64);
            prop_assert!(taken.len() <= tiles);
            let mut covered = vec![false; marked.len()];
            for r in &taken {
                prop_assert!(r.fits(w, h) && !r.is_empty());
                for yy in r.y..(r.bottom() as u16) {
                    for xx in r.x..(r.right() as u16) {
                        covered[usize::from(yy) * usize::from(w) + usize::from(xx)] = true;
                    }
                }
            }
            for (i, m) in marked.iter().enumerate() {
                prop_assert!(!m || covered[i], "pixel {} not covered", i);
            }
            prop_assert!(d.is_empty());
        }
    }
}
