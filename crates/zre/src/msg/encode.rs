//! Encoding: messages to frames, with the per-thread arena for the WHISPER/SHOUT header frame.

use bytes::{BufMut, Bytes, BytesMut};

use super::*;

impl ZreMessage {
    /// Encodes into ZeroMQ frames: first the ZRE frame carrying `sequence`, then (WHISPER/SHOUT
    /// only) the content frames, which are cheap `Bytes` clones.
    pub fn encode(&self, sequence: u16) -> Result<Frames, WireError> {
        // The hot messages get their small ZRE frame from a per-thread arena (see
        // `ARENA` below); the rare ones allocate their own buffer.
        match self {
            ZreMessage::Whisper { content } => {
                return content_frames(ID_WHISPER, sequence, None, content);
            }
            ZreMessage::Shout { group, content } => {
                return content_frames(ID_SHOUT, sequence, Some(group), content);
            }
            _ => {}
        }
        let mut b = BytesMut::with_capacity(64);
        b.put_u16(SIGNATURE);
        b.put_u8(self.id());
        b.put_u8(VERSION);
        b.put_u16(sequence);
        match self {
            ZreMessage::Hello {
                endpoint,
                groups,
                status,
                name,
                headers,
            } => {
                put_string(&mut b, "endpoint", endpoint)?;
                put_count(&mut b, "groups", groups.len())?;
                for g in groups {
                    put_longstr(&mut b, "group", g)?;
                }
                b.put_u8(*status);
                put_string(&mut b, "name", name)?;
                put_count(&mut b, "headers", headers.len())?;
                for (k, v) in headers {
                    put_string(&mut b, "header key", k)?;
                    put_longstr(&mut b, "header value", v)?;
                }
            }
            ZreMessage::Whisper { .. } | ZreMessage::Shout { .. } => {
                unreachable!("encoded above")
            }
            ZreMessage::Join { group, status } | ZreMessage::Leave { group, status } => {
                put_string(&mut b, "group", group)?;
                b.put_u8(*status);
            }
            ZreMessage::Ping | ZreMessage::PingOk | ZreMessage::Goodbye => {}
            ZreMessage::Elect { group, challenger } => {
                put_string(&mut b, "group", group)?;
                put_string(&mut b, "challenger_id", challenger)?;
            }
            ZreMessage::Leader { group, leader } => {
                put_string(&mut b, "group", group)?;
                put_string(&mut b, "leader_id", leader)?;
            }
        }
        Ok(Frames::from_iter([b.freeze()]))
    }
}

/// Size of the blocks the per-thread header arena carves ZRE frames from.
const ARENA_BLOCK: usize = 4096;
/// Largest ZRE frame of a WHISPER/SHOUT: the 6-byte header plus a 1+255-byte group.
const MAX_CONTENT_HEADER: usize = 6 + 1 + MAX_STRING_LEN;

thread_local! {
    /// Where WHISPER/SHOUT frames are written: each encode appends its 6 (WHISPER) or 7 + group
    /// (SHOUT) bytes and splits them off as a `Bytes` sharing the block. A block is freed when
    /// its last frame is dropped, and reused in place when every frame carved from it has been
    /// dropped by the time it is full (the usual case: the transport copies a message into its
    /// write buffer when it is queued). One allocation per ~680 WHISPERs instead of one each.
    static ARENA: std::cell::RefCell<BytesMut> = std::cell::RefCell::new(BytesMut::new());
}

/// The frames of a WHISPER (`group` = None) or SHOUT: the ZRE frame, then the content frames.
fn content_frames(
    id: u8,
    sequence: u16,
    group: Option<&str>,
    content: &[Bytes],
) -> Result<Frames, WireError> {
    if content.is_empty() {
        return Err(WireError::EmptyContent);
    }
    if let Some(g) = group {
        check_string("group", g)?;
    }
    let header = ARENA.with(|arena| {
        let mut b = arena.borrow_mut();
        if b.capacity() < MAX_CONTENT_HEADER {
            // Reclaims the block in place if it is no longer shared, else starts a new one.
            b.reserve(ARENA_BLOCK);
        }
        let [sig_hi, sig_lo] = SIGNATURE.to_be_bytes();
        let [seq_hi, seq_lo] = sequence.to_be_bytes();
        b.extend_from_slice(&[sig_hi, sig_lo, id, VERSION, seq_hi, seq_lo]);
        if let Some(g) = group {
            b.extend_from_slice(&[g.len() as u8]);
            b.extend_from_slice(g.as_bytes());
        }
        b.split().freeze()
    });
    let mut frames = Frames::with_capacity(1 + content.len());
    frames.push(header);
    frames.extend(content.iter().cloned());
    Ok(frames)
}

fn put_string(b: &mut BytesMut, field: &'static str, s: &str) -> Result<(), WireError> {
    check_string(field, s)?;
    b.put_u8(s.len() as u8);
    b.put_slice(s.as_bytes());
    Ok(())
}

fn put_count(b: &mut BytesMut, field: &'static str, n: usize) -> Result<(), WireError> {
    let n = u32::try_from(n).map_err(|_| WireError::TooLong { field, len: n })?;
    b.put_u32(n);
    Ok(())
}

fn put_longstr(b: &mut BytesMut, field: &'static str, s: &str) -> Result<(), WireError> {
    put_count(b, field, s.len())?;
    b.put_slice(s.as_bytes());
    Ok(())
}
