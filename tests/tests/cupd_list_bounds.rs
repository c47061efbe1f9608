//! A wasm controller's list output amplifies: each `{}` on stdout becomes a whole resource
//! with its absent fields filled in, ~200 bytes in memory and ~110 re-encoded. Within the
//! 16 MiB stdout cap, 15 MiB of `{}` once made one list response of 873 MB and a cupd of
//! 2.5 GB. cupd now refuses a list past `--max-list-items` resources (while decoding) or
//! past `--max-list-bytes` of response (while encoding) with a 500 naming the bound and the
//! flag, and its peak memory stays near its stdout cap.

use std::time::{Duration, Instant};

use cup_e2e::cupd::{Cupd, CupdConfig, config_object};
use cup_e2e::probe_wasm;
use cup_e2e::shared_code_cache;

const BRACES: &str = "/apis/example.com/v1/namespaces";

fn write_config(dir: &std::path::Path) {
    std::fs::copy(probe_wasm(), dir.join("probe.wasm")).unwrap();
    let files = [
        (
            "braces-def.json",
            config_object(
                "ResourceDefinition",
                "braces.example.com",
                r#""names":{"kind":"Braces","singular":"brace","plural":"braces"},"spec":{"group":"example.com","versions":{"v1":{"type":"object"}}}"#,
            ),
        ),
        (
            "probe-ctl.json",
            config_object(
                "Controller",
                "probe",
                r#""spec":{"type":"wasm","spec":{"path":"probe.wasm"}}"#,
            ),
        ),
        (
            "probe-bind.json",
            config_object(
                "Binding",
                "probe",
                r#""spec":{"controller":"probe","resources":["example.com/v1/braces"]}"#,
            ),
        ),
    ];
    for (name, content) in files {
        std::fs::write(dir.join(name), content).unwrap();
    }
}

fn start(args: &[&str]) -> (Cupd, [tempfile::TempDir; 3]) {
    let dirs = [(); 3].map(|()| tempfile::tempdir().unwrap());
    write_config(dirs[0].path());
    let mut config = CupdConfig::new(dirs[0].path(), dirs[1].path(), dirs[2].path());
    config.args = vec![
        "--code-cache".into(),
        shared_code_cache().display().to_string(),
    ];
    config.args.extend(args.iter().map(|a| a.to_string()));
    (Cupd::start(&config), dirs)
}

/// `GET …/namespaces/<bytes>/braces`: the probe lists `bytes` bytes of `{}`.
fn list(cupd: &Cupd, bytes: u64, headers: &[(&str, &str)]) -> (u16, Vec<u8>, Duration) {
    let started = Instant::now();
    let r = cupd.request("GET", &format!("{BRACES}/{bytes}/braces"), headers, b"");
    (r.status, r.body, started.elapsed())
}

#[test]
fn fifteen_mib_of_empty_objects_is_a_clear_500_not_a_gigabyte() {
    let (cupd, _dirs) = start(&[]);

    // A small list is served as before: one resource per `{}`, defaults filled in.
    let (status, body, _) = list(&cupd, 200, &[]);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(body.iter().filter(|&&b| b == b'\n').count(), 100);

    let before = cupd.status_kib("VmRSS");
    let (status, body, took) = list(&cupd, 15 << 20, &[]);
    let peak = cupd.status_kib("VmHWM");
    let text = String::from_utf8_lossy(&body[..body.len().min(2048)]).into_owned();
    println!(
        "15 MiB of {{}}: {status}, {} bytes in {took:?}; cupd VmRSS {before} KiB before, \
         VmHWM {peak} KiB after: {text}",
        body.len()
    );
    assert_eq!(status, 500, "{text}");
    assert!(text.contains("more than 10000 resources"), "{text}");
    assert!(text.contains("--max-list-items"), "{text}");
    assert!(body.len() < 4096, "an error, not a list");
    // The guest's stdout (up to 16 MiB, kept until decoded) plus 10,000 small resources.
    assert!(
        peak < before + 96 * 1024,
        "cupd's peak RSS grew from {before} KiB to {peak} KiB"
    );
    // The controller serves the next request.
    let (status, _, _) = list(&cupd, 2, &[]);
    assert_eq!(status, 200);
}

#[test]
fn both_bounds_are_flags_and_name_themselves() {
    let (cupd, _dirs) = start(&["--max-list-items", "20000", "--max-list-bytes", "1MiB"]);

    // 9,000 resources, ~1 MB: under both bounds, in both formats.
    let (status, body, _) = list(&cupd, 18_000, &[]);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(body.iter().filter(|&&b| b == b'\n').count(), 9_000);
    assert!(body.len() <= 1 << 20);
    let (status, body, _) = list(&cupd, 18_000, &[("Accept", "application/json")]);
    assert_eq!(status, 200);
    let array: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(array.as_array().map(Vec::len), Some(9_000));

    // 10,000 resources: under the item bound, but their encoding passes 1 MiB.
    let (status, body, _) = list(&cupd, 20_000, &[]);
    let text = String::from_utf8_lossy(&body).into_owned();
    println!("10,000 resources, --max-list-bytes 1MiB: {status} {text}");
    assert_eq!(status, 500, "{text}");
    assert!(
        text.contains("larger than 1048576 bytes") && text.contains("--max-list-bytes"),
        "{text}"
    );

    // 20,001 resources: past the item bound.
    let (status, body, _) = list(&cupd, 40_002, &[]);
    let text = String::from_utf8_lossy(&body).into_owned();
    println!("20,001 resources, --max-list-items 20000: {status} {text}");
    assert_eq!(status, 500, "{text}");
    assert!(
        text.contains("more than 20000 resources") && text.contains("--max-list-items"),
        "{text}"
    );
    assert!(
        text.starts_with("wasm.list: example.com/v1/Braces/40002: "),
        "{text}"
    );
}
