//! The rules that names, labels, environment variables and paths must follow.
//!
//! Each check returns an INVALID_ARGUMENT error that names the field and the
//! rule, so that a caller can fix the request without reading the docs.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// The most labels on one sandbox.
pub const MAX_LABELS: usize = 64;
/// The most environment variables on one sandbox.
pub const MAX_ENV_VARS: usize = 256;
/// The most bytes of environment keys and values together.
pub const MAX_ENV_BYTES: usize = 128 * 1024;
/// The most bytes of metadata, encoded as JSON.
pub const MAX_METADATA_BYTES: usize = 64 * 1024;
/// The most volumes on one sandbox.
pub const MAX_VOLUMES: usize = 16;
/// The longest path accepted.
pub const MAX_PATH_BYTES: usize = 4096;
/// The longest idempotency key.
pub const MAX_REQUEST_ID_BYTES: usize = 128;
/// The longest image reference.
pub const MAX_IMAGE_BYTES: usize = 1024;

/// A sandbox name: 1 to 63 of `[a-z0-9-]`, starting with a letter, not ending
/// with `-` (a DNS label, so names can become host names).
pub fn check_name(field: &str, name: &str) -> Result<()> {
    const RULE: &str = "a name is 1 to 63 characters of lowercase letters, digits and '-', \
                        starting with a letter and not ending with '-'";
    if name.is_empty() {
        return Err(Error::invalid_argument(
            field,
            "must not be empty; leave it unset for an unnamed sandbox",
        ));
    }
    let valid = name.len() <= 63
        && name.as_bytes()[0].is_ascii_lowercase()
        && !name.ends_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(Error::invalid_argument(
            field,
            format!("{:?} is not a valid name: {RULE}", shorten(name)),
        ))
    }
}

/// Labels, by the Kubernetes rules: keys are an optional DNS-subdomain prefix
/// and `/`, then a 1-to-63-character name of `[A-Za-z0-9-_.]` that starts and
/// ends alphanumeric; values are empty or the same as a key's name part.
pub fn check_labels(field: &str, labels: &BTreeMap<String, String>) -> Result<()> {
    if labels.len() > MAX_LABELS {
        return Err(Error::invalid_argument(
            field,
            format!(
                "has {} labels; at most {MAX_LABELS} are allowed",
                labels.len()
            ),
        ));
    }
    for (key, value) in labels {
        check_label_key(field, key)?;
        check_label_value(&format!("{field}[{:?}]", shorten(key)), value)?;
    }
    Ok(())
}

/// One label key.
pub fn check_label_key(field: &str, key: &str) -> Result<()> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(is_dns_subdomain);
    if prefix_ok && is_label_name(name) {
        return Ok(());
    }
    Err(Error::invalid_argument(
        field,
        format!(
            "label key {:?} is invalid: a key is an optional DNS-subdomain prefix and '/', then 1 to 63 \
             characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
            shorten(key)
        ),
    ))
}

/// One label value.
pub fn check_label_value(field: &str, value: &str) -> Result<()> {
    if value.is_empty() || is_label_name(value) {
        return Ok(());
    }
    Err(Error::invalid_argument(
        field,
        format!(
            "label value {:?} is invalid: a value is empty or 1 to 63 characters of letters, digits, \
             '-', '_' and '.', starting and ending with a letter or digit",
            shorten(value)
        ),
    ))
}

fn is_label_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|part| {
            let bytes = part.as_bytes();
            !bytes.is_empty()
                && bytes.len() <= 63
                && bytes[0].is_ascii_alphanumeric()
                && bytes[bytes.len() - 1].is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        })
}

/// Environment variables: POSIX-style names, values without NUL, bounded.
pub fn check_env(field: &str, env: &BTreeMap<String, String>) -> Result<()> {
    if env.len() > MAX_ENV_VARS {
        return Err(Error::invalid_argument(
            field,
            format!(
                "has {} variables; at most {MAX_ENV_VARS} are allowed",
                env.len()
            ),
        ));
    }
    let mut total = 0;
    for (key, value) in env {
        let key_ok = key.len() <= 256
            && key
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !key_ok {
            return Err(Error::invalid_argument(
                field,
                format!(
                    "variable name {:?} is invalid: names match [A-Za-z_][A-Za-z0-9_]* and are at most 256 bytes",
                    shorten(key)
                ),
            ));
        }
        if value.contains('\0') {
            return Err(Error::invalid_argument(
                &format!("{field}[{key:?}]"),
                "a value must not contain a NUL byte",
            ));
        }
        total += key.len() + value.len();
    }
    if total > MAX_ENV_BYTES {
        return Err(Error::invalid_argument(
            field,
            format!("holds {total} bytes; at most {MAX_ENV_BYTES} are allowed"),
        ));
    }
    Ok(())
}

