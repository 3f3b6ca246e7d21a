//! The database key: where it comes from and where it is kept.
//!
//! At first run a random 256-bit key is made and kept in the OS keyring (Secret Service on
//! Linux, Keychain on macOS, Credential Manager on Windows). Where no keyring service can be
//! reached (a headless Linux box, CI) the key goes to a file readable only by the user in the
//! config folder, and [`KeyStorage::KeyringUnavailable`] says so for the UI to show. A user may
//! instead open the database with a passphrase (SQLCipher derives the key with PBKDF2-HMAC-SHA512).
//! A new key is only ever made when the database file does not exist yet.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use zeroize::Zeroizing;

use super::error::{Result, StoreError};

/// Keyring service name under which the key is kept.
pub const KEYRING_SERVICE: &str = "org.doctorglm.desktop";
/// Keyring account name of the database key.
pub const KEYRING_ACCOUNT: &str = "conversation-store-key";

/// A raw 256-bit database key, wiped from memory when dropped.
#[derive(Clone)]
pub struct DbKey(Zeroizing<[u8; 32]>);

impl DbKey {
    /// A fresh random key from the operating system's random source.
    pub fn generate() -> Result<Self> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        getrandom::fill(bytes.as_mut()).map_err(|e| StoreError::Random(e.to_string()))?;
        Ok(Self(bytes))
    }

    /// Parses 64 hexadecimal digits (surrounding whitespace allowed).
    pub fn from_hex(text: &str) -> Option<Self> {
        let text = text.trim().as_bytes();
        if text.len() != 64 {
            return None;
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        for (i, pair) in text.chunks(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            bytes[i] = (hi * 16 + lo) as u8;
        }
        Some(Self(bytes))
    }

    /// The key as 64 lowercase hexadecimal digits.
    pub fn to_hex(&self) -> Zeroizing<String> {
        let mut s = Zeroizing::new(String::with_capacity(64));
        for b in self.0.iter() {
            s.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
            s.push(char::from_digit(u32::from(b & 15), 16).unwrap_or('0'));
        }
        s
    }
}

impl fmt::Debug for DbKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DbKey(<hidden>)")
    }
}

/// How the caller wants the database key found.
#[derive(Clone, Debug)]
pub enum KeySource {
    /// The key file if there is one, else the OS keyring; a new random key at first run.
    Auto,
    /// A passphrase the user types (SQLCipher's PBKDF2 derivation).
    Passphrase(Zeroizing<String>),
    /// A raw key given by the caller (tests, administrators' tooling).
    Key(DbKey),
}

/// Where the key in use is kept: shown to the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum KeyStorage {
    /// In the OS keyring.
    Keyring,
    /// No keyring service was reachable: the key is in a file readable only by this user.
    KeyringUnavailable {
        /// Why the keyring could not be used.
        reason: String,
        /// The key file.
        key_file: PathBuf,
    },
    /// Derived from a passphrase the user typed; not stored anywhere.
    Passphrase,
    /// Given by the caller.
    Provided,
}

impl KeyStorage {
    /// A sentence for the UI about where the key is.
    pub fn describe(&self) -> String {
        match self {
            KeyStorage::Keyring => "The database key is kept in the system keyring.".into(),
            KeyStorage::KeyringUnavailable { reason, key_file } => format!(
                "No system keyring is available ({reason}). The database key is kept in {}, \
                 readable only by you; whoever can read that file and the database can read the \
                 conversations. Keep it out of shared folders and backups of the data folder.",
                key_file.display()
            ),
            KeyStorage::Passphrase => "The database is opened with your passphrase.".into(),
            KeyStorage::Provided => "The database key was given by the administrator's tooling.".into(),
        }
    }
}

/// Key material ready to hand to SQLCipher.
#[derive(Clone)]
pub(crate) enum Secret {
    Raw(DbKey),
    Passphrase(Zeroizing<String>),
}

impl Secret {
    /// The value for `PRAGMA key`.
    pub(crate) fn pragma_value(&self) -> Zeroizing<String> {
        match self {
            Secret::Raw(key) => Zeroizing::new(format!("x'{}'", key.to_hex().as_str())),
            Secret::Passphrase(p) => Zeroizing::new(p.as_str().to_owned()),
        }
    }
}

/// Why a keyring could not be used.
#[derive(Debug, Clone)]
pub struct VaultUnavailable(pub String);

/// A place that keeps one secret: the OS keyring, or a stand-in in tests.
pub trait KeyVault {
    /// The secret if one is stored; `Ok(None)` if the vault works but holds none.
    fn load(&self) -> Result<Option<Zeroizing<String>>, VaultUnavailable>;
    /// Stores the secret.
    fn save(&self, secret: &str) -> Result<(), VaultUnavailable>;
}

/// The OS keyring through the `keyring` crate.
#[derive(Debug, Clone)]
pub struct OsKeyring {
    /// Service name.
    pub service: String,
    /// Account name.
    pub account: String,
}

