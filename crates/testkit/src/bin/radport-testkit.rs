//! `radport-testkit make-series --out DIR [--count N] [--rows R] [--columns C] [--seed S]`:
//! writes a synthetic CT series for benchmarks and manual tests.

use anyhow::{bail, Context, Result};
use radport_testkit::{write_series, SeriesSpec};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("make-series") => {}
        _ => bail!("usage: radport-testkit make-series --out DIR [--count N] [--rows R] [--columns C] [--seed S] [--patient-id ID]"),
    }
    let mut spec = SeriesSpec::default();
    let mut out = None;
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--out" => out = Some(std::path::PathBuf::from(value)),
            "--count" => spec.count = value.parse()?,
            "--rows" => spec.rows = value.parse()?,
            "--columns" => spec.columns = value.parse()?,
            "--seed" => spec.uid_seed = value,
            "--patient-id" => spec.patient_id = value,
            "--modality" => spec.modality = value,
            other => bail!("unknown flag {other}"),
        }
    }
    let out = out.context("--out DIR is required")?;
    let paths = write_series(&out, &spec)?;
    println!("wrote {} files to {}", paths.len(), out.display());
    Ok(())
}
