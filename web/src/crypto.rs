//! Transfer secrets encrypted at rest: XChaCha20-Poly1305 under a 256-bit
//! key from `DISPATCH_SECRET_KEY` (base64) or a key file created on first
//! start (mode 0600). The field name is the associated data, so a
//! ciphertext cannot be moved to another field.

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use std::path::Path;

pub struct Crypto {
    cipher: XChaCha20Poly1305,
}

impl Crypto {
    /// The key from `env_key` (base64 of 32 bytes) if given, else from
    /// `key_file`, which is created with a random key when missing.
    pub fn load(env_key: Option<&str>, key_file: &Path) -> anyhow::Result<Self> {
        let key: Vec<u8> = match env_key {
            Some(b64) => base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| anyhow::anyhow!("DISPATCH_SECRET_KEY is not base64: {e}"))?,
            None if key_file.exists() => {
                let text = std::fs::read_to_string(key_file)?;
                base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    .map_err(|e| {
                        anyhow::anyhow!("key file {} is not base64: {e}", key_file.display())
                    })?
            }
            None => {
                let key = random_bytes(32);
                write_private(
                    key_file,
                    &base64::engine::general_purpose::STANDARD.encode(&key),
                )?;
                tracing::info!(file = %key_file.display(), "created the secret key file");
                key
            }
        };
        if key.len() != 32 {
            anyhow::bail!("the secret key must be 32 bytes, not {}", key.len());
        }
        let cipher = XChaCha20Poly1305::new_from_slice(&key).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Self { cipher })
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

/// A new file readable by its owner only.
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}