impl Default for OsKeyring {
    fn default() -> Self {
        Self { service: KEYRING_SERVICE.into(), account: KEYRING_ACCOUNT.into() }
    }
}

impl KeyVault for OsKeyring {
    fn load(&self) -> Result<Option<Zeroizing<String>>, VaultUnavailable> {
        let entry = keyring::Entry::new(&self.service, &self.account).map_err(|e| VaultUnavailable(e.to_string()))?;
        match entry.get_password() {
            Ok(p) => Ok(Some(Zeroizing::new(p))),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(VaultUnavailable(e.to_string())),
        }
    }

    fn save(&self, secret: &str) -> Result<(), VaultUnavailable> {
        let entry = keyring::Entry::new(&self.service, &self.account).map_err(|e| VaultUnavailable(e.to_string()))?;
        entry.set_password(secret).map_err(|e| VaultUnavailable(e.to_string()))
    }
}

/// A resolved key and where it is kept.
pub(crate) struct ResolvedKey {
    pub(crate) secret: Secret,
    pub(crate) storage: KeyStorage,
}

/// Finds (or, for a database that does not exist yet, makes) the key.
pub(crate) fn resolve_key(
    source: KeySource,
    db_path: &Path,
    key_file: &Path,
    vault: &dyn KeyVault,
) -> Result<ResolvedKey> {
    match source {
        KeySource::Key(key) => Ok(ResolvedKey { secret: Secret::Raw(key), storage: KeyStorage::Provided }),
        KeySource::Passphrase(p) => {
            if p.is_empty() {
                return Err(StoreError::EmptyPassphrase);
            }
            Ok(ResolvedKey { secret: Secret::Passphrase(p), storage: KeyStorage::Passphrase })
        }
        KeySource::Auto => resolve_auto(db_path, key_file, vault),
    }
}

fn resolve_auto(db_path: &Path, key_file: &Path, vault: &dyn KeyVault) -> Result<ResolvedKey> {
    let db_exists = db_path.exists();
    if key_file.exists() {
        let key = read_key_file(key_file)?;
        return Ok(ResolvedKey {
            secret: Secret::Raw(key),
            storage: KeyStorage::KeyringUnavailable {
                reason: "the key was put in a file when the database was made because no keyring \
                         service was reachable then"
                    .into(),
                key_file: key_file.to_path_buf(),
            },
        });
    }
    let unavailable = match vault.load() {
        Ok(Some(text)) => {
            let key = DbKey::from_hex(&text).ok_or_else(|| {
                StoreError::Invalid("the database key in the OS keyring is damaged (not 64 hex digits)".into())
            })?;
            return Ok(ResolvedKey { secret: Secret::Raw(key), storage: KeyStorage::Keyring });
        }
        Ok(None) => None,
        Err(VaultUnavailable(reason)) => Some(reason),
    };
    if db_exists {
        return Err(StoreError::MissingKey {
            path: db_path.to_path_buf(),
            key_file: key_file.to_path_buf(),
            detail: match unavailable {
                Some(reason) => format!("the OS keyring is unavailable: {reason}"),
                None => "the OS keyring has no key for it".into(),
            },
        });
    }
    // First run: a new database gets a new key, kept before the database is made.
    let key = DbKey::generate()?;
    let reason = match unavailable {
        Some(reason) => reason,
        None => match save_and_check(vault, &key) {
            Ok(()) => {
                tracing::info!("new database key kept in the OS keyring");
                return Ok(ResolvedKey { secret: Secret::Raw(key), storage: KeyStorage::Keyring });
            }
            Err(VaultUnavailable(reason)) => reason,
        },
    };
    tracing::warn!(%reason, key_file = %key_file.display(), "no OS keyring: keeping the database key in a user-only file");
    write_key_file(key_file, &key)?;
    Ok(ResolvedKey {
        secret: Secret::Raw(key),
        storage: KeyStorage::KeyringUnavailable { reason, key_file: key_file.to_path_buf() },
    })
}

/// Saves the key and reads it back: some keyrings accept writes they do not keep.
fn save_and_check(vault: &dyn KeyVault, key: &DbKey) -> Result<(), VaultUnavailable> {
    let hex = key.to_hex();
    vault.save(&hex)?;
    match vault.load()? {
        Some(back) if back.as_str() == hex.as_str() => Ok(()),
        _ => Err(VaultUnavailable("the keyring did not keep the key it was given".into())),
    }
}

/// Reads a key file, tightening its permissions if they are too open.
fn read_key_file(path: &Path) -> Result<DbKey> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|e| StoreError::io(path, e))?;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "key file was readable by others; restricting it to the owner");
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| StoreError::io(path, e))?;
        }
    }
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| StoreError::io(path, e))?);
    DbKey::from_hex(&text).ok_or_else(|| StoreError::BadKeyFile {
        path: path.to_path_buf(),
        reason: "it does not hold 64 hexadecimal digits".into(),
    })
}

