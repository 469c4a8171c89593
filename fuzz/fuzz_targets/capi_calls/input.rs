//! Reading the fuzzer's bytes. One byte chooses each value from a list in
//! which most entries are valid and a few are not; an exhausted input reads
//! as zeros, and zero always chooses the first (valid, common) entry, so a
//! short input is still a meaningful call sequence.

use capi::event::{
    SNP_EVENT_PRIVATE, SNP_EVENT_QUEUEING, SNP_EVENT_REPLACING, SNP_EVENT_REPLACING_NULL,
    SNP_MAX_ARGS_LEN, SNP_MAX_NAME_LEN,
};

/// The rest of the input.
pub struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input(data)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The next byte (0 once the input is used up).
    pub fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    /// Up to `n` bytes (fewer at the end of the input).
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head.to_vec()
    }

    pub fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0; N];
        for b in &mut a {
            *b = self.byte();
        }
        a
    }

    /// One of `from`, chosen by the next byte.
    pub fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[usize::from(self.byte()) % from.len()]
    }

    /// True for one byte value in `one_in` (false for 0).
    pub fn flag(&mut self, one_in: u8) -> bool {
        self.byte() % one_in == one_in - 1
    }
}

/// A `(pointer, length)` argument as a C caller may pass it.
#[derive(Clone, Debug)]
pub enum Arg {
    /// A real buffer of exactly its length.
    Bytes(Vec<u8>),
    /// NULL with this length.
    Null(usize),
    /// This length (over the limit) with a 4-byte buffer: the C ABI checks
    /// lengths before it reads, so the buffer must never be read.
    Over(usize),
}

static SHORT: [u8; 4] = *b"shrt";

impl Arg {
    pub fn raw(&self) -> (*const u8, usize) {
        match self {
            Arg::Bytes(b) => (b.as_ptr(), b.len()),
            Arg::Null(n) => (std::ptr::null(), *n),
            Arg::Over(n) => (SHORT.as_ptr(), *n),
        }
    }

    /// The bytes, if this is a readable buffer of `min..=max` bytes.
    pub fn within(&self, min: usize, max: usize) -> Option<&[u8]> {
        match self {
            Arg::Bytes(b) if (min..=max).contains(&b.len()) => Some(b),
            Arg::Null(0) if min == 0 => Some(&[]),
            _ => None,
        }
    }
}

/// Valid names (docs/BEHAVIOUR.md section 2), repeated so that names recur.
const NAMES: [&str; 8] = [
    "Sensor",
    "Door open",
    "A",
    "Temp.1",
    "Zx_ .$*+()#@%&=':^[]-/!",
    "Sensor",
    "Door open",
    "Alarm",
];

/// Names that break one rule each.
const BAD_NAMES: [&[u8]; 8] = [
    b"",
    b"1abc",
    b"_x",
    b"Door  open",
    b"Door ",
    b"T\xc3\xa9",
    b"\xff\xfe",
    b"a\0b",
];

/// An event or subscription name.
pub fn name(inp: &mut Input) -> Arg {
    let b = inp.byte();
    let i = usize::from(b / 16);
    match b % 16 {
        0..=8 => Arg::Bytes(NAMES[i % NAMES.len()].into()),
        9 => {
            let mut long = vec![b'x'; SNP_MAX_NAME_LEN + i % 2];
            long[0] = b'N';
            Arg::Bytes(long)
        }
        10 | 11 => {
            let n = inp.byte() % 24;
            Arg::Bytes(inp.bytes(usize::from(n)))
        }
        12 | 13 => Arg::Bytes(BAD_NAMES[i % BAD_NAMES.len()].to_vec()),
        14 => Arg::Null([0, 5, 300][i % 3]),
        _ => Arg::Over([SNP_MAX_NAME_LEN + 1, 4096, usize::MAX][i % 3]),
    }
}

/// An event's arguments.
pub fn args(inp: &mut Input) -> Arg {
    let b = inp.byte();
    let fill = b / 8;
    match b % 8 {
        0 => Arg::Bytes(Vec::new()),
        1 | 2 => Arg::Bytes(vec![fill; [1, 20, 500, 1500][usize::from(fill) % 4]]),
        3 => Arg::Bytes(vec![fill; SNP_MAX_ARGS_LEN]),
        4 => {
            let n = inp.byte();
            Arg::Bytes(inp.bytes(usize::from(n)))
        }
        5 => Arg::Null(0),
        6 => Arg::Null(16),
        _ => Arg::Over(if fill.is_multiple_of(2) {
            SNP_MAX_ARGS_LEN + 1
        } else {
            usize::MAX
        }),
    }
}

/// An event kind (a few invalid ones, 258 among them: 2 as a byte).
pub fn kind(inp: &mut Input) -> i32 {
    let b = inp.byte();
    match b % 8 {
        0 | 4 => SNP_EVENT_QUEUEING,
        1 | 5 => SNP_EVENT_REPLACING,
        2 => SNP_EVENT_PRIVATE,
        3 => SNP_EVENT_REPLACING_NULL,
        _ => [0, 3, 6, -1, i32::MAX, i32::MIN, 258, 257][usize::from(b / 8) % 8],
    }
}

/// A client id or an instance id.
pub fn id(inp: &mut Input) -> i64 {
    let b = inp.byte();
    match b % 8 {
        0 => 1,
        1 => 0,
        2 => -1,
        3 => i64::MIN,
        4 => i64::MAX,
        5 => i64::from(b),
        6 => i64::from_le_bytes(inp.array()),
        _ => 42,
    }
}
