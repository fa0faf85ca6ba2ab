//! The gossip source: the tokio shell around the sans-IO zgossip state
//! ([`zmesh_zre::gossip::Gossip`]), wire-compatible with Zyre's `zyre_gossip_bind/connect`.
//!
//! One task per node owns the hub's listening socket (when the node is a hub), one two-way ZMTP
//! connection per link ([`zmesh_zmtp::Duplex`]), the dialling of hubs (redialled with backoff
//! when lost), and the clock; it moves bytes and time into the state and carries out its
//! outputs. What it learns reaches the node as [`Sighting`]s through [`GossipSource`], the
//! [`Source`] the node polls.
//!
//! What is published is what Zyre publishes: key = our UUID as 32 upper-case hex digits, value =
//! our ZRE endpoint, or `endpoint|<Z85 public key>` in secure mode. A tuple of a node that has
//! left the mesh (it was our peer and no longer is) is forgotten, so it is not handed to clients
//! that join later.
//!
//! The set of hubs to dial can change while running ([`GossipSource::remotes`]): the DNS
//! resolver of [`super::peers`] replaces it each time a name resolves differently.

use std::collections::{HashMap, HashSet};
use std::io;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info};
use uuid::Uuid;
use zmesh_zmtp::{
    frames, Bytes, CurveConfig, CurveKeyPair, CurvePublicKey, Duplex, DuplexConfig, DuplexError,
    DuplexListener, MechanismConfig,
};
use zmesh_zre::gossip::{Gossip, GossipConfig, GossipOutput, LinkId, Role};

use super::{Heard, NodeView, Sighting, Source};
use crate::Error;

/// First wait before redialling a hub; doubled up to [`REDIAL_MAX`].
const REDIAL_MIN: Duration = Duration::from_millis(250);
/// Longest wait between two dials of one hub.
const REDIAL_MAX: Duration = Duration::from_secs(5);
/// Sightings buffered between the task and the node.
const HEARD_QUEUE: usize = 1024;

/// Parses a gossip value (`endpoint` or `endpoint|z85-key`) into a sighting of `key`.
///
/// `Err` says why the tuple is not a usable sighting (bad input from the network).
pub(crate) fn sighting_of(key: &str, value: &str) -> Result<Sighting, String> {
    let uuid =
        zmesh_zre::uuid_from_str(key).ok_or_else(|| format!("gossip key {key:?} is not a UUID"))?;
    let (endpoint, z85_key) = match value.split_once('|') {
        Some((e, k)) => (e, Some(k)),
        None => (value, None),
    };
    let addr = crate::endpoint_addr(endpoint)
        .ok_or_else(|| format!("gossip value {endpoint:?} is not a tcp://ip:port endpoint"))?;
    match z85_key {
        None => Ok(Sighting::seen(uuid, addr)),
        Some(k) => {
            let bytes = z85::decode(k).map_err(|e| format!("gossip key of {uuid}: {e}"))?;
            let key: [u8; 32] = bytes
                .try_into()
                .map_err(|_| format!("gossip key of {uuid} is not 32 bytes"))?;
            Ok(Sighting::seen_with_key(uuid, addr, key))
        }
    }
}

/// A hub to dial: `endpoint` or `endpoint|z85-server-key` (the key is ignored if it does not
/// decode; [`check_hub`] refuses such strings up front).
pub(crate) fn split_hub(s: &str) -> (&str, Option<[u8; 32]>) {
    match s.split_once('|') {
        Some((ep, k)) => (
            ep,
            z85::decode(k)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok()),
        ),
        None => (s, None),
    }
}

/// Checks a hub string: a ZMTP endpoint, optionally `|` and a 40-character Z85 key.
pub(crate) fn check_hub(s: &str) -> Result<(), String> {
    let (ep, key) = match s.split_once('|') {
        Some((ep, k)) => (ep, Some(k)),
        None => (s, None),
    };
    ep.parse::<zmesh_zmtp::Endpoint>()
        .map_err(|e| e.to_string())?;
    if let Some(k) = key {
        match z85::decode(k) {
            Ok(b) if b.len() == 32 => {}
            _ => return Err(format!("{k:?} is not a 40-character Z85 CURVE key")),
        }
    }
    Ok(())
}

/// The value we publish: `endpoint` or `endpoint|z85-key`.
pub(crate) fn value_of(endpoint: &str, public_key: Option<&[u8; 32]>) -> String {
    match public_key {
        Some(k) => format!("{endpoint}|{}", z85::encode(k)),
        None => endpoint.to_owned(),
    }
}

/// Commands from the node to the task.
#[derive(Debug)]
enum Cmd {
    Publish { key: String, value: String },
    Forget(String),
}