/// Writes the key file durably (temporary file, fsync, rename, fsync of the folder), mode 0600.
fn write_key_file(path: &Path, key: &DbKey) -> Result<()> {
    let dir = path.parent().ok_or_else(|| StoreError::Invalid(format!("bad key file path {}", path.display())))?;
    create_private_dir(dir)?;
    let tmp = path.with_extension("key.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
    file.write_all(key.to_hex().as_bytes()).map_err(|e| StoreError::io(&tmp, e))?;
    file.write_all(b"\n").map_err(|e| StoreError::io(&tmp, e))?;
    file.sync_all().map_err(|e| StoreError::io(&tmp, e))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| StoreError::io(path, e))?;
    sync_dir(dir);
    Ok(())
}

/// Creates a folder (and parents); on Unix a newly made last folder is user-only (0700).
pub(crate) fn create_private_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|e| StoreError::io(dir, e))
}

/// Flushes a folder's entries to disk (best effort; not possible on Windows).
pub(crate) fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A keyring stand-in: `None` means "no keyring service".
    pub(crate) struct FakeVault(pub RefCell<Option<Option<String>>>);

    impl FakeVault {
        pub(crate) fn unavailable() -> Self {
            Self(RefCell::new(None))
        }
        pub(crate) fn empty() -> Self {
            Self(RefCell::new(Some(None)))
        }
    }

    impl KeyVault for FakeVault {
        fn load(&self) -> Result<Option<Zeroizing<String>>, VaultUnavailable> {
            match &*self.0.borrow() {
                None => Err(VaultUnavailable("no secret service on the session bus".into())),
                Some(v) => Ok(v.clone().map(Zeroizing::new)),
            }
        }
        fn save(&self, secret: &str) -> Result<(), VaultUnavailable> {
            let mut slot = self.0.borrow_mut();
            match &mut *slot {
                None => Err(VaultUnavailable("no secret service on the session bus".into())),
                Some(v) => {
                    *v = Some(secret.to_owned());
                    Ok(())
                }
            }
        }
    }

    #[test]
    fn store_key_os_keyring_lookup_never_invents_a_key() {
        // Read-only: a service name nobody uses. Ok(None) where a keyring runs, Err where none.
        let vault = OsKeyring { service: "org.doctorglm.test.absent".into(), account: "none".into() };
        match vault.load() {
            Ok(found) => assert!(found.is_none()),
            Err(VaultUnavailable(reason)) => assert!(!reason.is_empty()),
        }
    }

    #[test]
    fn store_key_hex_round_trip() {
        let k = DbKey::generate().unwrap();
        let hex = k.to_hex();
        assert_eq!(hex.len(), 64);
        assert_eq!(DbKey::from_hex(&hex).unwrap().to_hex().as_str(), hex.as_str());
        assert!(DbKey::from_hex("zz").is_none());
        assert!(DbKey::from_hex(&"g".repeat(64)).is_none());
        assert_ne!(DbKey::generate().unwrap().to_hex().as_str(), hex.as_str());
    }

    #[test]
    fn store_key_goes_to_keyring_when_available() {
        let dir = tempfile::tempdir().unwrap();
        let vault = FakeVault::empty();
        let r = resolve_key(KeySource::Auto, &dir.path().join("db"), &dir.path().join("k"), &vault).unwrap();
        assert_eq!(r.storage, KeyStorage::Keyring);
        assert!(!dir.path().join("k").exists());
        let again = resolve_key(KeySource::Auto, &dir.path().join("db"), &dir.path().join("k"), &vault).unwrap();
        assert_eq!(again.secret.pragma_value().as_str(), r.secret.pragma_value().as_str());
    }

    #[test]
    fn store_key_falls_back_to_private_file_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("config").join("store.key");
        let vault = FakeVault::unavailable();
        let r = resolve_key(KeySource::Auto, &dir.path().join("db"), &key_file, &vault).unwrap();
        match &r.storage {
            KeyStorage::KeyringUnavailable { reason, key_file: f } => {
                assert!(reason.contains("secret service"));
                assert_eq!(f, &key_file);
            }
            other => panic!("expected KeyringUnavailable, got {other:?}"),
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = resolve_key(KeySource::Auto, &dir.path().join("db"), &key_file, &vault).unwrap();
        assert_eq!(again.secret.pragma_value().as_str(), r.secret.pragma_value().as_str());
    }

    #[test]
    fn store_key_never_made_for_an_existing_database() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        std::fs::write(&db, b"existing").unwrap();
        for vault in [FakeVault::unavailable(), FakeVault::empty()] {
            let err = resolve_key(KeySource::Auto, &db, &dir.path().join("k"), &vault).err().unwrap();
            assert!(matches!(err, StoreError::MissingKey { .. }), "{err}");
            assert!(!dir.path().join("k").exists());
            assert!(vault.0.borrow().as_ref().map(|v| v.is_none()).unwrap_or(true));
        }
    }
}
