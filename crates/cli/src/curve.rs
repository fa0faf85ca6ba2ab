//! CURVE on the command line: `zmesh keygen NAME`, and the global flags `--curve-secret FILE`
//! and `--allow DIR` that put the node of any command that runs one into secure mode.
//!
//! * `zmesh keygen NAME` writes a czmq certificate pair, `NAME` (public) and `NAME_secret`
//!   (secret, mode 0600), exactly as czmq's `zcert_save` and pyzmq's
//!   `zmq.auth.create_certificates` do, and prints the public key. It never overwrites a file
//!   (`--force` does), and never makes a key whose first byte is 0 (Zyre ignores those).
//! * `--curve-secret FILE` loads the node's key pair from a secret certificate (or from a public
//!   one with its `_secret` beside it). Without `--allow`, any CURVE peer is accepted and the
//!   traffic is still encrypted.
//! * `--allow DIR` admits only the peers whose public certificates are in `DIR`. On SIGHUP the
//!   directory is read again (the count is logged).
//!
//! Files are read once, before the node starts: a missing or bad file is a clear error and exit
//! status 2, never a node that silently runs in plain mode.

use std::path::{Path, PathBuf};

use clap::Args;
use tracing::{info, warn};
use zmesh::curve::{secret_path, AllowList, Certificate, CurveKeyPair};
use zmesh::NodeBuilder;

use crate::output::print_json;

/// `zmesh keygen` arguments.
#[derive(Args, Debug)]
pub(crate) struct KeygenArgs {
    /// Path of the public certificate to write; the secret one goes to NAME_secret.
    name: PathBuf,
    /// Replace existing files.
    #[arg(long)]
    force: bool,
}

/// The key pair and allow-list of `--curve-secret` / `--allow`, loaded.
#[derive(Debug, Clone)]
pub(crate) struct Security {
    keys: CurveKeyPair,
    allow: Option<AllowList>,
}

impl Security {
    /// Loads the flags' files; `None` without `--curve-secret`.
    pub(crate) fn load(
        secret: Option<&Path>,
        allow: Option<&Path>,
    ) -> Result<Option<Security>, zmesh::Error> {
        let Some(secret) = secret else {
            if let Some(dir) = allow {
                return Err(zmesh::Error::Config(format!(
                    "--allow {} needs --curve-secret (an allow-list is for secure mode)",
                    dir.display()
                )));
            }
            return Ok(None);
        };
        let keys = CurveKeyPair::load_cert(secret)?;
        let allow = match allow {
            Some(dir) => {
                if !dir.is_dir() {
                    return Err(zmesh::Error::Config(format!(
                        "--allow {}: not a directory",
                        dir.display()
                    )));
                }
                let list = AllowList::from_dir(dir)?;
                if list.is_empty() {
                    warn!(dir = %dir.display(), "the allow-list is empty: no peer will be admitted");
                }
                Some(list)
            }
            None => None,
        };
        Ok(Some(Security { keys, allow }))
    }

    /// This node's public key, Z85 (what a broker announces with its endpoint).
    pub(crate) fn public_z85(&self) -> String {
        self.keys.public().to_z85()
    }

    /// Puts a node builder in secure mode.
    pub(crate) fn apply(&self, mut b: NodeBuilder) -> NodeBuilder {
        b = b.secure(self.keys.clone());
        if let Some(list) = &self.allow {
            b = b.allow_list(list.clone());
        }
        b
    }

    /// Rereads the allow-list directory on every SIGHUP, for as long as the process runs.
    pub(crate) fn reload_on_sighup(&self) {
        #[cfg(unix)]
        if let Some(list) = self.allow.clone() {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                return;
            };
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    match list.reload() {
                        Ok(n) => info!(keys = n, "allow-list reloaded"),
                        Err(e) => warn!(error = %e, "allow-list not reloaded"),
                    }
                }
            });
        }
    }
}

/// `zmesh keygen NAME`.
pub(crate) fn keygen(args: &KeygenArgs, json: bool) -> Result<i32, zmesh::Error> {
    let public = &args.name;
    let secret = secret_path(public);
    if !args.force {
        for p in [public, &secret] {
            if p.exists() {
                return Err(zmesh::Error::Config(format!(
                    "{} exists (use --force to replace it)",
                    p.display()
                )));
            }
        }
    }
    let keys = generate();
    Certificate::new(keys.clone()).save(public)?;
    let key = keys.public().to_z85();
    if json {
        print_json(&serde_json::json!({
            "public": public.display().to_string(),
            "secret": secret.display().to_string(),
            "public_key": key,
        }));
    } else {
        println!("{key}");
        eprintln!(
            "wrote {} (public) and {} (secret, keep it private)",
            public.display(),
            secret.display()
        );
    }
    Ok(0)
}

/// A fresh key pair whose public key Zyre accepts (first byte not 0).
fn generate() -> CurveKeyPair {
    zmesh::curve::generate_key_pair()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("zmesh-cli-curve-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn keygen_writes_a_pair_that_loads_and_never_overwrites() {
        let d = temp("keygen");
        let args = KeygenArgs {
            name: d.join("node.key"),
            force: false,
        };
        assert_eq!(keygen(&args, true).unwrap(), 0);
        let from_secret = CurveKeyPair::load_cert(d.join("node.key_secret")).unwrap();
        let from_public = CurveKeyPair::load_cert(d.join("node.key")).unwrap();
        assert_eq!(from_secret, from_public);
        assert_eq!(
            Certificate::load(d.join("node.key")).unwrap().public,
            from_secret.public()
        );
        assert!(Certificate::load(d.join("node.key"))
            .unwrap()
            .secret
            .is_none());
        assert!(matches!(keygen(&args, false), Err(zmesh::Error::Config(_))));
        let again = KeygenArgs {
            force: true,
            ..args
        };
        keygen(&again, true).unwrap();
        assert_ne!(
            CurveKeyPair::load_cert(d.join("node.key")).unwrap(),
            from_secret
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        let d = temp("bad");
        let missing = d.join("missing.key");
        let e = Security::load(Some(&missing), None).unwrap_err();
        assert!(e.to_string().contains("missing.key"), "{e}");
        std::fs::write(d.join("garbage"), "not a certificate\n").unwrap();
        assert!(Security::load(Some(&d.join("garbage")), None).is_err());
        // A public certificate without its secret beside it.
        Certificate::new(CurveKeyPair::generate())
            .save_public(d.join("pub.key"))
            .unwrap();
        let e = Security::load(Some(&d.join("pub.key")), None).unwrap_err();
        assert!(e.to_string().contains("pub.key"), "{e}");
        assert!(Security::load(None, Some(&d)).is_err(), "--allow alone");
        zmesh::curve::generate_key_pair()
            .save_cert(d.join("me.key"))
            .unwrap();
        assert!(Security::load(Some(&d.join("me.key")), Some(&d.join("nope"))).is_err());
        let ok = Security::load(Some(&d.join("me.key")), Some(&d))
            .unwrap()
            .unwrap();
        // pub.key and me.key are public certificates in the directory.
        assert_eq!(ok.allow.as_ref().unwrap().len(), 2);
        let _ = std::fs::remove_dir_all(&d);
    }
}