/// The node's side of the gossip task: a [`Source`].
#[derive(Debug)]
pub struct GossipSource {
    heard: mpsc::Receiver<Heard>,
    cmd: mpsc::UnboundedSender<Cmd>,
    remotes: watch::Sender<Vec<String>>,
    published: Option<String>,
    own_key: Option<String>,
    /// Peers seen at the last observation (to notice departures).
    peers: HashSet<Uuid>,
    bound: Option<String>,
    task: JoinHandle<()>,
}

impl Drop for GossipSource {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GossipSource {
    /// Starts the task: binds the hub at `bind` (if any; `tcp://ip:*` picks a port) and dials
    /// every endpoint of `connect`.
    ///
    /// With `secure` (the node's key pair and its CURVE server mechanism, as Zyre does with a
    /// certificate) the hub is a CURVE server, and hubs given as `endpoint|z85-key` are dialled as
    /// a CURVE client of that key (Zyre's `zyre_gossip_connect_curve`); hubs given without a key
    /// are dialled with NULL.
    pub async fn start(
        bind: Option<&str>,
        connect: Vec<String>,
        cfg: GossipConfig,
        secure: Option<(CurveKeyPair, MechanismConfig)>,
    ) -> Result<GossipSource, Error> {
        let listen_cfg = DuplexConfig {
            mechanism: secure.as_ref().map(|(_, m)| m.clone()).unwrap_or_default(),
            ..DuplexConfig::default()
        };
        let listener = match bind {
            Some(ep) => Some(
                DuplexListener::bind(ep, listen_cfg)
                    .await
                    .map_err(|e| Error::Config(format!("gossip bind {ep:?}: {e}")))?,
            ),
            None => None,
        };
        let bound = listener.as_ref().map(|l| l.endpoint().to_string());
        if let Some(b) = &bound {
            info!(endpoint = %b, "gossip hub listening");
        }
        let (heard_tx, heard) = mpsc::channel(HEARD_QUEUE);
        let (cmd, cmd_rx) = mpsc::unbounded_channel();
        let (remotes, remotes_rx) = watch::channel(connect);
        let task = tokio::spawn(
            Shell {
                g: Gossip::new(cfg),
                listener,
                links: HashMap::new(),
                remotes: HashMap::new(),
                next_link: 1,
                heard: heard_tx,
                own_key: None,
                bound: bound.clone(),
                turn: 0,
                keys: secure.map(|(k, _)| k),
            }
            .run(cmd_rx, remotes_rx),
        );
        Ok(GossipSource {
            heard,
            cmd,
            remotes,
            published: None,
            own_key: None,
            peers: HashSet::new(),
            bound,
            task,
        })
    }

    /// The hub's bound endpoint (with the real port), if this node is a hub.
    pub fn bound(&self) -> Option<&str> {
        self.bound.as_deref()
    }

    /// A handle that replaces the set of hubs to dial (DNS re-resolution).
    pub fn remotes(&self) -> watch::Sender<Vec<String>> {
        self.remotes.clone()
    }
}

impl Source for GossipSource {
    fn kind(&self) -> &'static str {
        "gossip"
    }

