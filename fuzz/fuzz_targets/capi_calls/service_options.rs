//! How the input opens a service store, and the options struct it passes
//! (`snp_service_options`, filled by `snp_service_options_init` first).

use std::mem::size_of;
use std::ptr;

use capi::options::{
    SNP_DURABILITY_BATCH, SNP_DURABILITY_NONE, SNP_DURABILITY_SYNC, SNP_LEVEL_FILE,
    SNP_LEVEL_MEMORY,
};
use capi::service_options::{
    snp_service_options, snp_service_options_init, SNP_OVERFLOW_DROP_OLDEST,
    SNP_OVERFLOW_REJECT_NEW,
};
use capi::uuid::snp_uuid;

use crate::check::{self, Guarded};
use crate::events::Uid;
use crate::input::Input;
use crate::{Dir, State, StructSize};

const SERVICE_A: Uid = [0xa; 16];
const SERVICE_B: Uid = [0xb; 16];
pub const NIL: Uid = [0; 16];
/// What an output handle holds until a call writes it.
/// How a service store is opened.
#[derive(Clone, Copy, Debug)]
pub struct ServiceSpec {
    pub level: i32,
    dir: Dir,
    uid: Uid,
    file_capacity: u64,
    memory_capacity: u64,
    durability: i32,
    batch_max_ops: u32,
    pub overflow: i32,
    size: StructSize,
    callback: bool,
    pub null_out: bool,
}

impl ServiceSpec {
    pub(crate) fn read(inp: &mut Input) -> ServiceSpec {
        use {SNP_LEVEL_FILE as FILE, SNP_LEVEL_MEMORY as MEMORY};
        let level = inp.pick(&[FILE, MEMORY, FILE, MEMORY, FILE, MEMORY, 0, 3]);
        let dir = Dir::read(inp);
        let uid = match inp.byte() % 8 {
            0..=3 => SERVICE_A,
            4 | 5 => SERVICE_B,
            6 => NIL,
            _ => inp.array(),
        };
        let file_capacity = inp.pick(&[8192, 8192, 12288, 16384, 1, 0, 1 << 33, 9000]);
        let memory_capacity = inp.pick(&[4096, 4096, 6000, 16384, 1, 0, 1 << 33, 5000]);
        let d = inp.byte();
        let durability = [
            SNP_DURABILITY_NONE,
            SNP_DURABILITY_NONE,
            SNP_DURABILITY_NONE,
            SNP_DURABILITY_BATCH,
            SNP_DURABILITY_BATCH,
            SNP_DURABILITY_SYNC,
            SNP_DURABILITY_SYNC,
            9,
        ][usize::from(d % 8)];
        let overflow = inp.pick(&[
            SNP_OVERFLOW_DROP_OLDEST,
            SNP_OVERFLOW_DROP_OLDEST,
            SNP_OVERFLOW_REJECT_NEW,
            7,
        ]);
        let size = StructSize::read(inp);
        let flags = inp.byte();
        ServiceSpec {
            level,
            dir,
            uid,
            file_capacity,
            memory_capacity,
            durability,
            batch_max_ops: u32::from(d / 8),
            overflow,
            size,
            callback: flags & 1 == 0,
            null_out: flags % 16 == 15,
        }
    }

    /// Whether the options are valid (the header, docs/BEHAVIOUR.md 3.1; a
    /// memory store has no use for the level-2 capacity).
    pub(crate) fn valid(&self) -> bool {
        let level_ok = match self.level {
            SNP_LEVEL_MEMORY => true,
            SNP_LEVEL_FILE => {
                self.dir.accepted() && self.uid != NIL && self.file_capacity <= 1 << 32
            }
            _ => false,
        };
        level_ok
            && self.size.accepted()
            && (0..=2).contains(&self.durability)
            && (0..=1).contains(&self.overflow)
            && self.memory_capacity <= 1 << 32
            && !self.null_out
    }

    /// The level a successful open starts at (section 5.1: a directory
    /// that cannot hold the journal means level 1).
    pub(crate) fn level_at_open(&self) -> i32 {
        if self.level == SNP_LEVEL_FILE && self.dir.usable() {
            2
        } else {
            1
        }
    }

    /// The capacity in effect at `level` (section 3.1).
    pub(crate) fn capacity(&self, level: i32) -> u64 {
        let (v, default, min) = if level == 2 {
            (self.file_capacity, 1 << 20, 8192)
        } else {
            (self.memory_capacity, 16 << 10, 4096)
        };
        if v == 0 {
            default
        } else {
            v.max(min)
        }
    }

    pub(crate) fn same_file(&self, other: &ServiceSpec) -> bool {
        self.level_at_open() == 2 && other.level_at_open() == 2 && self.uid == other.uid
    }
}

impl State {
    pub(crate) fn service_options(&self, spec: &ServiceSpec) -> Guarded<snp_service_options> {
        let mut buf = Guarded::<snp_service_options>::new();
        // SAFETY: NULL is ignored; the buffer is writable.
        unsafe {
            snp_service_options_init(ptr::null_mut());
            snp_service_options_init(buf.ptr());
        }
        let mut o = buf.get();
        assert_eq!(o.struct_size as usize, size_of::<snp_service_options>());
        assert_eq!(
            (o.level, o.durability),
            (SNP_LEVEL_FILE, SNP_DURABILITY_SYNC)
        );
        assert_eq!((o.overflow, o.file_capacity), (SNP_OVERFLOW_DROP_OLDEST, 0));
        o.struct_size = spec.size.value(
            size_of::<snp_service_options>(),
            std::mem::offset_of!(snp_service_options, open_policy),
        );
        o.level = spec.level;
        o.directory = self.paths.get(spec.dir);
        o.service_uid = snp_uuid { bytes: spec.uid };
        o.file_capacity = spec.file_capacity;
        o.memory_capacity = spec.memory_capacity;
        o.durability = spec.durability;
        o.batch_max_ops = spec.batch_max_ops;
        o.overflow = spec.overflow;
        if spec.callback {
            o.on_failure = Some(check::on_failure);
            o.user_data = self.reports_ptr();
        }
        buf.set(o);
        buf
    }
}
