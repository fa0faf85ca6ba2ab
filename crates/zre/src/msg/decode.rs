//! Decoding: frames to messages, leniently like C, never panicking.

use bytes::Bytes;

use super::*;

impl ZreMessage {
    /// Decodes the frames of one ZRE message (identity frame already removed). Returns the
    /// sequence number and the message. Never panics, whatever the input.
    ///
    /// The content frames of a WHISPER/SHOUT are cloned into a new list; a receiver that owns the
    /// frames should use [`ZreMessage::decode_owned`], which moves them instead.
    pub fn decode(frames: &[Bytes]) -> Result<(u16, ZreMessage), WireError> {
        let (first, rest) = frames.split_first().ok_or(WireError::NoFrames)?;
        // Only content frames are copied (cheap `Bytes` clones); one frame stays inline.
        decode_parts(first, Content::from(rest))
    }

    /// Like [`ZreMessage::decode`], taking the frames by value: the content frames of a
    /// WHISPER/SHOUT move into the message's `content` (no allocation for one content frame).
    /// The receive path of a node decodes every message this way.
    #[inline]
    pub fn decode_owned(frames: Frames) -> Result<(u16, ZreMessage), WireError> {
        // The content frames move into the message; one frame stays inline (no allocation).
        if let [first, _] = frames.as_slice() {
            // The message that dominates traffic, decoded here, inline in the receive path: a
            // WHISPER with one content frame (its ZRE frame is nothing but the header).
            if let [0xAA, 0xA1, ID_WHISPER, VERSION, hi, lo, ..] = **first {
                let mut frames = frames;
                let content = Content::single(frames.pop().expect("two frames"));
                return Ok((
                    u16::from_be_bytes([hi, lo]),
                    ZreMessage::Whisper { content },
                ));
            }
            // Any other two-frame message, without an iterator.
            let mut frames = frames;
            let content = frames.pop().expect("two frames");
            let first = frames.pop().expect("two frames");
            return decode_parts(&first, Content::single(content));
        }
        let mut it = frames.into_iter();
        let Some(first) = it.next() else {
            return Err(WireError::NoFrames);
        };
        decode_parts(&first, it.collect())
    }
}

impl ZreMessage {
    /// [`ZreMessage::decode_owned`] on two frames given as the ZRE frame (borrowed) and the one
    /// content frame that followed it.
    #[inline]
    pub fn decode_first_and(first: &[u8], body: Bytes) -> Result<(u16, ZreMessage), WireError> {
        if let [0xAA, 0xA1, ID_WHISPER, VERSION, hi, lo, ..] = *first {
            let content = Content::single(body);
            return Ok((
                u16::from_be_bytes([hi, lo]),
                ZreMessage::Whisper { content },
            ));
        }
        decode_parts(first, Content::single(body))
    }
}

/// Decodes the ZRE frame `first`; `rest` are the frames that followed it (content for
/// WHISPER/SHOUT, an error for every other message when not empty).
fn decode_parts(first: &[u8], rest: Content) -> Result<(u16, ZreMessage), WireError> {
    // Fast path for the message that dominates traffic: a WHISPER is nothing but its header.
    if let [0xAA, 0xA1, ID_WHISPER, VERSION, hi, lo, ..] = *first {
        return Ok((
            u16::from_be_bytes([hi, lo]),
            ZreMessage::Whisper { content: rest },
        ));
    }
    let mut r = Reader { buf: first };
    let signature = r.u16("signature")?;
    if signature != SIGNATURE {
        return Err(WireError::BadSignature(signature));
    }
    let id = r.u8("id")?;
    let version = r.u8("version")?;
    if version != VERSION {
        return Err(WireError::BadVersion(version));
    }
    let sequence = r.u16("sequence")?;
    let extra = rest.len();
    let msg = match id {
        ID_HELLO => {
            let endpoint = r.string("endpoint")?;
            let count = r.u32("groups count")?;
            let mut groups = Vec::new();
            for _ in 0..count {
                groups.push(r.longstr("group")?);
            }
            let status = r.u8("status")?;
            let name = r.string("name")?;
            let count = r.u32("headers count")?;
            let mut headers: Vec<(String, String)> = Vec::new();
            for _ in 0..count {
                let k = r.string("header key")?;
                let v = r.longstr("header value")?;
                // zhash_insert keeps the first value of a duplicated key.
                if !headers.iter().any(|(hk, _)| *hk == k) {
                    headers.push((k, v));
                }
            }
            ZreMessage::Hello {
                endpoint,
                groups,
                status,
                name,
                headers,
            }
        }
        ID_WHISPER => ZreMessage::Whisper { content: rest },
        ID_SHOUT => ZreMessage::Shout {
            group: r.string("group")?,
            content: rest,
        },
        ID_JOIN => ZreMessage::Join {
            group: r.string("group")?,
            status: r.u8("status")?,
        },
        ID_LEAVE => ZreMessage::Leave {
            group: r.string("group")?,
            status: r.u8("status")?,
        },
        ID_PING => ZreMessage::Ping,
        ID_PING_OK => ZreMessage::PingOk,
        ID_ELECT => ZreMessage::Elect {
            group: r.string("group")?,
            challenger: r.string("challenger_id")?,
        },
        ID_LEADER => ZreMessage::Leader {
            group: r.string("group")?,
            leader: r.string("leader_id")?,
        },
        ID_GOODBYE => ZreMessage::Goodbye,
        other => return Err(WireError::UnknownId(other)),
    };
    if id != ID_WHISPER && id != ID_SHOUT && extra != 0 {
        return Err(WireError::UnexpectedFrames {
            name: id_name(id),
            count: extra,
        });
    }
    Ok((sequence, msg))
}

/// Bounds-checked cursor over the ZRE frame.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return Err(WireError::Truncated(field));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, WireError> {
        let b = self.take(2, field)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        let b = self.take(4, field)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self, field: &'static str) -> Result<String, WireError> {
        let n = self.u8(field)? as usize;
        Ok(String::from_utf8_lossy(self.take(n, field)?).into_owned())
    }

    fn longstr(&mut self, field: &'static str) -> Result<String, WireError> {
        let n = self.u32(field)? as usize;
        Ok(String::from_utf8_lossy(self.take(n, field)?).into_owned())
    }
}
