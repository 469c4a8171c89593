//! Gives the shared library its SONAME, `libsoftnet_persistence.so.<N>`,
//! where N is `SNP_ABI_VERSION`. The one source of N is the constant in
//! `src/status.rs`; the generated header (`make header`) must say the same,
//! and the build stops here when it does not. `make lib` adds the
//! `libsoftnet_persistence.so.<N>` link beside the built library, and
//! `make install` the usual chain (`.so` -> `.so.N` -> `.so.N.x.y`).
use std::env;
use std::fs;

/// The number in the first line of `text` that starts with `prefix`.
fn number_after(text: &str, prefix: &str, file: &str) -> u32 {
    text.lines()
        .find_map(|line| line.trim().strip_prefix(prefix))
        .map(|rest| {
            let digits: String = rest
                .trim()
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits
                .parse()
                .unwrap_or_else(|_| panic!("{file}: no number after `{prefix}`"))
        })
        .unwrap_or_else(|| panic!("{file}: no line starts with `{prefix}`"))
}

fn main() {
    println!("cargo:rerun-if-changed=src/status.rs");
    println!("cargo:rerun-if-changed=include/softnet_persistence.h");
    let source = fs::read_to_string("src/status.rs").expect("capi/src/status.rs");
    let abi = number_after(
        &source,
        "pub const SNP_ABI_VERSION: u32 =",
        "capi/src/status.rs",
    );
    let header = fs::read_to_string("include/softnet_persistence.h")
        .expect("capi/include/softnet_persistence.h");
    let in_header = number_after(&header, "#define SNP_ABI_VERSION", "softnet_persistence.h");
    assert_eq!(
        abi, in_header,
        "SNP_ABI_VERSION is {abi} in capi/src/status.rs but {in_header} in \
         capi/include/softnet_persistence.h: run `make header`"
    );
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if matches!(
        os.as_str(),
        "linux" | "android" | "freebsd" | "netbsd" | "openbsd" | "dragonfly"
    ) {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libsoftnet_persistence.so.{abi}");
    }
}
