//! Issue 14 end to end: presplice (every request of a keep-alive connection routed by
//! content) under the issue's impaired network — 2% loss, 25% reordering, 5 ms delay
//! and 1% duplication on the client's and the backends' links, both directions
//! (`testbed.sh impair`, no netem in this kernel; see docs/testbed.md). A 100 MB
//! download, a 20 MB `curl -T` upload (curl's default `Expect: 100-continue`), 20
//! parallel 5 MB downloads, all sha256-exact against the backend's own file, each
//! bounded by a timeout; and one keep-alive connection alternating between pools, each
//! answer from its pool. Prints MB/s of each transfer and what was injected; then the
//! switch must end with no mbuf, no flow, no presplice abort and no fallback.
use std::time::{Duration, Instant};

use serde_json::Value;
use webswitch_tests::{counter, root_or_skip, sha256_file, testbed_lock, Switch, Testbed};

/// The impairment of issue 14 (the seed only fixes the reorderer's choices).
const IMPAIR: &[&str] = &[
    "impair",
    "--loss",
    "2",
    "--reorder",
    "25",
    "--delay",
    "5",
    "--dup",
    "1",
    "--seed",
    "14",
];

/// The sha256 a backend's file should have: from the testbed's content directory.
fn file_sha(tb: &Testbed, be: &str, rel: &str) -> String {
    sha256_file(&format!("/tmp/{}-testbed/{be}/www/{rel}", tb.name))
}

/// MB/s (10^6 bytes) from curl's `-w '%{size_download} %{size_upload} %{time_total}'`.
fn rate(w: &str) -> (u64, f64) {
    let v: Vec<f64> = w
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    assert_eq!(v.len(), 3, "curl -w output {w:?}");
    let bytes = v[0].max(v[1]);
    (bytes as u64, bytes / v[2].max(1e-6) / 1e6)
}

const W: &str = "%{size_download} %{size_upload} %{time_total}";

fn download_100m(tb: &Testbed) {
    let file = format!("/tmp/{}-psi-100M.bin", tb.name);
    let url = format!("http://{}/big/100M.bin", tb.ip(0, 10));
    let (be, w) = tb.curl_backend("psi", 150, &["-o", &file, "-w", W, &url]);
    let (bytes, mbs) = rate(&w);
    eprintln!("100 MB download from {be}: {bytes} bytes, {mbs:.2} MB/s");
    assert_eq!(
        sha256_file(&file),
        file_sha(tb, &be, "big/100M.bin"),
        "100 MB download from {be} not byte-exact"
    );
    let _ = std::fs::remove_file(&file);
}

fn upload_20m(tb: &Testbed) {
    let file = format!("/tmp/{}-psi-up.bin", tb.name);
    let out = std::process::Command::new("head")
        .args(["-c", "20971520", "/dev/urandom"])
        .output()
        .expect("head /dev/urandom");
    std::fs::write(&file, out.stdout).expect("write the upload");
    // curl's default for a large PUT: `Expect: 100-continue`, the body after the 100.
    let url = format!("http://{}/upload/psi.bin", tb.ip(0, 10));
    let (be, w) = tb.curl_backend("psi", 150, &["-T", &file, "-w", W, &url]);
    let (bytes, mbs) = rate(&w);
    eprintln!("20 MB upload (curl -T, Expect: 100-continue) to {be}: {bytes} bytes, {mbs:.2} MB/s");
    assert_eq!(
        file_sha(tb, &be, "upload/psi.bin"),
        sha256_file(&file),
        "20 MB upload to {be} not byte-exact"
    );
    let _ = std::fs::remove_file(&file);
}

/// 20 curls at once, each `/big/5M.bin` into its own file; each line of the script's
/// output: index, exit status, X-Backend, then curl's `-w`.
const PARALLEL: &str = r#"
dir=$1 url=$2
for i in $(seq 1 20); do
  ( curl -sS --max-time 150 -D "$dir/h$i" -o "$dir/f$i" -w '%{size_download} %{size_upload} %{time_total}' "$url" >"$dir/w$i" 2>"$dir/e$i"
    echo $? >"$dir/rc$i" ) &
done
wait
for i in $(seq 1 20); do
  echo "$i $(cat "$dir/rc$i") $(sed -n 's/^X-Backend: *//p' "$dir/h$i" | tr -d '\r') $(cat "$dir/w$i") $(cat "$dir/e$i")"
done
"#;

