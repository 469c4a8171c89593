//! Writes `capi/include/softnet_persistence.h` from the C ABI crate's
//! sources (cbindgen, pinned), or with `--check` fails if the committed
//! header differs from what the code would generate.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../capi");
    let header = root.join("include/softnet_persistence.h");
    let config = match cbindgen::Config::from_file(root.join("cbindgen.toml")) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gen-header: cbindgen.toml: {e}");
            return ExitCode::FAILURE;
        }
    };
    let bindings = match cbindgen::Builder::new()
        .with_config(config)
        .with_src(root.join("src/lib.rs"))
        .generate()
    {
        Ok(b) => b,
        Err(e) => {
            eprintln!("gen-header: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    if std::env::args().any(|a| a == "--check") {
        let committed = std::fs::read(&header).unwrap_or_default();
        if committed != generated {
            eprintln!(
                "gen-header: {} is out of date with capi/src; run `make header` and commit it",
                header.display()
            );
            return ExitCode::FAILURE;
        }
        println!("gen-header: {} is up to date", header.display());
        return ExitCode::SUCCESS;
    }
    if let Err(e) = std::fs::write(&header, &generated) {
        eprintln!("gen-header: writing {}: {e}", header.display());
        return ExitCode::FAILURE;
    }
    println!("gen-header: wrote {}", header.display());
    ExitCode::SUCCESS
}
