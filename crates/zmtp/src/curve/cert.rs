//! Certificates in czmq's `zcert` format (also what pyzmq's `zmq.auth.create_certificates` writes and
//! `zmq.auth.load_certificate` reads): a public file and a secret file whose name is the public
//! file's plus `_secret`, each a ZPL text (RFC 4) with a `metadata` section and a `curve` section
//! holding `public-key` (and, in the secret file, `secret-key`) as 40-character Z85 text:
//!
//! ```text
//! #   ****  Generated on 2026-12-05 12:00:00 by zmesh  ****
//! #   ZeroMQ CURVE **Secret** Certificate
//! #   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.
//!
//! metadata
//!     name = "alice"
//! curve
//!     public-key = "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID"
//!     secret-key = "D:)Q[IlAW!ahhC2ac:9*A}h:p?([4%wOTJ%JR%cs"
//! ```

use super::keys::{CurveKeyPair, CurvePublicKey};
use super::CurveError;
use std::path::{Path, PathBuf};

const PUBLIC_BANNER: &str = "#   ZeroMQ CURVE Public Certificate\n\
#   Exchange securely, or use a secure mechanism to verify the contents\n\
#   of this file after exchange. Store public certificates in your home\n\
#   directory, in the .curve subdirectory.\n";
const SECRET_BANNER: &str = "#   ZeroMQ CURVE **Secret** Certificate\n\
#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.\n";

/// A CURVE certificate: a public key, maybe the secret key, and free-form metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// The public key (`curve/public-key`).
    pub public: CurvePublicKey,
    /// The key pair, when the certificate holds the secret key (`curve/secret-key`).
    pub secret: Option<CurveKeyPair>,
    /// The `metadata` section, in file order (czmq's `zcert_set_meta`).
    pub metadata: Vec<(String, String)>,
}

impl Certificate {
    /// A certificate for a key pair (public and secret).
    pub fn new(keys: CurveKeyPair) -> Self {
        Certificate {
            public: keys.public(),
            secret: Some(keys),
            metadata: Vec::new(),
        }
    }

    /// Builder: add a metadata entry.
    pub fn with_meta(mut self, name: &str, value: &str) -> Self {
        self.metadata.push((name.to_string(), value.to_string()));
        self
    }

    /// Parse a certificate's text (public or secret). A secret key that does not match the public
    /// key is refused.
    pub fn parse(text: &str) -> Result<Self, CurveError> {
        let mut section = String::new();
        let mut public = None;
        let mut secret = None;
        let mut metadata = Vec::new();
        for raw in text.lines() {
            let line = raw.trim_end();
            let content = line.trim_start();
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            let indent = line.len() - content.len();
            let (name, value) = match content.split_once('=') {
                Some((n, v)) => (n.trim(), Some(unquote(v.trim()))),
                None => (content, None),
            };
            if indent == 0 {
                section = name.to_string();
                continue;
            }
            let Some(value) = value else { continue };
            match (section.as_str(), name) {
                ("curve", "public-key") => public = Some(CurvePublicKey::from_z85(&value)?),
                ("curve", "secret-key") => secret = Some(CurveKeyPair::from_secret_z85(&value)?),
                ("metadata", _) => metadata.push((name.to_string(), value)),
                _ => {}
            }
        }
        let public = match (public, &secret) {
            (Some(p), _) => p,
            (None, Some(s)) => s.public(),
            (None, None) => {
                return Err(CurveError::Certificate(
                    "no curve/public-key in certificate".into(),
                ))
            }
        };
        if let Some(s) = &secret {
            if s.public() != public {
                return Err(CurveError::Certificate(
                    "secret-key does not belong to public-key".into(),
                ));
            }
        }
        Ok(Certificate {
            public,
            secret,
            metadata,
        })
    }

    /// Load a certificate file (public or secret).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, CurveError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| CurveError::Certificate(format!("{}: {e}", path.display())))?;
        Self::parse(&text).map_err(|e| match e {
            CurveError::Certificate(m) => {
                CurveError::Certificate(format!("{}: {m}", path.display()))
            }
            other => other,
        })
    }

    /// The text of the public certificate.
    pub fn to_public_text(&self) -> String {
        self.render(false)
    }

    /// The text of the secret certificate (`None` without a secret key).
    pub fn to_secret_text(&self) -> Option<zeroize::Zeroizing<String>> {
        self.secret
            .as_ref()
            .map(|_| zeroize::Zeroizing::new(self.render(true)))
    }

    fn render(&self, with_secret: bool) -> String {
        let mut s = format!("#   ****  Generated on {} by zmesh  ****\n", now_utc());
        s.push_str(if with_secret {
            SECRET_BANNER
        } else {
            PUBLIC_BANNER
        });
        s.push_str("\nmetadata\n");
        for (k, v) in &self.metadata {
            s.push_str(&format!("    {k} = \"{}\"\n", v.replace('"', "'")));
        }
        s.push_str("curve\n");
        s.push_str(&format!("    public-key = \"{}\"\n", self.public.to_z85()));
        if let (true, Some(kp)) = (with_secret, &self.secret) {
            s.push_str(&format!(
                "    secret-key = \"{}\"\n",
                kp.secret_z85().as_str()
            ));
        }
        s
    }

    /// Save as czmq does (`zcert_save`): the public certificate at `path` and, with a secret key,
    /// the secret certificate at `path` + `_secret` (mode 0600).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), CurveError> {
        let path = path.as_ref();
        self.save_public(path)?;
        if let Some(text) = self.to_secret_text() {
            let sp = secret_path(path);
            write_file(&sp, text.as_bytes(), 0o600)?;
        }
        Ok(())
    }

    /// Save only the public certificate at `path`.
    pub fn save_public(&self, path: impl AsRef<Path>) -> Result<(), CurveError> {
        write_file(path.as_ref(), self.to_public_text().as_bytes(), 0o644)
    }
}

