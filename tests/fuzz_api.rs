//! The HTTP API fuzzed by an outside tool: schemathesis (PyPI; `.ci/run`
//! installs it) generates requests from our own `/openapi.json` and checks
//! every answer against it: no server error, every status and body as
//! documented. Seeded and bounded in examples per operation.
//!
//! Every check is on, `positive_data_acceptance` included: a request valid
//! by the document is accepted (2xx), or refused only as the document says
//! (401, 403, 404 for names the repo does not have).
//!
//! Findings, each kept below as a regression test:
//! - feature values were documented as objects, but are numbers, strings,
//!   booleans or lists (ST108, response violates schema).

use kit::tier::Tier;
use skewless_testkit as kit;

use std::process::Command;

use kit::fresh_driver_repo;
use serde_json::Value;

/// Runs schemathesis against `base` with the document at `schema`: its report and whether it passed.
fn schemathesis(schema: &std::path::Path, base: &str, token: Option<&str>, examples: u32) -> (bool, String) {
    let mut command = Command::new("timeout");
    // Run in the test's folder: schemathesis keeps a cache in its working directory.
    command.current_dir(schema.parent().unwrap());
    command.args(["600", "schemathesis", "run"]).arg(schema).args([
        "--url",
        base,
        "--max-examples",
        &examples.to_string(),
        "--seed",
        "20261201",
        "--checks",
        "all",
        "--no-color",
    ]);
    if let Some(token) = token {
        command.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    let out = command
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .output()
        .expect("timeout runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !report.contains("No such file") && out.status.code() != Some(127),
        "schemathesis is not installed: `python3 -m pip install schemathesis==4.32.5` (as .ci/run does)\n{report}"
    );
    (out.status.success(), report)
}

#[test]
fn schemathesis_finds_nothing_against_our_openapi_document() {
    if !Tier::Fuzz.enter() {
        return;
    }
    let repo = fresh_driver_repo();
    let token = repo
        .ok(&["token", "add", "fuzzer", "--scopes", "admin"])
        .trim()
        .to_string();
    let tokens = repo.path().join("tokens.toml");
    let server = repo.serve(&["--tokens", tokens.to_str().unwrap()]);
    let (status, document) = server.get_as(Some(&token), "/openapi.json");
    assert_eq!(status, 200);
    let schema = repo.path().join("openapi.json");
    std::fs::write(&schema, &document).unwrap();

    // With a token that may do everything: every operation, in depth.
    let (passed, report) = schemathesis(&schema, &server.base, Some(&token), 100);
    let unexplained = findings_beyond_equal_lengths(&report);
    assert!(
        unexplained.is_empty(),
        "schemathesis found problems:\n{}\n\nthe whole report:\n{report}\nserver log:\n{}",
        unexplained.join("\n"),
        server.log()
    );
    assert!(passed || report.contains("length_mismatch"), "{report}");
    // Without one: every answer is the documented 401.
    let (passed, report) = schemathesis(&schema, &server.base, None, 10);
    assert!(passed, "without a token:\n{report}");

    assert!(!server.log().contains("internal error"), "{}", server.log());
    assert_eq!(server.get("/health").0, 200);
}

/// The findings of a report other than schema-valid requests refused for a
/// rule JSON Schema cannot state across properties, which the document says
/// in words: columns of unequal lengths (every column of `entities`, or of
/// a push's `df`, holds one value per row: 400 `length_mismatch`) and a
/// load whose start is not before its end (400 `invalid_window`). Every
/// other finding, of any check, is returned.
fn findings_beyond_equal_lengths(report: &str) -> Vec<String> {
    report
        .split("Test Case ID:")
        .skip(1)
        .map(|case| case.split("Reproduce with:").next().unwrap_or(case).trim().to_string())
        .filter(|case| {
            let only_positive_acceptance = case.matches("- ST").count() == 1 && case.contains("- ST202 ");
            let across_properties = ["length_mismatch", "invalid_window"]
                .iter()
                .any(|code| case.contains(&format!("\"code\":\"{code}\"")));
            !(only_positive_acceptance && across_properties)
        })
        .collect()
}

#[test]
fn the_report_filter_keeps_every_finding_but_unequal_lengths() {
    let report = "1. Test Case ID: a\n\n- ST202 Schema-valid request rejected\n[400]\n`{\"error\":{\"code\":\"length_mismatch\"}}`\nReproduce with: x\n\
                  2. Test Case ID: b\n\n- ST202 Schema-valid request rejected\n[400]\n`{\"error\":{\"code\":\"no_features\"}}`\nReproduce with: y\n\
                  3. Test Case ID: c\n\n- ST101 Server error\n[500]\nReproduce with: z\n";
    let found = findings_beyond_equal_lengths(report);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found[0].contains("no_features") && found[1].contains("ST101"),
        "{found:?}"
    );
}

/// Finding: `values` items are any JSON value, not objects (a read of
/// numbers was answered outside the documented schema).
#[test]
fn feature_values_are_documented_as_any_json_value() {
    let document: Value = serde_json::from_str(&skewless_server::openapi_json()).unwrap();
    let items = &document["components"]["schemas"]["FeatureColumn"]["properties"]["values"]["items"];
    assert!(items.is_object(), "{items}");
    assert!(
        items.get("type").is_none(),
        "values are documented with a type: {items}"
    );
    // Guarded routes document the refusals they may answer.
    for (path, method) in [("/get-online-features", "post"), ("/push", "post"), ("/metrics", "get")] {
        let responses = &document["paths"][path][method]["responses"];
        for status in ["401", "403", "503"] {
            assert!(responses.get(status).is_some(), "{path} does not document {status}");
        }
    }
    assert!(document["paths"]["/push"]["post"]["responses"].get("507").is_some());
    assert!(document["paths"]["/health"]["get"]["responses"].get("401").is_none());
}
