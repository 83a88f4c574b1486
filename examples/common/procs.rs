//! Processes the benchmarks start: the `hirehook` binary under test and its simulator.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context as _, bail};

/// The daemon under test: `HIREHOOK_BIN` when set (to compare two builds), else the
/// `hirehook` beside the running example (`target/<profile>/examples/x` →
/// `target/<profile>/hirehook`).
pub fn hirehook_binary() -> anyhow::Result<PathBuf> {
    let bin = match std::env::var_os("HIREHOOK_BIN") {
        Some(path) => PathBuf::from(path),
        None => std::env::current_exe()?
            .parent()
            .and_then(Path::parent)
            .map(|d| d.join("hirehook"))
            .context("locating the target directory")?,
    };
    if !bin.exists() {
        bail!(
            "{} not found: run `cargo build --release --bin hirehook` first",
            bin.display()
        );
    }
    Ok(bin)
}

/// Reads the first stdout line of a freshly started child.
pub fn first_line(child: &mut Child) -> anyhow::Result<String> {
    let stdout = child.stdout.take().context("child stdout")?;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    Ok(line.trim().to_owned())
}

/// A `hirehook sim` child process, killed when dropped.
pub struct SimProcess {
    child: Child,
    pub base_url: String,
    pub api_key: String,
    pub integrations: Vec<String>,
}

impl SimProcess {
    /// The simulator's process id.
    #[allow(dead_code)] // not every example reads the simulator's CPU
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `hirehook sim` with one integration of `applications`, changing
/// `changes_per_second` of them, from `seed`.
pub fn start_sim(
    applications: usize,
    changes_per_second: f64,
    seed: u64,
) -> anyhow::Result<SimProcess> {
    let mut child = Command::new(hirehook_binary()?)
        .args(["sim", "--listen", "127.0.0.1:0", "--integrations", "1"])
        .args(["--applications", &applications.to_string()])
        .args(["--seed", &seed.to_string()])
        .args(["--changes-per-second", &changes_per_second.to_string()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the simulator")?;
    let line = first_line(&mut child)?;
    let v: serde_json::Value = serde_json::from_str(&line).context("sim address line")?;
    Ok(SimProcess {
        base_url: v["base_url"].as_str().unwrap_or_default().to_owned(),
        api_key: v["api_key"].as_str().unwrap_or_default().to_owned(),
        integrations: v["integrations"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default(),
        child,
    })
}
