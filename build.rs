//! Embeds the RDS CA bundle when `certs/rds-global-bundle.pem` exists at build time, so the Lambda
//! (whose package holds only the `bootstrap` binary) can verify RDS certificates with
//! `PGSSLROOTCERT=embedded:rds-global-bundle`. Download it before `sam build`:
//!   curl -o certs/rds-global-bundle.pem https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem
fn main() {
    println!("cargo::rustc-check-cfg=cfg(rds_bundle)");
    // The directory, not the file: a path that does not exist counts as changed at every build,
    // which recompiled the crate each time (and made `sam build` after `cargo lambda build` a
    // second release build instead of a copy).
    println!("cargo:rerun-if-changed=certs");
    if std::path::Path::new("certs/rds-global-bundle.pem").exists() {
        println!("cargo:rustc-cfg=rds_bundle");
    }
}
