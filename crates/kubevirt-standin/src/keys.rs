//! The keys a VM received: the stand-in reads the client's side of every VNC session it bridges
//! (RFB 3.8 after security type None) and remembers each key event, so that tests can tell which
//! viewer's keys reached the VM (issue 16: an observer's must not, a controller's must).
//!
//! It reads the client messages of RFB (RFC 6143 §7.5) plus the extensions Xvnc announces and
//! noVNC or the gateway may send (QEMU extended key events, continuous updates, fences, desktop
//! size, extended clipboard). A message it does not know ends its reading for that session (it
//! cannot find the next message boundary): later keys of that session are not recorded, which a
//! test notices.

/// One key event as the VM received it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    /// The X keysym (`'a'` is 0x61).
    pub keysym: u32,
    /// Pressed (true) or released.
    pub down: bool,
}

/// How many key events a VM remembers (the oldest are forgotten).
pub const REMEMBERED: usize = 1024;

/// Reads one session's client-to-server bytes.
#[derive(Debug, Default)]
pub struct ClientReader {
    pending: Vec<u8>,
    stage: Stage,
}

#[derive(Debug, Default, PartialEq, Eq)]
enum Stage {
    /// ProtocolVersion (12 bytes).
    #[default]
    Version,
    /// The chosen security type (1 byte; RFB 3.7 and later).
    Security,
    /// ClientInit (1 byte).
    Init,
    /// Client messages.
    Messages,
    /// An unknown message: nothing more can be read.
    Lost,
}

impl ClientReader {
    /// Feeds bytes the client sent; returns the key events completed by them.
    pub fn feed(&mut self, data: &[u8]) -> Vec<Key> {
        if self.stage == Stage::Lost {
            return Vec::new();
        }
        self.pending.extend_from_slice(data);
        let mut keys = Vec::new();
        loop {
            let need = match self.stage {
                Stage::Version => Some(12),
                Stage::Security | Stage::Init => Some(1),
                Stage::Messages => message_len(&self.pending),
                Stage::Lost => return keys,
            };
            let Some(need) = need else {
                // Incomplete (or, for `Lost`, unknown): wait for more.
                return keys;
            };
            if need == 0 {
                tracing::warn!(
                    kind = self.pending.first().copied(),
                    "unknown RFB client message: not reading this session's keys any further"
                );
                self.stage = Stage::Lost;
                self.pending.clear();
                return keys;
            }
            if self.pending.len() < need {
                return keys;
            }
            let message: Vec<u8> = self.pending.drain(..need).collect();
            self.stage = match self.stage {
                // RFB 3.3 has no security type choice: the server decides.
                Stage::Version if message.starts_with(b"RFB 003.003") => Stage::Init,
                Stage::Version => Stage::Security,
                Stage::Security => Stage::Init,
                _ => Stage::Messages,
            };
            if let Some(key) = key_of(&message) {
                keys.push(key);
            }
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_be_bytes([b[at], b[at + 1]]))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The length of the message at the start of `b`: `None` while its length is not known yet,
/// `Some(0)` for a message type this reader does not know.
fn message_len(b: &[u8]) -> Option<usize> {
    let have = |n: usize| (b.len() >= n).then_some(());
    match *b.first()? {
        0 => Some(20),                               // SetPixelFormat
        2 => have(4).map(|()| 4 + 4 * u16_at(b, 2)), // SetEncodings
        3 => Some(10),                               // FramebufferUpdateRequest
        4 => Some(8),                                // KeyEvent
        5 => Some(6),                                // PointerEvent
        // ClientCutText; a negative length is the extended clipboard's.
        6 => have(8).map(|()| 8 + (u32_at(b, 4) as i32).unsigned_abs() as usize),
        150 => Some(10),                                // EnableContinuousUpdates
        248 => have(9).map(|()| 9 + usize::from(b[8])), // ClientFence
        251 => have(8).map(|()| 8 + 16 * usize::from(b[6])), // SetDesktopSize
        255 => match *b.get(1)? {
            0 => Some(12), // QEMU extended key event
            // QEMU audio: enable/disable, or set format (10 bytes).
            1 => have(4).map(|()| if u16_at(b, 2) == 2 { 10 } else { 4 }),
            _ => Some(0),
        },
        _ => Some(0),
    }
}

fn key_of(m: &[u8]) -> Option<Key> {
    match (m.first()?, m.len()) {
        (4, 8) => Some(Key {
            keysym: u32_at(m, 4),
            down: m[1] != 0,
        }),
        (255, 12) if m[1] == 0 => Some(Key {
            keysym: u32_at(m, 4),
            down: u16_at(m, 2) != 0,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handshake() -> Vec<u8> {
        let mut b = b"RFB 003.008\n".to_vec();
        b.extend([1, 1]); // security None, shared
        b
    }

    #[test]
    fn keys_are_read_across_every_message_kind_and_any_split() {
        let mut bytes = handshake();
        bytes.extend([0; 20]); // SetPixelFormat
        bytes.extend([2, 0, 0, 2, 0, 0, 0, 16, 0xff, 0xff, 0xfe, 0xfe]); // SetEncodings (2)
        bytes.extend([3, 1, 0, 0, 0, 0, 2, 128, 1, 224]); // FramebufferUpdateRequest
        bytes.extend([5, 0, 0, 10, 0, 10]); // PointerEvent
        bytes.extend([4, 1, 0, 0, 0, 0, 0, 0x61]); // 'a' down
        bytes.extend([6, 0, 0, 0, 0, 0, 0, 3, b'x', b'y', b'z']); // ClientCutText
        bytes.extend([255, 0, 0, 0, 0, 0, 0, 0x62, 0, 0, 0, 48]); // QEMU 'b' up
        bytes.extend([248, 0, 0, 0, 0, 0, 0, 0, 2, 1, 2]); // ClientFence
        bytes.extend([150, 1, 0, 0, 0, 0, 2, 128, 1, 224]); // EnableContinuousUpdates
        bytes.extend([4, 0, 0, 0, 0, 0, 0xff, 0x0d]); // Return up
        let want = vec![
            Key {
                keysym: 0x61,
                down: true,
            },
            Key {
                keysym: 0x62,
                down: false,
            },
            Key {
                keysym: 0xff0d,
                down: false,
            },
        ];
        for chunk in [1, 3, 7, bytes.len()] {
            let mut reader = ClientReader::default();
            let got: Vec<Key> = bytes.chunks(chunk).flat_map(|c| reader.feed(c)).collect();
            assert_eq!(got, want, "chunks of {chunk}");
        }
    }

    #[test]
    fn an_unknown_message_stops_the_reading_instead_of_misreading_keys() {
        let mut reader = ClientReader::default();
        let mut bytes = handshake();
        bytes.extend([77, 4, 0, 0, 0, 0, 0, 0x61]);
        assert_eq!(reader.feed(&bytes), vec![]);
        assert_eq!(reader.feed(&[4, 1, 0, 0, 0, 0, 0, 0x61]), vec![]);
    }
}
