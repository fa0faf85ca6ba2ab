//! Harness for zgossip: the message codec and the hub/client state that consumes it.

use std::time::{Duration, Instant};

use zmesh_zre::gossip::{Gossip, GossipConfig, GossipMsg, GossipOutput, Role};

/// `gossip_messages`: the input is a sequence of records `[link-and-role byte][length byte]
/// [that many bytes]`; each record is one frame body that arrives on one of four links (links
/// 0–1 are server links, 2–3 remote links; the top bit of the first byte advances the clock by
/// one second first).
///
/// Checks: every body that decodes re-encodes to itself; the state never panics; every frame it
/// asks to send decodes; it never sends on a link it closed or never knew; and every delivered
/// tuple is then known with that value.
pub fn gossip_messages(data: &[u8]) {
    let mut now = Instant::now();
    let mut g = Gossip::new(GossipConfig::default());
    g.publish("OWN", "tcp://127.0.0.1:1");
    let mut alive = [true; 4];
    for i in 0..4u64 {
        let role = if i < 2 { Role::Server } else { Role::Remote };
        g.link_up(i, role, now);
    }
    let mut rest = data;
    while let [head, len, tail @ ..] = rest {
        let n = (*len as usize).min(tail.len());
        let (body, next) = tail.split_at(n);
        rest = next;
        if head & 0x80 != 0 {
            now += Duration::from_secs(1);
            g.handle_timeout(now);
        }
        if let Ok(m) = GossipMsg::decode(body) {
            assert_eq!(m.encode().expect("decoded message encodes"), body);
        }
        let link = (head & 3) as u64;
        g.handle_message(link, body, now);
        while let Some(o) = g.poll_output() {
            match o {
                GossipOutput::Send(l, b) => {
                    assert!(alive[l as usize], "send on a closed link {l}");
                    GossipMsg::decode(&b).expect("we send only valid messages");
                }
                GossipOutput::Close(l) => {
                    // Close may follow a last INVALID on the same link; after it, nothing more.
                    alive[l as usize] = false;
                }
                GossipOutput::Deliver { key, value } => {
                    assert_eq!(g.get(&key), Some(value.as_str()));
                }
                _ => {}
            }
        }
    }
}
