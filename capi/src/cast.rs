//! The one place that turns caller pointers into references and copies
//! (the `Castable` idea of rustls-ffi): handles, required and optional
//! pointers, `(pointer, length)` buffers checked against their limits before
//! they are read, NUL-terminated strings, and versioned structs. Every
//! exported function goes through these; its `SAFETY` comments say which
//! of the caller's promises (the header's contract) make the call sound.

use snp::Error;

use crate::status::{snp_status, SNP_OK};

/// A C handle: a Rust value boxed by [`hand_out`], whose pointer the caller
/// keeps and passes back until it frees it.
pub(crate) trait Handle: Sized {
    /// The parameter's name in messages (`service`, `client`).
    const NAME: &'static str;
}

/// Boxes `value` and writes the pointer to `*out`.
///
/// # Safety
/// `out` must be valid for a write of one pointer (`Out::new` checked it is
/// not NULL).
pub(crate) unsafe fn hand_out<H: Handle>(value: H, out: Out<*mut H>) -> Result<snp_status, Error> {
    let handle = Box::into_raw(Box::new(value));
    // SAFETY: forwarded contract: `out` is writable.
    unsafe { out.write(handle) };
    Ok(SNP_OK)
}

/// The value behind a handle, or an invalid-argument error if it is NULL.
///
/// # Safety
/// `ptr` must be NULL or a pointer from [`hand_out`] that was not freed;
/// the reference lives no longer than the exported call using it, during
/// which the handle is not freed (the header's rule for `*_close`).
pub(crate) unsafe fn handle<'a, H: Handle>(ptr: *const H) -> Result<&'a H, Error> {
    // SAFETY: forwarded contract: NULL or a live `Box<H>` allocation, read
    // only through shared references.
    unsafe { ptr.as_ref() }.ok_or_else(|| Error::InvalidArgument(format!("{} is NULL", H::NAME)))
}

/// Takes back a handle to drop it; `None` for NULL.
///
/// # Safety
/// `ptr` must be NULL or a pointer from [`hand_out`] that was not freed,
/// with no call on it in progress; it must not be used afterwards.
pub(crate) unsafe fn free<H: Handle>(ptr: *mut H) -> Option<Box<H>> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: forwarded contract: the `Box<H>` from `hand_out`, taken back
    // once.
    Some(unsafe { Box::from_raw(ptr) })
}

/// A required input value, copied out of the caller's memory at once (no
/// reference to it outlives this call, so it may overlap an output).
///
/// # Safety
/// `ptr` must be NULL or valid for reads as a `T`.
pub(crate) unsafe fn read_arg<T: Copy>(ptr: *const T, name: &str) -> Result<T, Error> {
    if ptr.is_null() {
        return Err(Error::InvalidArgument(format!("{name} is NULL")));
    }
    // SAFETY: non-null, and the caller guarantees a readable `T`.
    Ok(unsafe { ptr.read() })
}

/// A required output pointer, checked for NULL up front but written only
/// with [`Out::write`], once every input has been copied into owned values:
/// no `&mut` to caller memory ever coexists with a borrowed input (the
/// caller may pass overlapping buffers, e.g. a stored event's own name as
/// the name to acknowledge and the same event as the output).
pub(crate) struct Out<T>(std::ptr::NonNull<T>);

impl<T: Copy> Out<T> {
    /// The output pointer `ptr`, or an invalid-argument error naming it.
    pub(crate) fn new(ptr: *mut T, name: &str) -> Result<Out<T>, Error> {
        std::ptr::NonNull::new(ptr)
            .map(Out)
            .ok_or_else(|| Error::InvalidArgument(format!("{name} is NULL")))
    }

    /// An optional output pointer (NULL: the caller does not want it).
    pub(crate) fn optional(ptr: *mut T) -> Option<Out<T>> {
        std::ptr::NonNull::new(ptr).map(Out)
    }

