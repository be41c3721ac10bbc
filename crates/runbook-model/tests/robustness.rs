//! The parser and validator must end in diagnostics or success on any
//! input: never panic, never hang, never run away with memory. Thousands of
//! generated and mutated documents go through `load`; each must finish within
//! a generous bound (a hang detector, not a performance test).

use std::path::Path;
use std::time::{Duration, Instant};

/// A tiny deterministic generator (xorshift64*), so a failure reproduces
/// from its seed without pulling in a randomness crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const TOKENS: &[&str] = &[
    "{{",
    "}}",
    "{{{",
    "}}}",
    "{{#if x}}",
    "{{/each}}",
    ":",
    "- ",
    "&a ",
    "*a",
    "!!int ",
    "!!binary ",
    "\t",
    "\n",
    "  ",
    "'",
    "\"",
    "[",
    "]",
    "{",
    "}",
    "? ",
    "<<: ",
    "---\n",
    "...\n",
    "%YAML 1.2\n",
    "needs: [",
    "steps.",
    "params.",
    "\u{feff}",
    "\r\n",
    "#",
    "|",
    ">-",
    "0x",
    "1e999",
    "~",
];

fn seeds() -> Vec<Vec<u8>> {
    let root = Path::new(
        &std::env::var("CARGO_MANIFEST_DIR")
            .expect("cargo sets CARGO_MANIFEST_DIR when it runs a test"),
    )
    .join("../../tests/fixtures");
    let mut out = Vec::new();
    for kind in ["valid", "invalid"] {
        for entry in std::fs::read_dir(root.join(kind)).expect("fixtures exist") {
            let path = entry.expect("entry").path();
            out.push(std::fs::read(path).expect("readable"));
        }
    }
    out
}

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut doc = seed.to_vec();
    for _ in 0..=rng.below(8) {
        let at = rng.below(doc.len() + 1);
        match rng.below(6) {
            0 if !doc.is_empty() => {
                let i = rng.below(doc.len());
                doc[i] = rng.next() as u8;
            }
            1 => {
                let token = TOKENS[rng.below(TOKENS.len())].as_bytes();
                doc.splice(at..at, token.iter().copied());
            }
            2 if !doc.is_empty() => {
                let end = (at + rng.below(40)).min(doc.len());
                doc.drain(at..end);
            }
            3 => doc.truncate(at),
            4 if !doc.is_empty() => {
                // Duplicate a slice: repeated keys, repeated steps.
                let start = rng.below(doc.len());
                let end = (start + rng.below(200)).min(doc.len());
                let piece = doc[start..end].to_vec();
                doc.splice(at..at, piece);
            }
            _ => {
                let bytes: Vec<u8> = (0..rng.below(16)).map(|_| rng.next() as u8).collect();
                doc.splice(at..at, bytes);
            }
        }
    }
    doc
}

fn generated(rng: &mut Rng) -> Vec<Vec<u8>> {
    let mut docs = vec![
        "[".repeat(100_000).into_bytes(),
        "{a: ".repeat(50_000).into_bytes(),
        (0..200).map(|d| format!("{}a:\n", " ".repeat(d))).collect::<String>().into_bytes(),
        format!("version: 1\nname: big\ndescription: \"{}\"\nsteps:\n  a: {{type: shell, run: \"true\"}}\n", "x".repeat(8 << 20)).into_bytes(),
        format!("version: 1\nname: tpl\nsteps:\n  a: {{type: shell, run: \"{}\"}}\n", "{{#if x}}".repeat(5000)).into_bytes(),
        format!("version: 1\nname: tpl\nsteps:\n  a: {{type: shell, run: \"{}\"}}\n", "{{".repeat(20000)).into_bytes(),
        b"\xff\xfe\x00\x00garbage".to_vec(),
        Vec::new(),
        b"\x00\x00\x00".to_vec(),
    ];
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..20 {
        bomb.push_str(&format!(
            "a{i}: &a{i} [{}]\n",
            vec![format!("*a{}", i - 1); 10].join(", ")
        ));
    }
    docs.push(bomb.into_bytes());
    let mut needs = String::from("version: 1\nname: wide\nsteps:\n");
    for i in 0..3000 {
        needs.push_str(&format!(
            "  s{i}: {{type: shell, run: \"true\", needs: [s{}]}}\n",
            (i + 1) % 3000
        ));
    }
    docs.push(needs.into_bytes());
    for _ in 0..200 {
        docs.push((0..rng.below(4096)).map(|_| rng.next() as u8).collect());
    }
    docs
}

#[test]
fn arbitrary_input_ends_in_diagnostics_or_success() {
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let seeds = seeds();
    let mut documents = generated(&mut rng);
    for _ in 0..4000 {
        let seed = &seeds[rng.below(seeds.len())];
        documents.push(mutate(&mut rng, seed));
    }
    assert!(documents.len() >= 4000);
    let bound = Duration::from_secs(20);
    for (index, doc) in documents.iter().enumerate() {
        let started = Instant::now();
        let text = String::from_utf8_lossy(doc);
        let outcome =
            std::panic::catch_unwind(|| runbook_model::load(Path::new("fuzz.yaml"), &text));
        let elapsed = started.elapsed();
        let loaded = match outcome {
            Ok(loaded) => loaded,
            Err(_) => panic!(
                "document {index} panicked: {:?}",
                String::from_utf8_lossy(&doc[..doc.len().min(300)])
            ),
        };
        assert!(elapsed < bound, "document {index} took {elapsed:?}");
        // Either a runbook or at least one error: never silence.
        assert!(
            loaded.runbook.is_some() || loaded.has_errors(),
            "document {index}: no runbook and no error"
        );
        for d in &loaded.diagnostics {
            assert!(
                d.span.line >= 1 && d.span.col >= 1,
                "document {index}: position {:?}",
                d.span
            );
            assert!(
                d.span.start <= text.len() && d.span.end <= text.len(),
                "document {index}: span out of range"
            );
        }
    }
    // Alias expansion and nesting are bounded, so the whole corpus fits in a
    // modest peak; a regression that expands a bomb would blow far past this.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if let Some(kib) = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    {
        assert!(kib < 1_500_000, "peak memory {kib} KiB");
    }
}

/// Special files and oversized files end in a diagnostic instead of a read
/// that blocks (a FIFO) or never ends (`/dev/zero`).
#[test]
fn files_that_are_not_regular_or_too_large_are_refused() {
    for special in ["/dev/zero", "/dev/null", "/"] {
        let (_, loaded) = runbook_model::load_file(Path::new(special));
        assert!(loaded.runbook.is_none(), "{special}");
        assert!(
            loaded.diagnostics[0].message.contains("not a regular file"),
            "{special}: {}",
            loaded.diagnostics[0].message
        );
    }
    let dir = std::env::temp_dir().join(format!("runbook-robustness-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("big.yaml");
    std::fs::write(&file, vec![b'#'; 2 << 20]).expect("write");
    let error = runbook_model::read_regular_file(&file, 1 << 20).expect_err("over the limit");
    assert!(error.to_string().contains("larger than 1 MiB"), "{error}");
    assert_eq!(
        runbook_model::read_regular_file(&file, 2 << 20)
            .expect("at the limit")
            .len(),
        2 << 20
    );
    let _ = std::fs::remove_dir_all(&dir);
}