/// An absolute path inside a sandbox: starts with `/`, has no `.` or `..`
/// parts and no NUL byte, and is at most [`MAX_PATH_BYTES`] long.
pub fn check_absolute_path(field: &str, path: &str) -> Result<()> {
    if !path.starts_with('/') {
        return Err(Error::invalid_argument(
            field,
            format!("{:?} must be an absolute path", shorten(path)),
        ));
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(Error::invalid_argument(
            field,
            format!(
                "is {} bytes; at most {MAX_PATH_BYTES} are allowed",
                path.len()
            ),
        ));
    }
    if path.contains('\0') {
        return Err(Error::invalid_argument(
            field,
            "must not contain a NUL byte",
        ));
    }
    if path.split('/').any(|part| part == "." || part == "..") {
        return Err(Error::invalid_argument(
            field,
            format!("{:?} must not contain '.' or '..' parts", shorten(path)),
        ));
    }
    Ok(())
}

/// An idempotency key: 1 to [`MAX_REQUEST_ID_BYTES`] printable ASCII characters.
pub fn check_request_id(field: &str, request_id: &str) -> Result<()> {
    let valid = request_id.len() <= MAX_REQUEST_ID_BYTES
        && request_id.bytes().all(|b| b.is_ascii_graphic());
    if valid {
        Ok(())
    } else {
        Err(Error::invalid_argument(
            field,
            format!(
                "must be at most {MAX_REQUEST_ID_BYTES} printable ASCII characters without spaces"
            ),
        ))
    }
}

/// A user to run as: `USER` or `USER:GROUP`, each a name of letters, digits,
/// `_`, `.` and `-` (not starting with `-`) or a number, at most 64 bytes
/// each. Whether it exists is the sandbox's to say.
pub fn check_user(field: &str, user: &str) -> Result<()> {
    let parts: Vec<&str> = user.split(':').collect();
    let valid = |part: &&str| {
        !part.is_empty()
            && part.len() <= 64
            && !part.starts_with('-')
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    };
    if parts.len() > 2 || !parts.iter().all(valid) {
        return Err(Error::invalid_argument(
            field,
            format!(
                "{:?} is not a user: give a name or uid, optionally with \":GROUP\" (such as \
                 \"alice\", \"1000\" or \"1000:1000\")",
                shorten(user)
            ),
        ));
    }
    Ok(())
}

/// A container runtime's name: letters, digits, `.`, `_` and `-`, at most 64
/// bytes. Whether the provider offers it is the provider's to say.
pub fn check_runtime(field: &str, runtime: &str) -> Result<()> {
    let valid = runtime.len() <= 64
        && runtime
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !valid {
        return Err(Error::invalid_argument(
            field,
            format!(
                "{:?} is not a runtime name (such as \"runsc\"): letters, digits, '.', '_' \
                 and '-', at most 64 bytes",
                shorten(runtime)
            ),
        ));
    }
    Ok(())
}

/// An image reference: non-empty, at most [`MAX_IMAGE_BYTES`], printable ASCII.
pub fn check_image(field: &str, image: &str) -> Result<()> {
    let valid = image.len() <= MAX_IMAGE_BYTES && image.bytes().all(|b| b.is_ascii_graphic());
    if valid {
        Ok(())
    } else {
        Err(Error::invalid_argument(
            field,
            format!("{:?} is not an image reference", shorten(image)),
        ))
    }
}

/// A volume name: 1 to 63 of `[a-zA-Z0-9_.-]`, starting alphanumeric.
pub fn check_volume_name(field: &str, name: &str) -> Result<()> {
    check_short_name(field, name, "volume", "[a-zA-Z0-9_.-]", |b| {
        b.is_ascii_alphanumeric()
    })
}