    /// Writes the whole value through the raw pointer (no reference made).
    ///
    /// # Safety
    /// The pointer must be valid for writes of a `T`.
    pub(crate) unsafe fn write(self, value: T) {
        // SAFETY: the caller guarantees a writable `T`; `T` is `Copy`, so
        // nothing is dropped.
        unsafe { self.0.as_ptr().write(value) }
    }
}

/// Checks a caller's length against its limit, before any slice is formed
/// from it: `field` names the buffer (`event->args`; the message names its
/// length, `event->args_len`), `limit` the header's constant
/// (`SNP_MAX_ARGS_LEN`), `min` the least accepted value. Nothing is
/// formatted unless the check fails: it runs on every raise.
pub(crate) fn check_len(
    len: usize,
    min: usize,
    max: usize,
    field: &str,
    limit: &str,
) -> Result<(), Error> {
    if len > max {
        return Err(Error::InvalidArgument(format!(
            "{field}_len is {len}, more than {limit} ({max})"
        )));
    }
    if len < min {
        return Err(Error::InvalidArgument(format!(
            "{field}_len is {len}; it must be {min} to {limit} ({max})"
        )));
    }
    Ok(())
}

/// A `(pointer, length)` byte buffer; NULL is allowed only with length 0.
/// Check `len` against its limit first ([`check_len`]).
///
/// # Safety
/// `ptr` must be valid for reads of `len` bytes when non-null.
pub(crate) unsafe fn bytes<'a>(ptr: *const u8, len: usize, name: &str) -> Result<&'a [u8], Error> {
    if ptr.is_null() {
        return if len == 0 {
            Ok(&[])
        } else {
            Err(Error::InvalidArgument(format!(
                "{name} is NULL but its length is {len}"
            )))
        };
    }
    if len > isize::MAX as usize {
        return Err(Error::InvalidArgument(format!(
            "{name} length {len} is impossible"
        )));
    }
    // SAFETY: non-null, and the caller guarantees `len` readable bytes.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// A NUL-terminated string argument.
///
/// # Safety
/// `ptr` must be NULL or point to a NUL-terminated string.
pub(crate) unsafe fn c_str<'a>(ptr: *const std::ffi::c_char, name: &str) -> Result<&'a str, Error> {
    if ptr.is_null() {
        return Err(Error::InvalidArgument(format!("{name} is NULL")));
    }
    // SAFETY: non-null and NUL-terminated by contract.
    unsafe { std::ffi::CStr::from_ptr(ptr) }
        .to_str()
        .map_err(|_| Error::InvalidArgument(format!("{name} is not valid UTF-8 text")))
}

/// Reads a caller's versioned INPUT struct (options, vtables): its
/// `struct_size` (first field, `u32`) must be at least the size of the
/// struct in this header, `c_type`; a larger size (a newer caller's struct
/// with fields added at the end) is fine, and only the fields we know are
/// read. There is no older layout (ABI version 1), and a shorter struct
/// would cut a field, e.g. half a function pointer, so it is refused; `fix`
/// tells how to set the size (`call snp_service_options_init`).
///
/// # Safety
/// `ptr` must be NULL or valid for reads of its own `struct_size` bytes,
/// which is its first field (`u32`).
pub(crate) unsafe fn versioned<T: Copy>(
    ptr: *const T,
    name: &str,
    c_type: &str,
    fix: &str,
) -> Result<T, Error> {
    if ptr.is_null() {
        return Err(Error::InvalidArgument(format!("{name} is NULL")));
    }
    // SAFETY: every versioned struct starts with `uint32_t struct_size`.
    let size = unsafe { ptr.cast::<u32>().read_unaligned() } as usize;
    let ours = std::mem::size_of::<T>();
    if size < ours {
        return Err(Error::InvalidArgument(format!(
            "{name}->struct_size is {size}, less than sizeof({c_type}) ({ours}); {fix}"
        )));
    }
    // SAFETY: the caller's struct has `size >= size_of::<T>()` readable
    // bytes laid out as `T` (plain `repr(C)` data) followed by fields we do
    // not know, which are not read.
    Ok(unsafe { ptr.read_unaligned() })
}

/// [`versioned`] for an INPUT struct that has grown since it was first
/// published: a caller's struct of at least `oldest` bytes (its size in the
/// first header that had it, which ends at a field boundary: fields are
/// only ever appended) is accepted; if it is shorter than ours, its first
/// `oldest` bytes are read and every later field keeps the default that
/// `_init` sets (`T::default()`).
///
/// # Safety
/// As [`versioned`].
pub(crate) unsafe fn versioned_since<T: Copy + Default>(
    ptr: *const T,
    oldest: usize,
    name: &str,
    c_type: &str,
    fix: &str,
) -> Result<T, Error> {
    if ptr.is_null() {
        return Err(Error::InvalidArgument(format!("{name} is NULL")));
    }
    // SAFETY: every versioned struct starts with `uint32_t struct_size`.
    let size = unsafe { ptr.cast::<u32>().read_unaligned() } as usize;
    if size >= std::mem::size_of::<T>() {
        // SAFETY: forwarded contract (readable for its own struct_size).
        return unsafe { versioned(ptr, name, c_type, fix) };
    }
    if size < oldest {
        return Err(Error::InvalidArgument(format!(
            "{name}->struct_size is {size}, less than the smallest sizeof({c_type}) of any \
             release ({oldest}); {fix}"
        )));
    }
    let mut out = T::default();
    // SAFETY: the caller's struct is readable for `size >= oldest` bytes;
    // `out` is a `T`, longer than `oldest` (checked: `size < size_of::<T>()`).
    // `T` is plain `repr(C)` data (integers, pointers, optional function
    // pointers) whose first `oldest` bytes are whole fields laid out as in
    // the caller's older struct, so copying them gives each of those fields
    // the caller's value, as reading the older struct would.
    unsafe {
        std::ptr::copy_nonoverlapping(ptr.cast::<u8>(), (&mut out as *mut T).cast::<u8>(), oldest)
    };
    Ok(out)
}

/// Writes a versioned OUTPUT struct (stats, plain integers): the fields
/// that fit in the caller's `struct_size` (its first field, left as the
/// caller set it).
///
/// # Safety
/// `ptr` must be NULL or valid for writes of its own `struct_size` bytes.
pub(crate) unsafe fn write_versioned<T: Copy>(
    ptr: *mut T,
    full: &T,
    name: &str,
) -> Result<snp_status, Error> {
    if ptr.is_null() {
        return Err(Error::InvalidArgument(format!("{name} is NULL")));
    }
    // SAFETY: every versioned struct starts with `uint32_t struct_size`.
    let size = unsafe { ptr.cast::<u32>().read_unaligned() } as usize;
    let header = std::mem::size_of::<u32>();
    if size <= header {
        return Err(Error::InvalidArgument(format!(
            "{name}->struct_size is {size}; set it to the size of the struct first"
        )));
    }
    let n = size.min(std::mem::size_of::<T>());
    // SAFETY: the caller's struct has `size >= n` writable bytes; we skip
    // its struct_size field and copy plain data after it.
    unsafe {
        std::ptr::copy_nonoverlapping(
            (full as *const T).cast::<u8>().add(header),
            ptr.cast::<u8>().add(header),
            n - header,
        );
    }
    Ok(SNP_OK)
}

/// Fills a caller's struct with its defaults; NULL is ignored.
///
/// # Safety
/// `ptr` must be NULL or valid for a write of a `T`.
pub(crate) unsafe fn init<T: Default + Copy>(ptr: *mut T) {
    if let Some(out) = Out::optional(ptr) {
        // SAFETY: forwarded contract: not NULL, so writable.
        unsafe { out.write(T::default()) };
    }
}
