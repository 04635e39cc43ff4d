//! The dashboard in a real headless browser (Chromium, driven through
//! chromedriver's WebDriver API) against a real cluster: the page shows the
//! three nodes, and a block committed through the CLI appears without a
//! reload. Needs Debian's `chromium` and `chromium-driver`; without them the
//! test says it is skipped, unless BANK_REQUIRE_TOOLS is set (as in CI).

mod common;

use common::{free_port, wait_for, Cluster, TEST_GENESIS};
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Driver {
    child: Child,
    base: String,
    session: String,
}

impl Driver {
    fn start() -> Option<Driver> {
        let port = free_port();
        let child = match Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                assert!(
                    std::env::var_os("BANK_REQUIRE_TOOLS").is_none(),
                    "chromedriver cannot start ({e}): apt-get install chromium chromium-driver"
                );
                eprintln!("skipped: chromedriver not available ({e})");
                return None;
            }
        };
        let base = format!("http://127.0.0.1:{port}");
        let mut d = Driver {
            child,
            base,
            session: String::new(),
        };
        wait_for("chromedriver", Duration::from_secs(20), || {
            ureq::get(&format!("{}/status", d.base)).call().ok()
        });
        let caps = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"]
        }}}});
        let v = d.post("/session", caps);
        d.session = v["value"]["sessionId"].as_str().expect("a session id").to_string();
        Some(d)
    }

    fn post(&self, path: &str, body: Value) -> Value {
        let r = ureq::post(&format!("{}{path}", self.base))
            .timeout(Duration::from_secs(60))
            .send_json(body);
        match r {
            Ok(r) => r.into_json().expect("WebDriver JSON"),
            Err(ureq::Error::Status(code, r)) => {
                panic!("WebDriver {path}: {code} {}", r.into_string().unwrap_or_default())
            }
            Err(e) => panic!("WebDriver {path}: {e}"),
        }
    }

    fn open(&self, url: &str) {
        self.post(&format!("/session/{}/url", self.session), json!({ "url": url }));
    }

    /// Runs `script` in the page (no reload) and returns its value.
    fn eval(&self, script: &str) -> Value {
        let v = self.post(
            &format!("/session/{}/execute/sync", self.session),
            json!({ "script": script, "args": [] }),
        );
        v["value"].clone()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = ureq::delete(&format!("{}/session/{}", self.base, self.session)).call();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_dashboard_shows_the_cluster_and_new_blocks_live() {
    let Some(driver) = Driver::start() else { return };
    let c = Cluster::start(3, TEST_GENESIS);
    let leader = c.wait_leader();
    driver.open(&format!("http://{}/", c.nodes[0].http));

    // Three nodes, one of them the leader, all agreeing on the tip.
    let rows = wait_for("three node rows", Duration::from_secs(20), || {
        let v = driver.eval(
            "return [...document.querySelectorAll('#nodes tbody tr')].map(r => [r.dataset.nodeId, r.cells[2].textContent])",
        );
        let rows = v.as_array()?.clone();
        (rows.len() == 3 && rows.iter().any(|r| r[1] == "leader")).then_some(rows)
    });
    let leader_row = rows.iter().find(|r| r[1] == "leader").unwrap();
    assert_eq!(leader_row[0], leader.to_string());
    let agree = wait_for("tips to agree", Duration::from_secs(10), || {
        let t = driver.eval("return document.getElementById('agree').textContent");
        t.as_str().filter(|t| t.contains("agree")).map(str::to_string)
    });
    assert!(agree.contains("all 3 reachable nodes agree"), "{agree}");
    let marker = driver.eval("window.__sameDocument = 42; return 1");
    assert_eq!(marker, 1);

    // A transfer through the CLI: its block shows up in the open page.
    let t = c.transfer(3, 0, 9, "from-the-cli");
    let height = t["height"].as_u64().unwrap();
    let selector = format!("#blocks tr[data-height=\"{height}\"]");
    wait_for("the new block in the page", Duration::from_secs(20), || {
        driver
            .eval(&format!("return !!document.querySelector('{selector}')"))
            .as_bool()
            .filter(|b| *b)
    });
    assert_eq!(
        driver.eval("return window.__sameDocument"),
        42,
        "the page updated itself, it was not reloaded"
    );
    // Clicking the block shows its transactions; the balances follow.
    driver.eval(&format!("document.querySelector('{selector}').click(); return 1"));
    let detail = wait_for("the block's transactions", Duration::from_secs(10), || {
        let d = driver.eval("return document.getElementById('detail').textContent");
        d.as_str().filter(|d| d.contains("from-the-cli")).map(str::to_string)
    });
    assert!(
        detail.contains(&format!("Block {height}")) && detail.contains("committed"),
        "{detail}"
    );
    wait_for("account 0's new balance", Duration::from_secs(10), || {
        let b = driver.eval("return document.querySelector('#balances tr[data-account=\"0\"]').cells[1].textContent");
        (b == "124").then_some(())
    });
}