fn parallel_5m(tb: &Testbed) {
    let dir = format!("/tmp/{}-psi-par", tb.name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("http://{}/big/5M.bin", tb.ip(0, 10));
    let t0 = Instant::now();
    let out = tb.exec(
        "cli",
        &["bash", "-c", PARALLEL, "parallel", &dir, &url],
        Duration::from_secs(200),
    );
    let wall = t0.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 20, "parallel downloads: {text}");
    let mut total = 0u64;
    for l in &lines {
        let f: Vec<&str> = l.split_whitespace().collect();
        assert!(f.len() >= 6 && f[1] == "0", "a 5 MB download failed: {l}");
        let (i, be) = (f[0], f[2]);
        let (bytes, mbs) = rate(&f[3..6].join(" "));
        total += bytes;
        eprintln!("5 MB download {i} from {be}: {mbs:.2} MB/s");
        assert_eq!(
            sha256_file(&format!("{dir}/f{i}")),
            file_sha(tb, be, "big/5M.bin"),
            "5 MB download {i} from {be} not byte-exact"
        );
    }
    eprintln!(
        "20 parallel 5 MB downloads: {:.2} MB/s together ({wall:.1} s)",
        total as f64 / wall / 1e6
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// One keep-alive connection (python http.client), requests alternating between the
/// pools; one JSON object per answer: path, status, X-Backend, body sha256 and start.
const KEEPALIVE: &str = r#"
import hashlib, http.client, json, sys
vip, paths = sys.argv[1], json.loads(sys.argv[2])
c = http.client.HTTPConnection(vip, 80, timeout=60)
out = []
for p in paths:
    c.request("GET", p)
    r = c.getresponse()
    body = r.read()
    out.append({"path": p, "status": r.status, "backend": r.getheader("X-Backend"),
                "sha": hashlib.sha256(body).hexdigest(), "head": body[:64].decode("latin-1")})
print(json.dumps(out))
"#;

fn keepalive_alternating(tb: &Testbed) {
    let mut paths = Vec::new();
    for k in 0..8 {
        paths.push("/img/logo.png".to_string());
        paths.push(format!("/app/ka{k}"));
        paths.push("/static/app.js".to_string());
        if k % 4 == 0 {
            paths.push("/big/1M.bin".to_string());
        }
    }
    let list = serde_json::to_string(&paths).unwrap();
    let out = tb.exec(
        "cli",
        &["python3", "-c", KEEPALIVE, &tb.ip(0, 10), &list],
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "keep-alive client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<Value> = serde_json::from_slice(&out.stdout).expect("keep-alive JSON");
    assert_eq!(got.len(), paths.len(), "{got:?}");
    let mut seq = Vec::new();
    for (r, path) in got.iter().zip(&paths) {
        let be = r["backend"].as_str().unwrap_or("");
        assert_eq!(r["status"], 200, "{r}");
        if path.starts_with("/img/") {
            assert_eq!(be, "be1", "{path} outside its pool (images): {r}");
        } else if path.starts_with("/app/") {
            assert_eq!(be, "be2", "{path} outside its pool (apps): {r}");
            assert_eq!(r["head"], format!("app on be2: {path}\n"), "{r}");
        } else {
            assert!(["be1", "be2", "be3"].contains(&be), "{r}");
        }
        if !path.starts_with("/app/") {
            assert_eq!(
                r["sha"],
                file_sha(tb, be, &path[1..]),
                "{path} from {be}: {r}"
            );
        }
        seq.push(be.to_string());
    }
    let switches = seq.windows(2).filter(|w| w[0] != w[1]).count();
    eprintln!(
        "keep-alive connection: {} requests, {switches} changes of backend",
        paths.len()
    );
    assert!(switches >= 8, "the connection stayed put: {seq:?}");
}

fn scenario(name: &str, net: u8, workers: usize) {
    if !root_or_skip() {
        return;
    }
    let _guard = testbed_lock();
    let t0 = Instant::now();
    let tb = Testbed::up(name, net);
    let sw = Switch::start(&tb, &tb.presplice_config(workers));
    tb.script(IMPAIR);

    download_100m(&tb);
    upload_20m(&tb);
    parallel_5m(&tb);
    keepalive_alternating(&tb);

    tb.impairment_off_checked(10_000);
    std::thread::sleep(Duration::from_millis(2500));
    let fin = sw.stop();
    let t = &fin["total"];
    eprintln!("final totals: {t}");
    eprintln!(
        "presplice_out_of_order (segments ahead of a hole dropped): {}",
        counter(t, &["drops", "presplice_out_of_order"])
    );
    assert_eq!(counter(&fin, &["mbufs_in_use"]), 0, "{t}");
    assert_eq!(counter(t, &["flows_live"]), 0, "{t}");
    assert_eq!(counter(t, &["presplice_aborts"]), 0, "{t}");
    assert_eq!(counter(t, &["presplice_fallbacks"]), 0, "{t}");
    assert!(counter(t, &["presplice_rounds"]) > 0, "{t}");
    tb.down();
    eprintln!("{name}: {:.0} s in all", t0.elapsed().as_secs_f64());
}

#[test]
fn presplice_impaired_one_worker() {
    scenario("psi1", 191, 1);
}

#[test]
fn presplice_impaired_two_workers() {
    scenario("psi2", 192, 2);
}