    fn poll_heard(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Heard>> {
        match self.heard.poll_recv(cx) {
            Poll::Ready(Some(h)) => Poll::Ready(Ok(h)),
            Poll::Ready(None) => Poll::Ready(Err(io::Error::other("gossip task ended"))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn announce(&mut self, _tcp_port: u16) -> io::Result<()> {
        // What we publish comes from `observe` (it needs the whole endpoint); zgossip has no way
        // to withdraw a tuple, and peers learn our departure from GOODBYE and the closed
        // connection, as Zyre's do in gossip mode.
        Ok(())
    }

    fn observe(&mut self, view: &NodeView<'_>) {
        let key = self
            .own_key
            .get_or_insert_with(|| zmesh_zre::uuid_to_string(&view.uuid))
            .clone();
        let value = value_of(view.endpoint, view.public_key);
        if self.published.as_deref() != Some(value.as_str()) {
            let _ = self.cmd.send(Cmd::Publish {
                key,
                value: value.clone(),
            });
            self.published = Some(value);
        }
        let now: HashSet<Uuid> = view.peers.iter().copied().collect();
        for gone in self.peers.difference(&now) {
            let _ = self.cmd.send(Cmd::Forget(zmesh_zre::uuid_to_string(gone)));
        }
        self.peers = now;
    }
}

/// One hub we dial.
#[derive(Debug)]
struct Remote {
    link: Option<LinkId>,
    dialing: bool,
    next_dial: Instant,
    backoff: Duration,
}

struct Shell {
    g: Gossip,
    listener: Option<DuplexListener>,
    links: HashMap<LinkId, (Duplex, Option<String>)>,
    remotes: HashMap<String, Remote>,
    next_link: LinkId,
    heard: mpsc::Sender<Heard>,
    own_key: Option<String>,
    /// Our hub's endpoint: never dialled (a DNS name listing every node lists us too).
    bound: Option<String>,
    /// Where [`poll_links`] starts next.
    turn: usize,
    /// Secure mode: our key pair, for dialling hubs given with their key.
    keys: Option<CurveKeyPair>,
}

type Dialled = (String, Result<Duplex, DuplexError>);

impl Shell {
    async fn run(
        mut self,
        mut cmd: mpsc::UnboundedReceiver<Cmd>,
        mut remotes_rx: watch::Receiver<Vec<String>>,
    ) {
        let (dial_tx, mut dial_rx) = mpsc::unbounded_channel::<Dialled>();
        self.set_remotes(remotes_rx.borrow_and_update().clone());
        let sleep = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(sleep);
        loop {
            let now = Instant::now();
            self.dial_due(now, &dial_tx);
            let deadline = [
                self.g.poll_timeout().map(Instant::from_std),
                self.remotes
                    .values()
                    .filter(|r| r.link.is_none() && !r.dialing)
                    .map(|r| r.next_dial)
                    .min(),
            ]
            .into_iter()
            .flatten()
            .min();
            if let Some(d) = deadline {
                sleep.as_mut().reset(d);
            }
            tokio::select! {
                c = cmd.recv() => match c {
                    Some(Cmd::Publish { key, value }) => {
                        self.own_key = Some(key.clone());
                        self.g.publish(&key, &value);
                    }
                    Some(Cmd::Forget(key)) => {
                        if self.g.forget(&key) {
                            debug!(%key, "gossip tuple of a departed node forgotten");
                        }
                    }
                    None => return,
                },
                // Once every sender is gone the pattern fails and the branch waits no more.
                Ok(()) = remotes_rx.changed() => {
                    let list = remotes_rx.borrow_and_update().clone();
                    self.set_remotes(list);
                }
                Some(d) = recv_accept(self.listener.as_mut()) => {
                    let id = self.add_link(d, None);
                    self.g.link_up(id, Role::Server, now.into_std());
                }
                Some((ep, r)) = dial_rx.recv() => self.on_dialled(ep, r),
                (id, msg) = std::future::poll_fn(|cx| poll_links(&mut self.links, &mut self.turn, cx)) => match msg {
                    Some(frames) => {
                        // zgossip messages are one frame; anything else is bad input.
                        let body: &[u8] = if frames.len() == 1 { &frames[0] } else { b"" };
                        let bad = self.g.stats().bad_messages;
                        self.g.handle_message(id, body, Instant::now().into_std());
                        if self.g.stats().bad_messages > bad {
                            // Counted by the node with the other bad discovery input.
                            let _ = self
                                .heard
                                .send(Heard::Garbage("bad zgossip message".into()))
                                .await;
                        }
                    }
                    None => self.drop_link(id),
                },
                _ = &mut sleep, if deadline.is_some() => {
                    self.g.handle_timeout(Instant::now().into_std());
                }
            }
            self.carry_out().await;
        }
    }

    fn add_link(&mut self, d: Duplex, remote: Option<String>) -> LinkId {
        let id = self.next_link;
        self.next_link += 1;
        self.links.insert(id, (d, remote));
        id
    }

    fn set_remotes(&mut self, list: Vec<String>) {
        let want: HashSet<String> = list
            .into_iter()
            .filter(|ep| self.bound.as_deref() != Some(split_hub(ep).0))
            .collect();
        let gone: Vec<String> = self
            .remotes
            .keys()
            .filter(|k| !want.contains(*k))
            .cloned()
            .collect();
        for ep in gone {
            if let Some(Remote { link: Some(id), .. }) = self.remotes.remove(&ep) {
                self.links.remove(&id);
                self.g.link_down(id);
            }
        }
        for ep in want {
            self.remotes.entry(ep).or_insert(Remote {
                link: None,
                dialing: false,
                next_dial: Instant::now(),
                backoff: REDIAL_MIN,
            });
        }
    }

    fn dial_due(&mut self, now: Instant, tx: &mpsc::UnboundedSender<Dialled>) {
        for (ep, r) in &mut self.remotes {
            if r.link.is_none() && !r.dialing && r.next_dial <= now {
                r.dialing = true;
                let ep = ep.clone();
                let tx = tx.clone();
                let (addr, key) = split_hub(&ep);
                let mechanism = match (&self.keys, key) {
                    (Some(keys), Some(k)) => MechanismConfig::Curve(CurveConfig::client(
                        keys.clone(),
                        CurvePublicKey::from_bytes(k),
                    )),
                    _ => MechanismConfig::Null,
                };
                let addr = addr.to_owned();
                tokio::spawn(async move {
                    let cfg = DuplexConfig {
                        handshake_timeout: Duration::from_secs(3),
                        mechanism,
                        ..DuplexConfig::default()
                    };
                    let r = Duplex::connect(&addr, &cfg).await;
                    let _ = tx.send((ep, r));
                });
            }
        }
    }

    fn on_dialled(&mut self, ep: String, r: Result<Duplex, DuplexError>) {
        let Some(remote) = self.remotes.get_mut(&ep) else {
            return; // no longer wanted
        };
        remote.dialing = false;
        match r {
            Ok(d) => {
                remote.backoff = REDIAL_MIN;
                debug!(hub = %ep, "gossip hub connected");
                let id = self.add_link(d, Some(ep.clone()));
                if let Some(r) = self.remotes.get_mut(&ep) {
                    r.link = Some(id);
                }
                self.g.link_up(id, Role::Remote, Instant::now().into_std());
            }
            Err(e) => {
                debug!(hub = %ep, error = %e, "gossip hub not reached; will retry");
                remote.next_dial = Instant::now() + remote.backoff;
                remote.backoff = (remote.backoff * 2).min(REDIAL_MAX);
            }
        }
    }

    fn drop_link(&mut self, id: LinkId) {
        self.g.link_down(id);
        let Some((duplex, remote)) = self.links.remove(&id) else {
            return;
        };
        // Whatever was queued last (an INVALID) still goes out.
        duplex.close();
        if let Some(ep) = remote {
            if let Some(r) = self.remotes.get_mut(&ep) {
                debug!(hub = %ep, "gossip hub connection lost; redialling");
                r.link = None;
                r.next_dial = Instant::now() + r.backoff;
                r.backoff = (r.backoff * 2).min(REDIAL_MAX);
            }
        }
    }

    async fn carry_out(&mut self) {
        while let Some(o) = self.g.poll_output() {
            match o {
                GossipOutput::Send(id, bytes) => {
                    if let Some((d, _)) = self.links.get(&id) {
                        if d.try_send(frames![Bytes::from(bytes)]).is_err() {
                            debug!(link = id, "gossip link queue full or closed; dropping it");
                            self.drop_link(id);
                        }
                    }
                }
                GossipOutput::Close(id) => self.drop_link(id),
                GossipOutput::Deliver { key, value } => {
                    let heard = if self.own_key.as_deref() == Some(key.as_str()) {
                        Heard::Own
                    } else {
                        match sighting_of(&key, &value) {
                            Ok(s) => Heard::Sighting(s),
                            Err(why) => Heard::Garbage(why),
                        }
                    };
                    if self.heard.send(heard).await.is_err() {
                        return;
                    }
                }
                _ => {}
            }
        }
    }
}

async fn recv_accept(l: Option<&mut DuplexListener>) -> Option<Duplex> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// Polls every link for a message; `(id, None)` when a link closed. Starts after the link that
/// spoke last (`turn`), so a chatty link cannot starve the others.
fn poll_links(
    links: &mut HashMap<LinkId, (Duplex, Option<String>)>,
    turn: &mut usize,
    cx: &mut Context<'_>,
) -> Poll<(LinkId, Option<zmesh_zmtp::Frames>)> {
    let n = links.len();
    if n == 0 {
        return Poll::Pending;
    }
    let start = *turn % n;
    for pass in 0..2 {
        for (k, (id, (d, _))) in links.iter_mut().enumerate() {
            if (pass == 0) != (k >= start) {
                continue;
            }
            if let Poll::Ready(m) = d.poll_recv(cx) {
                *turn = k + 1;
                return Poll::Ready((*id, m));
            }
        }
    }
    Poll::Pending
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_as_zyre_writes_them() {
        let u = Uuid::new_v4();
        let key = zmesh_zre::uuid_to_string(&u);
        let s = sighting_of(&key, "tcp://10.0.0.5:49152").unwrap();
        assert_eq!(s, Sighting::seen(u, "10.0.0.5:49152".parse().unwrap()));
        let k = [7u8; 32];
        let v = value_of("tcp://10.0.0.5:1", Some(&k));
        assert_eq!(v.len(), "tcp://10.0.0.5:1|".len() + 40);
        let s = sighting_of(&key, &v).unwrap();
        assert_eq!(
            s,
            Sighting::seen_with_key(u, "10.0.0.5:1".parse().unwrap(), k)
        );
        assert!(sighting_of("nope", "tcp://10.0.0.5:1").is_err());
        assert!(sighting_of(&key, "tcp://host:1").is_err());
        assert!(sighting_of(&key, "tcp://10.0.0.5:1|short").is_err());
    }
}
