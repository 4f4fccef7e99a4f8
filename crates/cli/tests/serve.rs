//! `oxformer serve` as users run it: the real binary on a free port, its answers against the
//! CLI's own output, and SIGTERM with requests in flight (they finish; exit status 0).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn fixture(name: &str) -> String {
    format!(
        "{}/../../fixtures/models/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// Starts `oxformer serve --port 0 ARGS` and returns it with its base address, once healthy.
fn spawn_server(args: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_oxformer"))
        .args(["serve", "--port", "0", "--threads", "1"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let base = loop {
        let line = lines
            .next()
            .expect("the server printed its address")
            .unwrap();
        if let Some(address) = line.strip_prefix("oxformer serve: listening on ") {
            break address.to_string();
        }
    };
    // Keep reading stderr so that the server never blocks on it.
    std::thread::spawn(move || for _ in lines {});
    let agent = agent();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = agent.get(format!("{base}/health")).call()
            && response.status() == 200
        {
            break;
        }
        assert!(Instant::now() < deadline, "not healthy");
        std::thread::sleep(Duration::from_millis(10));
    }
    (child, base)
}

fn post(base: &str, path: &str, body: &Value) -> (u16, String) {
    let mut response = agent()
        .post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .send(body.to_string())
        .unwrap();
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_string().unwrap())
}

fn terminate(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn embed_answers_what_the_cli_prints() {
    let model = fixture("st-mean");
    let texts = ["The cat sits on the mat.", "A man is playing a guitar."];
    let (child, base) = spawn_server(&["--model", &model]);
    let (status, body) = post(
        &base,
        "/embed",
        &json!({"inputs": texts, "normalize": false}),
    );
    assert_eq!(status, 200, "{body}");
    let served: Vec<Vec<f32>> = serde_json::from_str(&body).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_oxformer"))
        .args(["sentence-embeddings", "--model", &model, "--json"])
        .args(texts)
        .output()
        .unwrap();
    assert!(output.status.success());
    let printed: Vec<Vec<f32>> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(served.len(), printed.len());
    for (served, printed) in served.iter().zip(&printed) {
        assert_eq!(served.len(), printed.len());
        for (a, b) in served.iter().zip(printed) {
            assert!((a - b).abs() <= 1e-5, "{a} vs {b}");
        }
    }
    terminate(&child);
    let mut child = child;
    assert!(child.wait().unwrap().success());
}

#[test]
fn sigterm_finishes_the_requests_in_flight_and_exits_0() {
    const CLIENTS: usize = 16;
    let (mut child, base) = spawn_server(&["--model", &fixture("gpt2")]);
    let answered = AtomicUsize::new(0);
    let body = json!({
        "inputs": "Hello",
        "parameters": {"max_new_tokens": 120, "do_sample": false, "details": true},
    });
    let results: Vec<(u16, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let (base, body, answered) = (&base, &body, &answered);
                scope.spawn(move || {
                    let result = post(base, "/generate", body);
                    answered.fetch_add(1, Ordering::SeqCst);
                    result
                })
            })
            .collect();
        // Wait until every request reached the server, then signal.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let metrics = agent()
                .get(format!("{base}/metrics"))
                .call()
                .unwrap()
                .body_mut()
                .read_to_string()
                .unwrap();
            // TEI's te_request_count{method="single"} and {method="batch"}.
            let count: usize = metrics
                .lines()
                .filter(|line| line.starts_with("te_request_count{"))
                .filter_map(|line| line.rsplit(' ').next()?.parse::<usize>().ok())
                .sum();
            if count >= CLIENTS {
                break;
            }
            assert!(Instant::now() < deadline, "the requests did not arrive");
            std::thread::sleep(Duration::from_millis(2));
        }
        terminate(&child);
        let in_flight = CLIENTS - answered.load(Ordering::SeqCst);
        assert!(
            in_flight > 0,
            "every request was answered before the signal"
        );
        // New work is refused while the others finish.
        std::thread::sleep(Duration::from_millis(50));
        if answered.load(Ordering::SeqCst) < CLIENTS {
            let refused = agent()
                .get(format!("{base}/health"))
                .call()
                .map(|response| response.status() != 200)
                .unwrap_or(true);
            assert!(refused, "still healthy after SIGTERM");
        }
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (status, body) in &results {
        assert_eq!(*status, 200, "{body}");
        let body: Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["details"]["generated_tokens"], 120, "{body}");
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}
