//! The web UI at `/ui`, in a real browser: headless Chromium (Debian's
//! `chromium`, installed by `.ci/run`) driven over the DevTools protocol.
//! It loads the page of the driver_stats and fraud examples, and the test
//! checks the catalog lists every view, distribution plots render (in the
//! DOM, and a screenshot that is not blank), and the console has no error.

use kit::tier::Tier;
use skewless_testkit as kit;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use kit::*;
use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

/// Headless Chromium and one page of it, over the DevTools protocol.
struct Browser {
    child: Child,
    socket: WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
    next_id: u64,
    /// Errors the page reported: exceptions, console errors, failed loads.
    errors: Vec<String>,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn launch() -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--no-first-run",
                "--remote-debugging-port=0",
                "--window-size=1280,1400",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("Debian's `chromium` runs (`apt-get install chromium`; .ci/run installs it)");
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        let endpoint = loop {
            line.clear();
            assert!(
                stderr.read_line(&mut line).unwrap() > 0,
                "chromium exited before listening"
            );
            if let Some(at) = line.find("ws://") {
                break line[at..].trim().to_string();
            }
        };
        // Keep draining its log so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in stderr.lines() {});
        let port = endpoint
            .split(':')
            .nth(2)
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_string();
        let pages: Value = serde_json::from_str(
            &ureq::get(&format!("http://127.0.0.1:{port}/json/list"))
                .call()
                .unwrap()
                .body_mut()
                .read_to_string()
                .unwrap(),
        )
        .unwrap();
        let page = pages
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["type"] == "page")
            .expect("a page target");
        let url = page["webSocketDebuggerUrl"].as_str().unwrap();
        let (socket, _) = tungstenite::connect(url).expect("the DevTools socket");
        if let tungstenite::stream::MaybeTlsStream::Plain(stream) = socket.get_ref() {
            stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        }
        let mut browser = Browser {
            child,
            socket,
            next_id: 0,
            errors: Vec::new(),
            _profile: profile,
        };
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            browser.call(domain, json!({}));
        }
        browser
    }

    /// Sends a command and returns its result, noting the events that come first.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let message = json!({"id": id, "method": method, "params": params}).to_string();
        self.socket.send(Message::text(message)).unwrap();
        loop {
            let Message::Text(text) = self.socket.read().unwrap() else {
                continue;
            };
            let message: Value = serde_json::from_str(&text).unwrap();
            if message["id"] == id {
                assert!(message.get("error").is_none(), "{method}: {message}");
                return message["result"].clone();
            }
            self.note(&message);
        }
    }

    fn note(&mut self, event: &Value) {
        let params = &event["params"];
        match event["method"].as_str().unwrap_or_default() {
            "Runtime.exceptionThrown" => self.errors.push(format!("exception: {}", params["exceptionDetails"])),
            "Runtime.consoleAPICalled" if matches!(params["type"].as_str(), Some("error" | "assert")) => {
                self.errors.push(format!("console.error: {}", params["args"]))
            }
            "Log.entryAdded" if params["entry"]["level"] == "error" => {
                self.errors.push(format!("log: {}", params["entry"]))
            }
            _ => {}
        }
    }

    /// Evaluates `expression` in the page, returning its value.
    fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        result["result"]["value"].clone()
    }

    /// Opens `url` and waits until `ready` (a JavaScript expression) is true.
    fn open(&mut self, url: &str, ready: &str) {
        self.call("Page.navigate", json!({"url": url}));
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.eval(ready) != json!(true) {
            assert!(
                Instant::now() < deadline,
                "{url}: `{ready}` never held; errors: {:?}",
                self.errors
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A PNG screenshot of the viewport.
    fn screenshot(&mut self) -> Vec<u8> {
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}));
        base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Distinct colours, and the share of pixels that are not the page's white.
fn colours(png_bytes: &[u8]) -> (usize, f64) {
    let decoder = png::Decoder::new(png_bytes);
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).unwrap();
    let channels = info.color_type.samples();
    let pixels = &pixels[..info.buffer_size()];
    let mut seen = std::collections::HashSet::new();
    let mut inked = 0usize;
    for pixel in pixels.chunks(channels) {
        seen.insert(pixel[..3].to_vec());
        if pixel[..3].iter().any(|&c| c < 240) {
            inked += 1;
        }
    }
    (seen.len(), inked as f64 / (pixels.len() / channels) as f64)
}

