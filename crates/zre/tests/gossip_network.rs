//! The zgossip state in a simulated network: a tree of hubs and clients (every node publishes its
//! own tuple), links that carry messages in order but are delayed arbitrarily, dropped and
//! redialled, and a clock that moves. Invariant: once every link is up again and everything in
//! flight is delivered, every node knows every node's tuple — whatever happened before — and
//! no node ever delivers its own tuple or a value nobody published.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use zmesh_zre::gossip::{Gossip, GossipConfig, GossipOutput, LinkId, Role};

struct Link {
    client: usize,
    hub: usize,
    id_client: LinkId,
    id_hub: LinkId,
    to_hub: VecDeque<Vec<u8>>,
    to_client: VecDeque<Vec<u8>>,
    up: bool,
}

struct Net {
    nodes: Vec<Gossip>,
    links: Vec<Link>,
    next_id: LinkId,
    now: Instant,
}

fn key(i: usize) -> String {
    format!("{i:032X}")
}

fn value(i: usize) -> String {
    format!("tcp://10.0.0.{i}:5670")
}

impl Net {
    /// Node `c + 1` joins node `parents[c] % (c + 1)` (a tree: every node with clients is a hub).
    fn new(parents: &[usize]) -> Net {
        let n = parents.len() + 1;
        let mut net = Net {
            nodes: (0..n)
                .map(|_| Gossip::new(GossipConfig::default()))
                .collect(),
            links: Vec::new(),
            next_id: 1,
            now: Instant::now(),
        };
        for (i, g) in net.nodes.iter_mut().enumerate() {
            g.publish(&key(i), &value(i));
        }
        for (c, &p) in parents.iter().enumerate() {
            net.links.push(Link {
                client: c + 1,
                hub: p % (c + 1),
                id_client: 0,
                id_hub: 0,
                to_hub: VecDeque::new(),
                to_client: VecDeque::new(),
                up: false,
            });
        }
        for l in 0..net.links.len() {
            net.connect(l);
        }
        net
    }

    fn connect(&mut self, l: usize) {
        let now = self.now;
        let (a, b) = (self.next_id, self.next_id + 1);
        self.next_id += 2;
        let link = &mut self.links[l];
        link.id_client = a;
        link.id_hub = b;
        link.up = true;
        link.to_hub.clear();
        link.to_client.clear();
        let (c, h) = (link.client, link.hub);
        self.nodes[h].link_up(b, Role::Server, now);
        self.nodes[c].link_up(a, Role::Remote, now);
        self.pump();
    }

    fn drop_link(&mut self, l: usize) {
        let link = &mut self.links[l];
        if link.up {
            link.up = false;
            let (c, h, a, b) = (link.client, link.hub, link.id_client, link.id_hub);
            self.nodes[c].link_down(a);
            self.nodes[h].link_down(b);
        }
    }

    fn find(&self, n: usize, id: LinkId) -> Option<(usize, bool)> {
        self.links
            .iter()
            .position(|l| l.up && l.client == n && l.id_client == id)
            .map(|l| (l, true))
            .or_else(|| {
                self.links
                    .iter()
                    .position(|l| l.up && l.hub == n && l.id_hub == id)
                    .map(|l| (l, false))
            })
    }

    /// Moves every node's outputs onto the links; checks deliveries.
    fn pump(&mut self) {
        for n in 0..self.nodes.len() {
            while let Some(o) = self.nodes[n].poll_output() {
                match o {
                    GossipOutput::Send(id, bytes) => {
                        let (l, from_client) = self
                            .find(n, id)
                            .unwrap_or_else(|| panic!("node {n} sends on unknown link {id}"));
                        if from_client {
                            self.links[l].to_hub.push_back(bytes);
                        } else {
                            self.links[l].to_client.push_back(bytes);
                        }
                    }
                    GossipOutput::Close(id) => {
                        if let Some((l, _)) = self.find(n, id) {
                            self.drop_link(l);
                        }
                    }
                    GossipOutput::Deliver { key: k, value: v } => {
                        assert_ne!(k, key(n), "node {n} delivered its own tuple");
                        let i = usize::from_str_radix(&k, 16).expect("a key we published");
                        assert_eq!(v, value(i), "a value nobody published");
                    }
                    _ => {}
                }
            }
        }
    }

    /// Delivers the next message on link `l` towards the hub (`up`) or the client.
    fn deliver(&mut self, l: usize, up: bool) {
        let now = self.now;
        let link = &mut self.links[l];
        if !link.up {
            return;
        }
        let (msg, node, id) = if up {
            (link.to_hub.pop_front(), link.hub, link.id_hub)
        } else {
            (link.to_client.pop_front(), link.client, link.id_client)
        };
        if let Some(m) = msg {
            self.nodes[node].handle_message(id, &m, now);
            self.pump();
        }
    }

    fn tick(&mut self, d: Duration) {
        self.now += d;
        let now = self.now;
        for g in &mut self.nodes {
            g.handle_timeout(now);
        }
        self.pump();
    }

    /// Redials every dropped link and delivers everything in flight.
    fn settle(&mut self) {
        for l in 0..self.links.len() {
            if !self.links[l].up {
                self.connect(l);
            }
        }
        for _ in 0..100_000 {
            let Some(l) = self
                .links
                .iter()
                .position(|l| l.up && (!l.to_hub.is_empty() || !l.to_client.is_empty()))
            else {
                return;
            };
            let up = !self.links[l].to_hub.is_empty();
            self.deliver(l, up);
        }
        panic!("the network never went quiet");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn every_node_learns_every_tuple(
        parents in proptest::collection::vec(any::<usize>(), 1..8),
        steps in proptest::collection::vec((0u8..4, any::<u8>(), any::<bool>()), 0..200),
    ) {
        let mut net = Net::new(&parents);
        let nl = net.links.len();
        for (op, x, dir) in steps {
            let l = x as usize % nl;
            match op {
                0 | 1 => net.deliver(l, dir),
                2 => {
                    net.drop_link(l);
                    if dir {
                        net.connect(l);
                    }
                }
                _ => net.tick(Duration::from_millis(100 * (1 + x as u64 % 30))),
            }
        }
        net.settle();
        for (i, g) in net.nodes.iter().enumerate() {
            for j in 0..net.nodes.len() {
                let want = value(j);
                prop_assert_eq!(g.get(&key(j)), Some(want.as_str()), "node {} lacks {}", i, j);
            }
        }
    }
}
