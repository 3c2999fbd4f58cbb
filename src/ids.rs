//! Opaque, prefixed identifiers.
//!
//! Ids are a type prefix and a UUIDv7 in lowercase hex, so they sort by
//! creation time, which gives list pages a stable, newest-first order.

/// The prefix of sandbox ids.
pub const SANDBOX_PREFIX: &str = "sbx_";

/// A new sandbox id: `sbx_` and 32 lowercase hex digits.
pub fn new_sandbox_id() -> String {
    format!("{SANDBOX_PREFIX}{}", uuid::Uuid::now_v7().simple())
}

/// The prefix of volume ids.
pub const VOLUME_PREFIX: &str = "vol_";

/// A new volume id: `vol_` and 32 lowercase hex digits.
pub fn new_volume_id() -> String {
    format!("{VOLUME_PREFIX}{}", uuid::Uuid::now_v7().simple())
}

/// A new template id: `tpl_` and 32 lowercase hex digits.
pub fn new_template_id() -> String {
    format!("tpl_{}", uuid::Uuid::now_v7().simple())
}

/// Whether `id` has the shape of a volume id.
pub fn is_volume_id(id: &str) -> bool {
    id.strip_prefix(VOLUME_PREFIX).is_some_and(|hex| {
        hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// Whether `id` has the shape of a sandbox id. Used to answer a malformed id
/// with INVALID_ARGUMENT rather than NOT_FOUND.
pub fn is_sandbox_id(id: &str) -> bool {
    id.strip_prefix(SANDBOX_PREFIX).is_some_and(|hex| {
        hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// Bytes in lowercase hex, the way ids and sha256 digests are shown.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of `bytes` in lowercase hex.
pub fn sha256_hex(bytes: impl AsRef<[u8]>) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(bytes))
}

/// The SHA-256 of everything `reader` yields, in lowercase hex, read a
/// buffer at a time (a binary of a hundred megabytes is never held whole).
pub fn sha256_hex_of_reader(mut reader: impl std::io::Read) -> std::io::Result<String> {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut reader, &mut hasher)?;
    Ok(hex(&hasher.finalize()))
}
