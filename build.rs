//! Bundles scenarios/*.uds into the binary, so `udsim check` with no arguments runs them from anywhere, and
//! the model's rule names and descriptions (read from src/model), for `udsim rules`.
use std::io::Write;

fn main() {
    rules();
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

/// The model's rules, read from its source: every rule name a prediction can carry (a string literal of the
/// shape `words_with_underscores` in the model's code), with the words of the comment that introduces it
/// (`rule \`name\`: what it says`) as its description, where there is one. Written to
/// `$OUT_DIR/rules.rs` as `RULES: &[(name, description)]`, sorted by name, for `udsim rules`.
fn rules() {
    println!("cargo:rerun-if-changed=src/model");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/model");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "rs"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut rules: std::collections::BTreeMap<String, String> = Default::default();
    let mut in_code: std::collections::BTreeSet<String> = Default::default();
    let is_name = |s: &str| {
        s.len() > 3
            && s.contains('_')
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    for p in files {
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        // Names in code: a string literal of a rule's shape in the model's code (not in comments), except in
        // params.rs, whose literals are parameter names.
        if !p.ends_with("params.rs") {
            for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
                for (k, lit) in line.split('"').enumerate() {
                    if k % 2 == 1 && is_name(lit) {
                        in_code.insert(lit.to_string());
                    }
                }
            }
        }
        // Names and descriptions in comments: one paragraph per run of comment lines.
        let mut para = String::new();
        let mut paras = Vec::new();
        for line in text.lines() {
            let t = line.trim_start();
            if let Some(c) = t.strip_prefix("//") {
                let c = c.trim_start_matches(['/', '!']).trim();
                if !para.is_empty() {
                    para.push(' ');
                }
                para.push_str(c);
            } else if !para.is_empty() {
                paras.push(std::mem::take(&mut para));
            }
        }
        for para in paras {
            let mut at = 0;
            while let Some(i) = para[at..].find("rule `") {
                let start = at + i + "rule `".len();
                let Some(len) = para[start..].find('`') else {
                    break;
                };
                let mut names = vec![para[start..start + len].to_string()];
                let mut pos = start + len + 1;
                // `rule `a` / `b`: ...` names two.
                while let Some(rest) = para[pos..].strip_prefix(" / `") {
                    let Some(l) = rest.find('`') else { break };
                    names.push(rest[..l].to_string());
                    pos += " / `".len() + l + 1;
                }
                let desc = match para[pos..].strip_prefix(':') {
                    Some(rest) => {
                        let end = rest.find("; rule `").or_else(|| rest.find(" rule `"));
                        let d = rest[..end.unwrap_or(rest.len())].trim();
                        d.trim_end_matches([';', ',']).trim().to_string()
                    }
                    None => String::new(),
                };
                for n in names.into_iter().filter(|n| is_name(n)) {
                    let e = rules.entry(n).or_default();
                    if e.is_empty() {
                        e.clone_from(&desc);
                    }
                }
                at = pos;
            }
        }
    }
    let out = std::path::Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("rules.rs");
    let mut f = std::fs::File::create(out).expect("write rules.rs");
    writeln!(
        f,
        "/// The model's rules, read from its source at build time: (name, description)."
    )
    .unwrap();
    writeln!(f, "pub static RULES: &[(&str, &str)] = &[").unwrap();
    // A rule is a name a prediction can carry (what a transcript prints); names that only a comment gives
    // describe a step inside one of those.
    for n in &in_code {
        let d = rules.get(n).map_or("", |d| d.trim_end_matches(" then"));
        writeln!(f, "    ({n:?}, {d:?}),").unwrap();
    }
    writeln!(f, "];").unwrap();
}
