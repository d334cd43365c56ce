//! Bundles scenarios/*.uds into the binary, so `udsim check` with no arguments runs them from anywhere.
use std::io::Write;

fn main() {
    println!("cargo:rerun-if-changed=scenarios");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "uds"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let out = std::path::Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("scenarios.rs");
    let mut f = std::fs::File::create(out).expect("write scenarios.rs");
    writeln!(f, "/// The bundled scenario library: (file name, text).").unwrap();
    writeln!(f, "pub static SCENARIOS: &[(&str, &str)] = &[").unwrap();
    for p in files {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        writeln!(
            f,
            "    ({name:?}, include_str!({:?})),",
            p.display().to_string()
        )
        .unwrap();
    }
    writeln!(f, "];").unwrap();
}
