//! Transfer secrets encrypted at rest: XChaCha20-Poly1305 under a 256-bit
//! key from `DISPATCH_SECRET_KEY` (base64) or a key file created on first
//! start (mode 0600). The field name is the associated data, so a
//! ciphertext cannot be moved to another field.

use crate::on_db;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use std::path::Path;

pub struct Crypto {
    cipher: XChaCha20Poly1305,
    /// Where the key came from, for the error when it is the wrong one.
    source: String,
}

/// The associated data of the value `secret_key_check` seals.
const CHECK_AAD: &str = "secret_key_check.sealed";

/// Sealed secrets of a database from before `secret_key_check`: one of them
/// tells whether a key is the database's.
const SEALED_BEFORE: [(&str, &str); 2] = [
    (
        "targets.secrets_enc",
        "SELECT secrets_enc FROM targets WHERE secrets_enc IS NOT NULL LIMIT 1",
    ),
    (
        "agents.settings_secrets_enc",
        "SELECT settings_secrets_enc FROM agents WHERE settings_secrets_enc IS NOT NULL LIMIT 1",
    ),
];

impl Crypto {
    /// The key from `env_key` (base64 of 32 bytes) if given, else from
    /// `key_file`, which is created with a random key when missing.
    pub fn load(env_key: Option<&str>, key_file: &Path) -> anyhow::Result<Self> {
        let source = match env_key {
            Some(_) => "DISPATCH_SECRET_KEY".to_string(),
            None => format!("the key file {}", key_file.display()),
        };
        let key: Vec<u8> = match env_key {
            Some(b64) => base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| anyhow::anyhow!("DISPATCH_SECRET_KEY is not base64: {e}"))?,
            None if key_file.exists() => {
                let text = std::fs::read_to_string(key_file).map_err(|e| {
                    anyhow::anyhow!("cannot read the key file {}: {e}", key_file.display())
                })?;
                base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    .map_err(|e| {
                        anyhow::anyhow!("key file {} is not base64: {e}", key_file.display())
                    })?
            }
            None => {
                let key = random_bytes(32);
                match write_private(
                    key_file,
                    &base64::engine::general_purpose::STANDARD.encode(&key),
                ) {
                    Ok(()) => {
                        tracing::info!(file = %key_file.display(), "created the secret key file");
                        key
                    }
                    // Another replica sharing the file made it first.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        return Self::load(None, key_file);
                    }
                    Err(e) => {
                        return Err(anyhow::anyhow!(
                            "cannot create the key file {}: {e}",
                            key_file.display()
                        ));
                    }
                }
            }
        };
        if key.len() != 32 {
            anyhow::bail!("the secret key must be 32 bytes, not {}", key.len());
        }
        let cipher = XChaCha20Poly1305::new_from_slice(&key).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Self { cipher, source })
    }

    /// Refuses a key that is not the database's (another replica's, or a
    /// new key file beside an old database): secrets sealed under the
    /// database's key could not be opened later. The first start seals a
    /// value under its key for the next ones to check.
    pub async fn check_against(&self, db: &crate::db::Db) -> anyhow::Result<()> {
        let read = || async {
            on_db!(db, pool => {
                sqlx::query_scalar::<_, Vec<u8>>("SELECT sealed FROM secret_key_check WHERE id = 1")
                    .fetch_optional(pool)
                    .await
            })
        };
        if read().await?.is_none() {
            for (field, sql) in SEALED_BEFORE {
                let blob: Option<Vec<u8>> =
                    on_db!(db, pool => sqlx::query_scalar(sql).fetch_optional(pool).await)?;
                if let Some(blob) = blob
                    && self.decrypt(field, &blob).is_err()
                {
                    return Err(self.wrong_key());
                }
            }
            // Another replica starting at the same moment may seal first;
            // then its value is the one checked below.
            let sealed = self.encrypt(CHECK_AAD, "dispatch");
            on_db!(db, pool => {
                sqlx::query(
                    "INSERT INTO secret_key_check (id, sealed) VALUES (1, $1) ON CONFLICT DO NOTHING",
                )
                .bind(&sealed)
                .execute(pool)
                .await
                .map(|_| ())
            })?;
        }
        match read().await? {
            Some(blob) if self.decrypt(CHECK_AAD, &blob).is_ok() => Ok(()),
            _ => Err(self.wrong_key()),
        }
    }

    fn wrong_key(&self) -> anyhow::Error {
        anyhow::anyhow!(
            "the secret key from {} is not the key this database's secrets were sealed with: \
             every replica of the web app needs the same key (set DISPATCH_SECRET_KEY to the \
             same value on each, or give each the first one's secret.key file)",
            self.source
        )
    }

    /// nonce (24 bytes) || ciphertext.
    pub fn encrypt(&self, field: &str, plaintext: &str) -> Vec<u8> {
        let nonce_bytes = random_bytes(24);
        let nonce = XNonce::from_slice(&nonce_bytes);
        let ct = self
            .cipher
            .encrypt(
                nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: field.as_bytes(),
                },
            )
            .unwrap_or_default();
        let mut out = nonce_bytes;
        out.extend_from_slice(&ct);
        out
    }

    pub fn decrypt(&self, field: &str, blob: &[u8]) -> anyhow::Result<String> {
        if blob.len() < 24 {
            anyhow::bail!("stored {field} is damaged");
        }
        let (nonce, ct) = blob.split_at(24);
        let pt = self
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: field.as_bytes(),
                },
            )
            .map_err(|_| anyhow::anyhow!("stored {field} cannot be decrypted with this key"))?;
        Ok(String::from_utf8(pt)?)
    }
}

pub fn random_bytes(n: usize) -> Vec<u8> {
    use argon2::password_hash::rand_core::{OsRng, RngCore};
    let mut v = vec![0u8; n];
    OsRng.fill_bytes(&mut v);
    v
}

/// A new file readable by its owner only, whole or not at all: written
/// under a temporary name, then linked to `path` unless that exists (an
/// error then; another process made it first).
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist_noclobber(path).map_err(|e| e.error)?;
    Ok(())
}