#[test]
fn the_ui_lists_the_catalog_and_draws_distributions_in_headless_chromium() {
    if !Tier::Ui.enter() {
        return;
    }
    let mut browser = Browser::launch();
    // The console check is real: a page that throws is caught.
    browser.open(
        "data:text/html,<p id=x>x</p><script>setTimeout(() => { window.done = true; undefinedFunction(); })</script>",
        "window.done === true",
    );
    std::thread::sleep(Duration::from_millis(200));
    browser.eval("1");
    assert!(
        browser.errors.iter().any(|e| e.contains("undefinedFunction")),
        "{:?}",
        browser.errors
    );
    browser.errors.clear();

    for example in ["driver_stats", "fraud"] {
        let repo = TempRepo::with_data(example, next_hour() - 3_600_000_000);
        repo.ok(&["apply"]);
        repo.ok(&["backfill"]);
        if example == "driver_stats" {
            // Served values in the logs, and a drift report against a training set.
            let server = repo.serve(&["--log-sample-rate", "1"]);
            for driver in 1001..=1200 {
                let body =
                    format!(r#"{{"features": ["driver_hourly_stats"], "entities": {{"driver_id": [{driver}]}}}}"#);
                assert_eq!(server.post("/get-online-features", &body).0, 200);
            }
            server.stop();
            let spine = repo.path().join("spine.csv");
            let times: Vec<String> = (0..400)
                .map(|i| {
                    let at = next_hour() - (2 + i % 500) * 3_600_000_000;
                    format!("{},{}", 1001 + i * 2, skewless_runtime::time::format_timestamp(at))
                })
                .collect();
            std::fs::write(&spine, format!("driver_id,event_timestamp\n{}\n", times.join("\n"))).unwrap();
            let train = repo.path().join("train.parquet");
            repo.ok(&kit::dataset_args(&spine, "driver_hourly_stats", &train));
            let out = repo.run(&["drift", "--baseline", train.to_str().unwrap()]);
            assert!(out.status.code() == Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        }
        let server = repo.serve(&["--log-sample-rate", "0"]);
        browser.open(
            &format!("{}/ui", server.base),
            "document.getElementById('status').dataset.loaded === 'true'",
        );

        // Every view of the repo, as the registry has them.
        let catalog: Value = serde_json::from_str(&server.get("/v1/catalog").1).unwrap();
        let mut expected: Vec<String> = catalog["views"].as_object().unwrap().keys().cloned().collect();
        expected.sort();
        let listed =
            browser.eval("[...document.querySelectorAll('#views tr td:first-child')].map(td => td.textContent)");
        let mut listed: Vec<String> = serde_json::from_value(listed).unwrap();
        listed.sort();
        assert_eq!(listed, expected, "{example}");
        assert!(expected.len() >= 2, "{expected:?}");

        // Distribution plots: SVG bars, on shared bins.
        let bars = browser.eval("document.querySelectorAll('.plot svg rect').length");
        assert!(bars.as_u64().unwrap() >= 20, "{example}: {bars}");
        if example == "driver_stats" {
            for series in ["stored", "training", "served"] {
                let count = browser.eval(&format!(
                    "document.querySelectorAll('.plot[data-feature=\"driver_hourly_stats:conv_rate\"] rect[data-series=\"{series}\"]').length"
                ));
                assert_eq!(count, json!(20), "{series}");
            }
            let drift_rows = browser.eval("document.querySelectorAll('#drift-table tr').length");
            assert_eq!(drift_rows, json!(4), "a heading and three features");
            let freshness =
                browser.eval("document.querySelector('#health tr:nth-child(2) td:nth-child(4)').textContent");
            assert!(
                freshness.as_str().unwrap().ends_with(" h") || freshness.as_str().unwrap().ends_with(" min"),
                "{freshness}"
            );
        }

        // The screenshot is a page, not a blank.
        let png = browser.screenshot();
        let (distinct, inked) = colours(&png);
        assert!(
            distinct > 20 && inked > 0.05,
            "{example}: {distinct} colours, {inked:.3} inked"
        );
        if let Ok(folder) = std::env::var("SKEWLESS_SCREENSHOTS") {
            // For the README: the catalog, then the plots.
            let folder = std::path::Path::new(&folder);
            std::fs::write(folder.join(format!("ui-{example}-catalog.png")), &png).unwrap();
            browser.eval("document.getElementById('distributions').scrollIntoView()");
            let plots = browser.screenshot();
            std::fs::write(folder.join(format!("ui-{example}-distributions.png")), &plots).unwrap();
        }
        assert!(browser.errors.is_empty(), "{example}: {:?}", browser.errors);
    }
}
