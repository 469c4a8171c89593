//! How the input opens a client store, and the options struct it passes
//! (`snp_client_options`, filled by `snp_client_options_init` first).

use std::ffi::CString;
use std::mem::size_of;
use std::ptr;

use capi::client_options::{snp_client_options, snp_client_options_init};
use capi::options::{
    SNP_DURABILITY_BATCH, SNP_DURABILITY_NONE, SNP_DURABILITY_SYNC, SNP_LEVEL_FILE,
    SNP_LEVEL_MEMORY,
};

use crate::check::{self, Guarded};
use crate::input::Input;
use crate::{Dir, State, StructSize};

const SERVERS: [&str; 6] = [
    "broker:5000",
    "broker:5000",
    "fe80::1",
    // The name "broker:5000" had before names were encoded.
    "broker-5000",
    "bad/addr",
    "",
];
const KEYS: [&str; 6] = ["client1", "client1", "k2", "bad key", "a:b", ""];

/// How a client store is opened.
#[derive(Clone, Debug)]
pub struct ClientSpec {
    pub level: i32,
    dir: Dir,
    pub server: Option<Vec<u8>>,
    pub key: Option<Vec<u8>>,
    durability: i32,
    batch_max_ops: u32,
    size: StructSize,
    callback: bool,
    pub null_out: bool,
}

/// A server address or client key: from `list`, NULL, raw input, or
/// `fill` repeated to the lengths in `long`.
fn text(inp: &mut Input, list: &[&str; 6], fill: u8, long: [usize; 2]) -> Option<Vec<u8>> {
    let b = inp.byte();
    match b % 10 {
        6 => None,
        7 => {
            let n = inp.byte() % 48;
            let raw = inp.bytes(usize::from(n));
            Some(raw.into_iter().filter(|&c| c != 0).collect())
        }
        8 => Some(vec![fill; long[0]]),
        9 => Some(vec![fill; long[1]]),
        i => Some(list[usize::from(i)].into()),
    }
}

/// Whether a server address and client key name a client file (section
/// 4.1): printable ASCII without `/ \ : * ? " < > |` or space (`:` in the
/// address only), at most 200 bytes each once encoded (a byte other than
/// `A-Z a-z 0-9 . -` takes 3), the file name at most 215 bytes.
fn file_ok(server: &[u8], key: &[u8]) -> bool {
    let encoded = |p: &[u8], colon: bool| {
        let ok = !p.is_empty()
            && p.iter().all(|&c| {
                c.is_ascii_graphic() && !b"/\\*?\"<>|".contains(&c) && (colon || c != b':')
            });
        let kept = |c: &&u8| c.is_ascii_alphanumeric() || **c == b'.' || **c == b'-';
        let len = p.iter().filter(kept).count() + 3 * p.iter().filter(|c| !kept(c)).count();
        (ok && len <= 200).then_some(len)
    };
    match (encoded(server, true), encoded(key, false)) {
        (Some(s), Some(k)) => "softnet.client.persistence_".len() + s + 1 + k + ".scp".len() <= 215,
        _ => false,
    }
}

/// A client file: who owns it (server address, client key).
pub type Owner = (Vec<u8>, Vec<u8>);

impl ClientSpec {
    pub(crate) fn read(inp: &mut Input) -> ClientSpec {
        use {SNP_LEVEL_FILE as FILE, SNP_LEVEL_MEMORY as MEMORY};
        let level = inp.pick(&[FILE, MEMORY, FILE, MEMORY, FILE, MEMORY, 0, 3]);
        let dir = Dir::read(inp);
        // 13 ("broker%3A5000") + 170 bytes fit in a file name, + 171 not.
        let server = text(inp, &SERVERS, b's', [170, 201]);
        let key = text(inp, &KEYS, b'k', [170, 171]);
        let d = inp.byte();
        let durability = [
            SNP_DURABILITY_NONE,
            SNP_DURABILITY_NONE,
            SNP_DURABILITY_NONE,
            SNP_DURABILITY_BATCH,
            SNP_DURABILITY_SYNC,
            SNP_DURABILITY_SYNC,
            -1,
            SNP_DURABILITY_NONE,
        ][usize::from(d % 8)];
        let size = StructSize::read(inp);
        let flags = inp.byte();
        ClientSpec {
            level,
            dir,
            server,
            key,
            durability,
            batch_max_ops: u32::from(d / 8),
            size,
            callback: flags & 1 == 0,
            null_out: flags % 16 == 15,
        }
    }

    pub(crate) fn names_file(&self) -> bool {
        match (&self.server, &self.key) {
            (Some(s), Some(k)) => file_ok(s, k),
            _ => false,
        }
    }

    pub(crate) fn valid(&self) -> bool {
        let level_ok = match self.level {
            SNP_LEVEL_MEMORY => true,
            SNP_LEVEL_FILE => self.dir.accepted() && self.names_file(),
            _ => false,
        };
        level_ok && self.size.accepted() && (0..=2).contains(&self.durability) && !self.null_out
    }

    /// The file a successful open holds, if it opens at level 2: one per
    /// (server address, client key) pair.
    pub(crate) fn file_at_open(&self) -> Option<Owner> {
        let level_2 = self.level == SNP_LEVEL_FILE && self.dir.usable() && self.names_file();
        level_2.then(|| {
            (
                self.server.clone().unwrap_or_default(),
                self.key.clone().unwrap_or_default(),
            )
        })
    }
}

impl State {
    pub(crate) fn client_options(
        &self,
        spec: &ClientSpec,
        strings: &[Option<CString>; 2],
    ) -> Guarded<snp_client_options> {
        let mut buf = Guarded::<snp_client_options>::new();
        // SAFETY: NULL is ignored; the buffer is writable.
        unsafe {
            snp_client_options_init(ptr::null_mut());
            snp_client_options_init(buf.ptr());
        }
        let mut o = buf.get();
        assert_eq!(o.struct_size as usize, size_of::<snp_client_options>());
        assert_eq!(
            (o.level, o.durability),
            (SNP_LEVEL_MEMORY, SNP_DURABILITY_SYNC)
        );
        let c_str = |s: &Option<CString>| s.as_ref().map_or(ptr::null(), |s| s.as_ptr());
        o.struct_size = spec.size.value(
            size_of::<snp_client_options>(),
            std::mem::offset_of!(snp_client_options, open_policy),
        );
        o.level = spec.level;
        o.directory = self.paths.get(spec.dir);
        o.server_address = c_str(&strings[0]);
        o.client_key = c_str(&strings[1]);
        o.durability = spec.durability;
        o.batch_max_ops = spec.batch_max_ops;
        if spec.callback {
            o.on_failure = Some(check::on_failure);
            o.user_data = self.reports_ptr();
        }
        buf.set(o);
        buf
    }
}
