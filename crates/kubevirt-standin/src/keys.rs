//! Which key a VM was last sent: the stand-in reads the RFB bytes a session sends its Xvnc
//! (security type None) and remembers the keysym of the last key press, so that tests can tell
//! whose keystrokes reached the VM. Reading stops at a message it does not know (the bytes
//! still go to Xvnc; only the record stops).

/// Follows the client-to-server side of one RFB session.
#[derive(Debug, Default)]
pub struct KeyTap {
    buf: Vec<u8>,
    phase: Phase,
}

#[derive(Debug, Default, PartialEq, Eq)]
enum Phase {
    /// ProtocolVersion, then the security type (3.7 and 3.8) and ClientInit.
    #[default]
    Version,
    /// Handshake bytes left to skip before the first message.
    Handshake(usize),
    Messages,
    /// A message this tap cannot size: nothing more is recorded.
    Lost,
}

impl KeyTap {
    /// Feeds bytes the session sent; returns the keysyms of the key presses they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<u32> {
        if self.phase == Phase::Lost {
            return Vec::new();
        }
        self.buf.extend_from_slice(bytes);
        let mut keys = Vec::new();
        loop {
            let used = match self.phase {
                Phase::Version if self.buf.len() >= 12 => {
                    // "RFB 003.00x\n": security type and ClientInit from 3.7 on; ClientInit only
                    // for 3.3.
                    let skip = if self.buf[10] >= b'7' { 2 } else { 1 };
                    self.phase = Phase::Handshake(skip);
                    12
                }
                Phase::Handshake(n) if self.buf.len() >= n => {
                    self.phase = Phase::Messages;
                    n
                }
                Phase::Messages => match message(&self.buf) {
                    Some(Ok((len, key))) => {
                        keys.extend(key);
                        len
                    }
                    Some(Err(())) => {
                        self.phase = Phase::Lost;
                        self.buf = Vec::new();
                        return keys;
                    }
                    None => return keys,
                },
                _ => return keys,
            };
            self.buf.drain(..used);
        }
    }
}

/// The length of the message at the front of `buf` and the keysym if it is a key press;
/// `None` until it is complete; `Err` for a message type this tap does not know.
fn message(buf: &[u8]) -> Option<Result<(usize, Option<u32>), ()>> {
    let u16_at = |i: usize| {
        Some(usize::from(u16::from_be_bytes([
            *buf.get(i)?,
            *buf.get(i + 1)?,
        ])))
    };
    let u32_at = |i: usize| {
        Some(u32::from_be_bytes([
            *buf.get(i)?,
            *buf.get(i + 1)?,
            *buf.get(i + 2)?,
            *buf.get(i + 3)?,
        ]))
    };
    let len = match *buf.first()? {
        0 => 20,
        2 => 4 + 4 * u16_at(2)?,
        3 => 10,
        4 => 8,
        5 => 6,
        6 => 8 + u32_at(4)? as usize,
        // QEMU client message, subtype 0: extended key event.
        255 if *buf.get(1)? == 0 => 12,
        _ => return Some(Err(())),
    };
    if buf.len() < len {
        return None;
    }
    let key = match buf[0] {
        4 if buf[1] != 0 => u32_at(4),
        255 if u16_at(2)? != 0 => u32_at(4),
        _ => None,
    };
    Some(Ok((len, key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_key_presses_after_the_handshake() {
        let mut tap = KeyTap::default();
        let mut session = b"RFB 003.008\n".to_vec();
        session.extend([1, 1]);
        session.extend([2, 0, 0, 1, 0, 0, 0, 0]); // SetEncodings [Raw]
        session.extend([4, 1, 0, 0, 0, 0, 0, 0x61]); // 'a' down
        session.extend([4, 0, 0, 0, 0, 0, 0, 0x61]); // 'a' up
        session.extend([5, 0, 0, 1, 0, 1]);
        session.extend([255, 0, 0, 1, 0, 0, 0, 0x62, 0, 0, 0, 0x30]); // QEMU 'b' down
        let mut keys = Vec::new();
        for b in &session {
            keys.extend(tap.feed(std::slice::from_ref(b)));
        }
        assert_eq!(keys, [0x61, 0x62]);
        // An unknown message stops the record, never the session.
        assert!(tap.feed(&[99, 4, 1, 0, 0, 0, 0, 0, 0x63]).is_empty());
        assert!(tap.feed(&[4, 1, 0, 0, 0, 0, 0, 0x63]).is_empty());
    }
}
