//! `cargo run -p radport-validate --example validate -- FILE...`: prints the findings of each file.

fn main() {
    for path in std::env::args().skip(1) {
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{path}: {e}");
                continue;
            }
        };
        match radport_validate::validate_file(&bytes) {
            Ok(v) => {
                println!("{path}: IOD {:?}, {} finding(s)", v.iod, v.findings.len());
                for f in &v.findings {
                    println!(
                        "  {:?} {} [{}] {}",
                        f.severity,
                        f.tag_path,
                        f.module.as_deref().unwrap_or("-"),
                        f.message
                    );
                }
            }
            Err(e) => println!("{path}: {e}"),
        }
    }
}
