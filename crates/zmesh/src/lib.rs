//! # zmesh — decentralised applications over ZRE
//!
//! A zmesh [`Node`] finds its peers on the local network with zero configuration (UDP beacons),
//! keeps track of their presence (ENTER, EXIT, EVASIVE, SILENT), and talks to them: WHISPER to one
//! peer, SHOUT to a group, JOIN and LEAVE groups, headers for service discovery. It speaks the ZRE
//! protocol byte for byte as the C Zyre implementation does, so zmesh, Zyre, Pyre and zyre.js nodes on
//! one network form one mesh.
//!
//! The crate is the async shell; the protocol itself lives in two I/O-free crates:
//! [`zmesh_zre`] (wire codec and the sans-IO engine) and [`zmesh_zmtp`] (the ZMTP 3.1 transport).
//!
//! ```no_run
//! # async fn demo() -> Result<(), zmesh::Error> {
//! use zmesh::{Event, Node};
//! let (node, mut events) = Node::builder()
//!     .name("alice")
//!     .interface("lo".parse().unwrap()) // pin the interface; the default is the first LAN interface
//!     .start()
//!     .await?;
//! node.join("CHAT")?;
//! while let Some(event) = events.recv().await {
//!     if let Event::Enter { peer, name, .. } = &event {
//!         node.whisper(*peer, vec![format!("hello {name}").into()])?;
//!     }
//! }
//! # Ok(()) }
//! ```

pub mod discovery;
pub mod error;
pub mod events;
pub mod iface;
pub mod node;

pub use bytes::Bytes;
pub use error::Error;
pub use iface::{InterfaceSpec, SelectedInterface};
pub use node::{Events, Node, NodeBuilder, NodeStats, PeerInfo, DEFAULT_BEACON_PORT};
pub use uuid::Uuid;
pub use zmesh_zre::{uuid_from_str, uuid_to_string, Event};
