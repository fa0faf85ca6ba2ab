//! The inbox's authenticator hook: ZAP's role (RFC 27), in process. After a client's INITIATE is
//! opened and its vouch checked, the CURVE server asks its [`Authenticator`] whether that long-term
//! public key may connect. Built in: [`AllowAny`] (encryption without an allow-list, libzmq's
//! behaviour without a ZAP handler), [`AllowList`] (keys, or a directory of public certificates in
//! czmq's format, reloadable at run time) and any closure `Fn(&AuthRequest) -> AuthDecision`.

use super::cert::Certificate;
use super::keys::CurvePublicKey;
use super::CurveError;
use crate::codec::Metadata;
use crate::inbox::PeerAddr;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// What the authenticator is asked about one client.
#[derive(Debug)]
#[non_exhaustive]
pub struct AuthRequest<'a> {
    /// Where the connection comes from.
    pub peer: PeerAddr,
    /// The client's long-term public key, proven by its vouch.
    pub public_key: &'a CurvePublicKey,
    /// The client's metadata from INITIATE (Socket-Type, Identity, ...).
    pub metadata: &'a Metadata,
}

/// The authenticator's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthDecision {
    /// Let the client in.
    Allow,
    /// Refuse it; the reason is logged, counted and reported in `HandshakeFailed`.
    Deny(String),
}

/// Decides which CURVE clients an inbox accepts. Called once per handshake, on the handshake's own
/// task, so it must be quick (a set lookup, not I/O).
pub trait Authenticator: Send + Sync + 'static {
    /// Allow or deny this client.
    fn authenticate(&self, req: &AuthRequest<'_>) -> AuthDecision;
}

impl<F> Authenticator for F
where
    F: Fn(&AuthRequest<'_>) -> AuthDecision + Send + Sync + 'static,
{
    fn authenticate(&self, req: &AuthRequest<'_>) -> AuthDecision {
        self(req)
    }
}

/// Accept every client that completes the handshake (traffic still encrypted).
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAny;

impl Authenticator for AllowAny {
    fn authenticate(&self, _req: &AuthRequest<'_>) -> AuthDecision {
        AuthDecision::Allow
    }
}

/// An allow-list of client public keys, shareable and changeable while inboxes use it (clones share
/// the same set). Optionally backed by a directory of public certificates that [`reload`] rereads.
///
/// [`reload`]: AllowList::reload
#[derive(Debug, Clone, Default)]
pub struct AllowList {
    inner: Arc<RwLock<ListInner>>,
}

#[derive(Debug, Default)]
struct ListInner {
    keys: HashSet<CurvePublicKey>,
    dir: Option<PathBuf>,
}

impl AllowList {
    /// An empty list (denies everyone until keys are added).
    pub fn new() -> Self {
        Self::default()
    }

    /// A list of these keys.
    pub fn from_keys(keys: impl IntoIterator<Item = CurvePublicKey>) -> Self {
        let l = Self::new();
        for k in keys {
            l.insert(k);
        }
        l
    }

    /// A list loaded from every public certificate in `dir` (files whose name does not end in
    /// `_secret`; like czmq's zcertstore, files that are not certificates are skipped with a debug
    /// log). [`AllowList::reload`] rereads the directory.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self, CurveError> {
        let l = Self::new();
        l.write().dir = Some(dir.as_ref().to_path_buf());
        l.reload()?;
        Ok(l)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, ListInner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, ListInner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Reread the certificate directory (if the list has one), replacing the keys in one step;
    /// returns how many keys the list now holds. Keys added by hand are replaced too.
    pub fn reload(&self) -> Result<usize, CurveError> {
        let Some(dir) = self.read().dir.clone() else {
            return Ok(self.len());
        };
        let keys = load_public_keys(&dir)?;
        let n = keys.len();
        self.write().keys = keys;
        tracing::debug!(dir = %dir.display(), keys = n, "CURVE allow-list loaded");
        Ok(n)
    }

    /// Allow this key.
    pub fn insert(&self, key: CurvePublicKey) {
        self.write().keys.insert(key);
    }

    /// Stop allowing this key (connections already established stay).
    pub fn remove(&self, key: &CurvePublicKey) -> bool {
        self.write().keys.remove(key)
    }

    /// Whether the key is allowed.
    pub fn contains(&self, key: &CurvePublicKey) -> bool {
        self.read().keys.contains(key)
    }

    /// Number of keys allowed.
    pub fn len(&self) -> usize {
        self.read().keys.len()
    }

    /// Whether no key is allowed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Authenticator for AllowList {
    fn authenticate(&self, req: &AuthRequest<'_>) -> AuthDecision {
        if self.contains(req.public_key) {
            AuthDecision::Allow
        } else {
            AuthDecision::Deny(format!("key {} is not in the allow-list", req.public_key))
        }
    }
}

/// Public keys of every public certificate in `dir`.
fn load_public_keys(dir: &Path) -> Result<HashSet<CurvePublicKey>, CurveError> {
    let mut keys = HashSet::new();
    let entries = std::fs::read_dir(dir)
        .map_err(|e| CurveError::Certificate(format!("{}: {e}", dir.display())))?;
    for entry in entries {
        let entry =
            entry.map_err(|e| CurveError::Certificate(format!("{}: {e}", dir.display())))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with("_secret") || name.starts_with('.') || !path.is_file() {
            continue;
        }
        match Certificate::load(&path) {
            Ok(c) => {
                keys.insert(c.public);
            }
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "not a certificate, skipped")
            }
        }
    }
    Ok(keys)
}