/// A template name: 1 to 63 of `[a-z0-9._-]`, starting alphanumeric.
pub fn check_template_name(field: &str, name: &str) -> Result<()> {
    check_short_name(field, name, "template", "[a-z0-9._-]", |b| {
        b.is_ascii_lowercase() || b.is_ascii_digit()
    })
}

/// A name of 1 to 63 bytes that starts with an alphanumeric byte accepted
/// by `letter` and goes on with such bytes or `_`, `.` and `-`; the error
/// names it a `what` name made of `charset`.
fn check_short_name(
    field: &str,
    name: &str,
    what: &str,
    charset: &str,
    letter: impl Fn(u8) -> bool,
) -> Result<()> {
    let bytes = name.as_bytes();
    let valid = !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && letter(bytes[0])
        && bytes
            .iter()
            .all(|&b| letter(b) || matches!(b, b'_' | b'.' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(Error::invalid_argument(
            field,
            format!(
                "{:?} is not a {what} name: 1 to 63 characters of {charset}, starting with a letter or digit",
                shorten(name)
            ),
        ))
    }
}

/// A template reference: "NAME" or "NAME@VERSION" with a positive version.
pub fn check_template_reference(field: &str, reference: &str) -> Result<()> {
    let Some((name, _)) = parse_template_reference(reference) else {
        return Err(Error::invalid_argument(
            field,
            format!(
                "{:?} is not a template reference: NAME, or NAME@VERSION with a version from 1",
                shorten(reference)
            ),
        ));
    };
    check_template_name(field, name)
}

/// Splits "NAME" or "NAME@VERSION"; `None` for the latest version.
/// `None` overall when the version is not a positive number.
pub fn parse_template_reference(reference: &str) -> Option<(&str, Option<i64>)> {
    match reference.split_once('@') {
        None => Some((reference, None)),
        Some((name, version)) => {
            let version: i64 = version.parse().ok()?;
            (version > 0).then_some((name, Some(version)))
        }
    }
}

/// Cuts a long user-supplied value for an error message.
pub(crate) fn shorten(value: &str) -> String {
    const MAX_CHARS: usize = 80;
    if value.chars().count() <= MAX_CHARS {
        value.to_owned()
    } else {
        let head: String = value.chars().take(MAX_CHARS).collect();
        format!("{head}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_references_name_a_version_or_the_latest() {
        assert_eq!(
            parse_template_reference("tf-1.5.5"),
            Some(("tf-1.5.5", None))
        );
        assert_eq!(
            parse_template_reference("tf-1.5.5@2"),
            Some(("tf-1.5.5", Some(2)))
        );
        assert_eq!(parse_template_reference("tf@0"), None);
        assert_eq!(parse_template_reference("tf@x"), None);
    }

    #[test]
    fn names() {
        for good in ["a", "web-1", "x".repeat(63).as_str()] {
            assert!(check_name("name", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "1abc",
            "Abc",
            "ab-",
            "a_b",
            "x".repeat(64).as_str(),
            "é",
        ] {
            assert!(check_name("name", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn label_keys_and_values() {
        for good in ["app", "a.b-c_d", "example.com/app", "A1"] {
            assert!(check_label_key("labels", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "bad key",
            "Example.com/app",
            "/app",
            "a/",
            "x".repeat(64).as_str(),
        ] {
            assert!(check_label_key("labels", bad).is_err(), "{bad}");
        }
        assert!(check_label_value("v", "").is_ok());
        assert!(check_label_value("v", "has space").is_err());
    }

    #[test]
    fn env_names() {
        let env = |k: &str| BTreeMap::from([(k.to_owned(), "v".to_owned())]);
        assert!(check_env("env", &env("PATH_2")).is_ok());
        assert!(check_env("env", &env("_x")).is_ok());
        assert!(check_env("env", &env("2X")).is_err());
        assert!(check_env("env", &env("A=B")).is_err());
        assert!(check_env("env", &env("")).is_err());
    }

    #[test]
    fn paths() {
        assert!(check_absolute_path("workdir", "/workspace/src").is_ok());
        assert!(check_absolute_path("workdir", "relative").is_err());
        assert!(check_absolute_path("workdir", "/a/../b").is_err());
        assert!(check_absolute_path("workdir", "/a/./b").is_err());
    }

    #[test]
    fn error_names_the_field() {
        let err = check_name("name", "Bad").unwrap_err();
        assert!(err.message().starts_with("name: "), "{}", err.message());
    }
}
