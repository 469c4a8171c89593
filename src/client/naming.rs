//! The client file's name and owner uid, from the server address and the
//! client key (docs/FORMAT.md, "Client file").

use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::error::{Error, Result};

/// Where a client's file lives:
/// `softnet.client.persistence_<server>_<client-key>.scp`, where `:` in the
/// server address (IPv6) becomes `-`. Characters that cannot be part of a
/// portable file name are an error, not silently changed.
pub(crate) fn client_file_path(
    dir: &Path,
    server_address: &str,
    client_key: &str,
) -> Result<PathBuf> {
    let server = server_address.replace(':', "-");
    check_name_part("server address", server_address, &server)?;
    check_name_part("client key", client_key, client_key)?;
    let name = format!("softnet.client.persistence_{server}_{client_key}.scp");
    if name.len() > MAX_FILE_NAME_LEN {
        return Err(Error::invalid(format!(
            "server address and client key make a file name of {} bytes; with the suffixes \
             the library adds to temporary and set-aside copies, at most {MAX_FILE_NAME_LEN} \
             fit in the 255 bytes a file name may have (shorten the key)",
            name.len()
        )));
    }
    Ok(dir.join(name))
}

/// Longest client file name: 255 bytes (the usual file-system limit) minus
/// the longest suffix added to it (`.tmp-<pid>-<n>` while a file is being
/// written, `.corrupt-<unix-seconds>-<n>` when one is set aside).
const MAX_FILE_NAME_LEN: usize = 255 - 40;

fn check_name_part(what: &str, given: &str, part: &str) -> Result<()> {
    if part.is_empty() {
        return Err(Error::invalid(format!("the {what} is empty")));
    }
    if part.len() > 200 {
        return Err(Error::invalid(format!(
            "the {what} is {} bytes long; at most 200 fit in a file name",
            part.len()
        )));
    }
    if let Some(bad) = part
        .chars()
        .find(|&c| !c.is_ascii_graphic() || "/\\:*?\"<>|".contains(c))
    {
        return Err(Error::invalid(format!(
            "the {what} {given:?} contains {bad:?}, which cannot be part of the client \
             persistence file name (allowed: printable ASCII except / \\ : * ? \" < > | and \
             space; ':' is allowed in a server address and becomes '-')"
        )));
    }
    Ok(())
}

/// The owner uid written in a client file's header: derived from the server
/// address and client key, so two pairs that map to the same file name (the
/// `_` separator is ambiguous) are told apart.
pub(crate) fn owner_uid(server_address: &str, client_key: &str) -> Uuid {
    let part = |salt: &str, a: &str, b: &str| {
        let mut h = crc32fast::Hasher::new();
        h.update(salt.as_bytes());
        h.update(a.as_bytes());
        h.update(&[0]);
        h.update(b.as_bytes());
        u128::from(h.finalize())
    };
    let (s, k) = (server_address, client_key);
    Uuid::from_u128(
        part("a", s, k) << 96 | part("b", s, k) << 64 | part("c", k, s) << 32 | part("d", k, s),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        let dir = Path::new("/d");
        assert_eq!(
            client_file_path(dir, "broker.example.com", "K1").unwrap(),
            Path::new("/d/softnet.client.persistence_broker.example.com_K1.scp")
        );
        assert_eq!(
            client_file_path(dir, "fe80::1", "key").unwrap(),
            Path::new("/d/softnet.client.persistence_fe80--1_key.scp")
        );
        for (server, key) in [
            ("a/b", "k"),
            ("a", "k/"),
            ("", "k"),
            ("a", ""),
            ("a b", "k"),
            ("a", "k:1"),
        ] {
            let err = client_file_path(dir, server, key).unwrap_err();
            assert!(
                matches!(err, Error::InvalidArgument(_)),
                "{server:?} {key:?}"
            );
        }
    }

    #[test]
    fn owner_depends_on_both_parts() {
        assert_ne!(owner_uid("a_b", "c"), owner_uid("a", "b_c"));
        assert_eq!(owner_uid("a", "b"), owner_uid("a", "b"));
    }
}
