//! Screen colours, as `#rrggbb`.

use std::fmt;
use std::str::FromStr;

/// A 24-bit colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rgb {
    pub r: u8,
    pub g: u8,
    pub b: u8,
}

impl Rgb {
    /// A colour from its components.
    pub const fn new(r: u8, g: u8, b: u8) -> Self {
        Self { r, g, b }
    }

    /// The largest difference of one component, to compare with a tolerance.
    pub fn distance(&self, other: &Rgb) -> u8 {
        [
            self.r.abs_diff(other.r),
            self.g.abs_diff(other.g),
            self.b.abs_diff(other.b),
        ]
        .into_iter()
        .max()
        .unwrap_or(0)
    }
}

impl fmt::Display for Rgb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{:02x}{:02x}{:02x}", self.r, self.g, self.b)
    }
}

impl FromStr for Rgb {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s
            .strip_prefix('#')
            .ok_or_else(|| format!("colour {s:?} must look like #rrggbb"))?;
        if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("colour {s:?} must look like #rrggbb"));
        }
        let c = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|e| e.to_string());
        Ok(Self::new(c(0)?, c(2)?, c(4)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_hex() {
        let c: Rgb = "#1565C0".parse().unwrap();
        assert_eq!(c, Rgb::new(0x15, 0x65, 0xc0));
        assert_eq!(c.to_string(), "#1565c0");
        assert!("1565c0".parse::<Rgb>().is_err());
        assert!("#1565c".parse::<Rgb>().is_err());
        assert!("#zz65c0".parse::<Rgb>().is_err());
        assert_eq!(c.distance(&Rgb::new(0x15, 0x60, 0xc2)), 5);
    }
}