impl CurveKeyPair {
    /// Save as a czmq certificate pair: `path` (public) and `path_secret` (secret, mode 0600).
    pub fn save_cert(&self, path: impl AsRef<Path>) -> Result<(), CurveError> {
        Certificate::new(self.clone()).save(path)
    }

    /// Load a key pair from a secret certificate; given a public certificate's path, the secret
    /// file next to it (`path_secret`) is read instead.
    pub fn load_cert(path: impl AsRef<Path>) -> Result<Self, CurveError> {
        let path = path.as_ref();
        let cert = match Certificate::load(path)? {
            Certificate {
                secret: Some(kp), ..
            } => return Ok(kp),
            _ => Certificate::load(secret_path(path))?,
        };
        cert.secret
            .ok_or_else(|| CurveError::Certificate(format!("{}: no secret-key", path.display())))
    }
}

/// `path` + `_secret`.
pub fn secret_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push("_secret");
    PathBuf::from(s)
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q).and_then(|r| r.split(q).next()) {
            return inner.to_string();
        }
    }
    // Unquoted: up to a comment.
    v.split('#').next().unwrap_or("").trim().to_string()
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), CurveError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |e: std::io::Error| CurveError::Certificate(format!("{}: {e}", path.display()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(err)?;
    f.write_all(data).map_err(err)
}

/// `YYYY-MM-DD HH:MM:SS` in UTC, for the banner (no date crate needed).
fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = ((secs / 86400) as i64, secs % 86400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A secret certificate as pyzmq 27 writes it (`zmq.auth.create_certificates`, metadata values
    /// unquoted), and as czmq writes it (quoted, metadata entries).
    #[test]
    fn parses_pyzmq_and_czmq_texts() {
        let pyzmq = r#"#   ****  Generated on 2026-12-05 12:00:00.123456 by pyzmq  ****
#   ZeroMQ CURVE **Secret** Certificate
#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.

metadata
    name = bob
curve
    public-key = "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID"
    secret-key = "D:)Q[IlAW!ahhC2ac:9*A}h:p?([4%wOTJ%JR%cs"
"#;
        let c = Certificate::parse(pyzmq).unwrap();
        assert_eq!(
            c.public.to_z85(),
            "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID"
        );
        assert_eq!(c.secret.as_ref().unwrap().public(), c.public);
        assert_eq!(c.metadata, vec![("name".to_string(), "bob".to_string())]);
        let czmq = r#"#   ZeroMQ CURVE Public Certificate

metadata
    email = "a@b.c"  # x
curve
    public-key = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
"#;
        let c = Certificate::parse(czmq).unwrap();
        assert!(c.secret.is_none());
        assert_eq!(c.metadata[0].1, "a@b.c");
    }

    #[test]
    fn mismatched_or_missing_keys_are_refused() {
        let bad = r#"curve
    public-key = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
    secret-key = "D:)Q[IlAW!ahhC2ac:9*A}h:p?([4%wOTJ%JR%cs"
"#;
        assert!(matches!(
            Certificate::parse(bad),
            Err(CurveError::Certificate(_))
        ));
        assert!(matches!(
            Certificate::parse("metadata\n"),
            Err(CurveError::Certificate(_))
        ));
        assert!(Certificate::parse("curve\n    public-key = \"short\"\n").is_err());
    }

    #[test]
    fn save_and_load_round_trip() {
        let dir = std::env::temp_dir().join(format!("zmesh-cert-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let kp = CurveKeyPair::generate();
        let path = dir.join("node.key");
        Certificate::new(kp.clone())
            .with_meta("name", "node")
            .save(&path)
            .unwrap();
        let public = Certificate::load(&path).unwrap();
        assert_eq!(public.public, kp.public());
        assert!(public.secret.is_none());
        assert_eq!(public.metadata, vec![("name".into(), "node".into())]);
        assert_eq!(CurveKeyPair::load_cert(&path).unwrap(), kp);
        assert_eq!(CurveKeyPair::load_cert(secret_path(&path)).unwrap(), kp);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(secret_path(&path))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "secret certificate is private");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn banner_date_is_plausible() {
        let d = now_utc();
        assert_eq!(d.len(), 19);
        assert!(d.starts_with("20"));
    }
}
