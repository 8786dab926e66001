//! The artifact users deploy: `bootstrap`, built by `cargo lambda build --release --arm64` and
//! packaged by `sam build` (both run by `infra/lambda-artifact.sh` from `scripts/test.sh`). It must
//! be an aarch64 ELF that the `provided.al2023` runtime can load (only glibc's libraries, no
//! symbol newer than its glibc 2.34, OpenSSL linked in), it must start, and SAM must package that
//! same file. The Lambda scenario in `lambda.rs` also runs it end to end, under qemu.

use std::process::Command;

/// glibc of the `provided.al2023` runtime (Amazon Linux 2023).
const AL2023_GLIBC: (u32, u32) = (2, 34);

/// Shared libraries `provided.al2023` has for any binary: glibc's own, and libgcc's unwinder.
const AL2023_LIBRARIES: &[&str] = &[
    "ld-linux-aarch64.so.1",
    "libc.so.6",
    "libm.so.6",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
    "libgcc_s.so.1",
];

pub fn artifact() -> String {
    std::env::var("PA_TEST_LAMBDA_ARTIFACT").expect(
        "PA_TEST_LAMBDA_ARTIFACT is not set: run the tests through scripts/test.sh, which builds the arm64 artifact",
    )
}

/// A command that runs the arm64 artifact here: through `PA_TEST_ARM64_RUNNER` (qemu-user on an
/// x86_64 machine, set by `infra/qemu-arm64.sh`), or directly on an aarch64 one.
pub fn arm64_command() -> Command {
    let runner = std::env::var("PA_TEST_ARM64_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    match words.next() {
        Some(program) => {
            let mut c = Command::new(program);
            c.args(words).arg(artifact());
            c
        }
        None => Command::new(artifact()),
    }
}

fn readelf(flag: &str, path: &str) -> String {
    let out = Command::new("readelf").args([flag, "-W", path]).output().expect("run readelf (binutils)");
    assert!(out.status.success(), "readelf {flag} {path}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The `NEEDED` entries of a dynamic section, as `readelf -d` prints them.
fn needed(dynamic: &str) -> Vec<String> {
    dynamic
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| Some(l.split_once('[')?.1.split_once(']')?.0.to_string()))
        .collect()
}

/// Every `GLIBC_x.y[.z]` version a binary requires, as `readelf -V` prints them.
fn glibc_versions(versions: &str) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = versions
        .split(|c: char| c.is_whitespace())
        .filter_map(|w| w.strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let mut parts = v.split('.').map(|p| p.parse::<u32>());
            Some((parts.next()?.ok()?, parts.next()?.ok()?))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

#[test]
fn the_lambda_artifact_is_an_aarch64_binary_that_provided_al2023_can_load() {
    let path = artifact();
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    // ELF header: magic, 64-bit, little-endian, e_machine EM_AARCH64 (183).
    assert_eq!(&bytes[..4], b"\x7fELF", "{path} is not an ELF file");
    assert_eq!((bytes[4], bytes[5]), (2, 1), "{path}: not a 64-bit little-endian ELF");
    let machine = u16::from_le_bytes([bytes[18], bytes[19]]);
    assert_eq!(machine, 183, "{path}: e_machine {machine}, not aarch64 (183)");

    let libs = needed(&readelf("-d", &path));
    println!("NEEDED: {libs:?}");
    assert!(libs.iter().any(|l| l == "libc.so.6"), "{libs:?}: expected a glibc binary");
    let foreign: Vec<&String> = libs.iter().filter(|l| !AL2023_LIBRARIES.contains(&l.as_str())).collect();
    assert!(foreign.is_empty(), "provided.al2023 does not have {foreign:?} (NEEDED: {libs:?})");

    let versions = glibc_versions(&readelf("-V", &path));
    let newest = *versions.last().expect("the binary requires some GLIBC_ symbol version");
    println!("newest glibc symbol version: {}.{}", newest.0, newest.1);
    assert!(newest <= AL2023_GLIBC, "needs GLIBC_{}.{}, provided.al2023 has {AL2023_GLIBC:?}", newest.0, newest.1);
}

#[test]
fn sam_build_packages_the_same_artifact() {
    let sam = std::env::var("PA_TEST_SAM_ARTIFACT").expect("PA_TEST_SAM_ARTIFACT is not set: run scripts/test.sh");
    let packaged = std::fs::read(&sam).unwrap_or_else(|e| panic!("read {sam}: {e}"));
    let built = std::fs::read(artifact()).unwrap();
    assert!(packaged == built, "sam build packaged {sam} ({} bytes), not the artifact that was tested", packaged.len());
}

#[test]
fn the_arm64_artifact_starts() {
    let out = arm64_command().arg("--help").output().expect("run the arm64 artifact");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    for verb in ["maintain", "restore", "verify"] {
        assert!(text.contains(verb), "--help does not list {verb}: {text}");
    }
}

#[test]
fn the_elf_readers_parse_what_readelf_prints() {
    let dynamic = " 0x0000000000000001 (NEEDED)             Shared library: [libssl.so.3]\n \
                   0x0000000000000001 (NEEDED)             Shared library: [libc.so.6]\n \
                   0x000000000000000c (INIT)               0x5000\n";
    assert_eq!(needed(dynamic), vec!["libssl.so.3", "libc.so.6"]);
    let versions =
        "  0x0010:   Name: GLIBC_2.17  Flags: none  Version: 5\n  0x0020:   Name: GLIBC_2.38  Flags: none\n  \
                    0x0030:   Name: GLIBC_2.2.5  Flags: none\n";
    assert_eq!(glibc_versions(versions), vec![(2, 2), (2, 17), (2, 38)]);
    assert!(*glibc_versions(versions).last().unwrap() > AL2023_GLIBC, "2.38 must be refused");
}
